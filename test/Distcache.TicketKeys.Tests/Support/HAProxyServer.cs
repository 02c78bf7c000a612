namespace Distcache.TicketKeys.Tests.Support;

/// <summary>
/// A real HAProxy (Debian's /usr/sbin/haproxy) in master-worker mode (<c>-W</c>, in the foreground): one frontend on
/// ADDRESS:PORT that terminates TLS and answers every request itself with "ok", resumes sessions only by tickets
/// (<c>tune.ssl.cachesize 0</c>) and reads its ticket keys from one file of three base64 lines (previous, current,
/// next; the penultimate one encrypts). Its messages go to standard error, which the test reads.
/// </summary>
internal sealed class HAProxyServer(string address, int port, Certificate certificate) : WebServer("haproxy", address, port)
{
    public const string Binary = "/usr/sbin/haproxy";

    public string KeyFile => Path.Combine(Directory, "tickets.keys");

    public string ConfigFile => Path.Combine(Directory, "haproxy.cfg");

    // SIGUSR2: the master executes itself again, reads its configuration (and the key file), starts a new worker
    // and asks the old one to finish its connections and stop.
    protected override int ReloadSignal => Native.SIGUSR2;

    protected override string ReloadSignalName => "USR2";

    protected override Tool Launch()
    {
        File.WriteAllText(ConfigFile, Configuration());
        return Tool.StartPath(Binary, ["-W", "-f", ConfigFile, "-p", PidFile], workingDirectory: Directory);
    }

    private string Configuration() => $"""
        # Written by Distcache.TicketKeys.Tests: a private HAProxy, nothing read from /etc/haproxy.
        global
            nbthread 1
            # No session cache: a resumed session proves a ticket was decrypted.
            tune.ssl.cachesize 0
            ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3
            # An old worker that still holds a connection after a reload is stopped after this long.
            hard-stop-after 10s

        defaults
            mode http
            timeout connect 5s
            timeout client 10s
            timeout server 10s

        frontend web
            bind {Address}:{Port} ssl crt {certificate.CombinedFile} tls-ticket-keys {KeyFile}
            http-request return status 200 content-type text/plain string ok

        """;

    // "Loading success." once the master has read the configuration and started a worker (at start and at each reload).
    protected override bool SaysStarted() => Process.Output.Contains("Loading success.", StringComparison.Ordinal);

    protected override int LogMark() => Process.Output.Length;

    // A failed reload ("Loading failure!", after the [ALERT] lines that say why) keeps the old worker.
    protected override string? ReloadFailure(int mark)
    {
        string output = Process.Output;
        return output[Math.Min(mark, output.Length)..].Split('\n').FirstOrDefault(line => line.Contains("[ALERT]", StringComparison.Ordinal));
    }

    protected override string LogTail() => "(HAProxy logs to its standard error, below)";
}
