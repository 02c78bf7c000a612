namespace Distcache.TicketKeys.Tests.Support;

/// <summary>
/// A real nginx (Debian's /usr/sbin/nginx) with a configuration of its own: one TLS server on ADDRESS:PORT that
/// answers every request with "ok", resumes sessions only by tickets (<c>ssl_session_cache off</c>) and reads its
/// ticket keys from KEYS/current.key, next.key and previous.key, the first of which encrypts. Nothing of the
/// machine's /etc/nginx is read and nothing is written outside the server's folder.
/// </summary>
/// <remarks>
/// Run as root without a <c>user</c> directive, nginx runs its workers as nobody; they need nothing of the folder
/// (the master reads the configuration, the certificate and the keys, and opens the logs). Its temporary folders
/// are in its folder too, for a build whose defaults (/var/lib/nginx) do not exist.
/// </remarks>
internal sealed class NginxServer(string address, int port, Certificate certificate) : WebServer("nginx", address, port)
{
    public const string Binary = "/usr/sbin/nginx";

    public string KeyDirectory => Path.Combine(Directory, "keys");

    public string ConfigFile => Path.Combine(Directory, "nginx.conf");

    public string ErrorLog => Path.Combine(Directory, "error.log");

    protected override int ReloadSignal => Native.SIGHUP;

    protected override string ReloadSignalName => "HUP";

    public IReadOnlyList<string> KeyFiles => [.. KeyFileFormats.NginxFiles.Select(file => Path.Combine(KeyDirectory, file))];

    protected override Tool Launch()
    {
        File.WriteAllText(ConfigFile, Configuration());
        // -e: from the first message on, the log is the folder's (the build's default may be a file elsewhere).
        // "daemon off" in the configuration keeps the master in the foreground, our child; it still runs workers.
        return Tool.StartPath(Binary, ["-p", Directory + "/", "-c", ConfigFile, "-e", ErrorLog], workingDirectory: Directory);
    }

    private string Configuration()
    {
        string keyLines = string.Concat(KeyFiles.Select(file => $"        ssl_session_ticket_key {file};\n"));
        return $$"""
            # Written by Distcache.TicketKeys.Tests: a private nginx, nothing read from /etc/nginx.
            daemon off;
            master_process on;
            worker_processes 1;
            pid {{PidFile}};
            error_log {{ErrorLog}} notice;

            events {
                worker_connections 128;
            }

            http {
                access_log off;
                client_body_temp_path {{Directory}}/client_body;
                proxy_temp_path {{Directory}}/proxy;
                fastcgi_temp_path {{Directory}}/fastcgi;
                uwsgi_temp_path {{Directory}}/uwsgi;
                scgi_temp_path {{Directory}}/scgi;
                keepalive_timeout 0;

                server {
                    listen {{Address}}:{{Port}} ssl;
                    server_name {{Certificate.ServerName}};
                    ssl_certificate {{certificate.CertificateFile}};
                    ssl_certificate_key {{certificate.KeyFile}};
                    ssl_protocols TLSv1.2 TLSv1.3;

                    # Resumption by tickets only: no session cache, so that a resumed session proves a ticket was
                    # decrypted. The first key encrypts; all three decrypt.
                    ssl_session_cache off;
                    ssl_session_tickets on;
            {{keyLines.TrimEnd('\n')}}

                    location / {
                        default_type text/plain;
                        return 200 "ok\n";
                    }
                }
            }

            """;
    }

    protected override bool SaysStarted() => File.Exists(PidFile);

    protected override int LogMark() => ReadLog().Length;

    // nginx rejects a key file it cannot read or of the wrong size with an [emerg] line and keeps its old workers.
    protected override string? ReloadFailure(int mark)
    {
        string log = ReadLog();
        return log[Math.Min(mark, log.Length)..].Split('\n').FirstOrDefault(line => line.Contains("[emerg]", StringComparison.Ordinal));
    }

    protected override string LogTail() => Tail(ReadLog());

    private string ReadLog() => WebServerFiles.ReadLog(ErrorLog);

}
