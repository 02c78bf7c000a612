using System.Text.RegularExpressions;

namespace Distcache.Testing;

/// <summary>An Apache socache module for <c>SSLSessionCache</c>.</summary>
/// <param name="Name">Its module structure's name, for LoadModule (socache_dc_module, ...).</param>
/// <param name="Path">The shared object.</param>
/// <param name="LogTag">Its tag for LogLevel (socache_dc, ...).</param>
public sealed record ApacheModule(string Name, string Path, string LogTag);

/// <summary>What an Apache server of the tests serves and how it resumes TLS sessions.</summary>
/// <param name="Address">The address it listens on.</param>
/// <param name="Port">The port it listens on.</param>
/// <param name="ServerName">Its ServerName; with the port, mod_ssl's session id context, so servers that are to resume
/// each other's sessions need the same name and port.</param>
/// <param name="CertificateFile">The PEM certificate.</param>
/// <param name="KeyFile">Its PEM private key.</param>
public sealed record ApacheSettings(string Address, int Port, string ServerName, string CertificateFile, string KeyFile)
{
    /// <summary>The multi-processing module: "event" (threads in several children, as Debian configures it) or
    /// "prefork" (one thread per child).</summary>
    public string Mpm { get; init; } = "event";

    /// <summary>The socache module to load for <see cref="SessionCache"/>, or null.</summary>
    public ApacheModule? SessionCacheModule { get; init; }

    /// <summary><c>SSLSessionCache</c>'s argument (<c>dc:UNIX:/path</c>, ...), or null for no session cache at all.</summary>
    public string? SessionCache { get; init; }

    /// <summary><c>SSLSessionTicketKeyFile</c>, with session tickets on (a relative path is in the server's folder);
    /// null turns tickets off.</summary>
    public string? TicketKeyFile { get; init; }

    /// <summary>Variables Apache runs with (the parent and, inherited, its children).</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();
}

/// <summary>
/// A real Apache httpd (Debian's /usr/sbin/apache2, mod_ssl) with its own configuration in its own folder: its own
/// ServerRoot, PidFile, ErrorLog, runtime dir, mutex folder and document root, modules loaded from Debian's
/// /usr/lib/apache2/modules, started with <c>-f</c> as a child of the test. Nothing of the machine's /etc/apache2 is
/// read. Started by the test's user; run as root, Apache runs its children as www-data (it refuses to serve as
/// root). A reload is a graceful restart (SIGUSR1, as <c>apachectl graceful</c>): the parent reads its
/// configuration and the files it names again, unloads and loads its modules, and replaces its children.
/// </summary>
/// <param name="settings">What it serves and how it resumes sessions.</param>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ApacheServer(ApacheSettings settings) : WebServer("apache", settings.Address, settings.Port)
{
    /// <summary>Debian's Apache.</summary>
    public const string Binary = "/usr/sbin/apache2";

    private const string Modules = "/usr/lib/apache2/modules";

    // How an Apache child that died shows in the parent's error log ("AH00052: child pid 123 exit signal Aborted (6)"),
    // and what an assert or a crash of a library writes to the child's stderr (the same error log).
    private static readonly string[] CrashMarkers = ["exit signal", "AH00052", "AH00053", "Assertion", "Segmentation fault", "core dumped", "double free", "stack smashing"];

    /// <summary>What it serves and how it resumes sessions.</summary>
    public ApacheSettings Settings { get; } = settings;

    /// <summary>Its configuration, given with <c>-f</c>.</summary>
    public string ConfigFile => Path.Combine(Directory, "httpd.conf");

    /// <summary>Its error log.</summary>
    public string ErrorLog => Path.Combine(Directory, "error.log");

    /// <summary>The ticket key file the configuration names (see <see cref="ApacheSettings.TicketKeyFile"/>), or null.</summary>
    public string? TicketKeyFile => Settings.TicketKeyFile is { } file ? Path.Combine(Directory, file) : null;

    private string DocumentRoot => Path.Combine(Directory, "htdocs");

    /// <inheritdoc/>
    protected override int ReloadSignal => Native.SIGUSR1;

    /// <inheritdoc/>
    protected override string ReloadSignalName => "USR1";

    /// <inheritdoc/>
    protected override Tool Launch()
    {
        // The children (www-data when started as root) must reach the document root, and Apache gives its mutex
        // files to that user in this folder.
        File.SetUnixFileMode(Directory, (UnixFileMode)0x1ED); // 0755
        System.IO.Directory.CreateDirectory(DocumentRoot);
        File.WriteAllText(Path.Combine(DocumentRoot, "index.html"), "ok\n");
        File.WriteAllText(ConfigFile, Configuration());

        // NO_DETACH, not FOREGROUND: Apache stays our child but becomes the leader of a session of its own. At
        // shutdown the prefork MPM signals its whole process group, which under FOREGROUND is the test run's.
        return Tool.StartPath(
            Binary,
            ["-f", ConfigFile, "-DNO_DETACH"],
            Settings.Environment.ToDictionary(e => e.Key, e => (string?)e.Value, StringComparer.Ordinal),
            Directory);
    }

    private string Configuration()
    {
        ApacheSettings s = Settings;
        string dir = Directory;
        return $"""
            # Written by the tests: a private Apache, nothing read from /etc/apache2.
            ServerRoot "{dir}"
            DefaultRuntimeDir "{dir}"
            PidFile "{PidFile}"
            ErrorLog "{ErrorLog}"
            LogLevel notice{(s.SessionCacheModule is { } logged ? $" {logged.LogTag}:info" : "")}
            Mutex file:{dir} default

            LoadModule mpm_{s.Mpm}_module {Modules}/mod_mpm_{s.Mpm}.so
            LoadModule authz_core_module {Modules}/mod_authz_core.so
            LoadModule dir_module {Modules}/mod_dir.so
            LoadModule ssl_module {Modules}/mod_ssl.so
            LoadModule status_module {Modules}/mod_status.so
            {(s.SessionCacheModule is { } module ? $"LoadModule {module.Name} {module.Path}" : "")}

            User www-data
            Group www-data
            ServerName {s.ServerName}
            Listen {s.Address}:{s.Port}

            {MpmSettings(s.Mpm)}
            KeepAlive Off
            Timeout 30

            DocumentRoot "{DocumentRoot}"
            DirectoryIndex index.html
            <Directory "{DocumentRoot}">
              Require all granted
            </Directory>
            # mod_status; mod_ssl adds the session cache's own report to it.
            <Location "/server-status">
              SetHandler server-status
            </Location>

            SSLEngine on
            SSLCertificateFile "{s.CertificateFile}"
            SSLCertificateKeyFile "{s.KeyFile}"
            SSLProtocol -all +TLSv1.2 +TLSv1.3
            {Tickets()}
            {SessionCache(s)}

            """;
    }

    private string Tickets() => TicketKeyFile is { } file
        ? $"""
            # Session tickets under the key of this file (48 bytes: name, HMAC secret, AES-128 key), read at start
            # and at each graceful restart.
            SSLSessionTickets on
            SSLSessionTicketKeyFile "{file}"
            """
        : """
            # No session tickets: a session resumes only through the session cache.
            SSLSessionTickets off
            """;

    private static string SessionCache(ApacheSettings s) => s.SessionCache is { } cache
        ? $"""
            SSLSessionCache {cache}
            SSLSessionCacheTimeout 300
            """
        : """
            # No SSLSessionCache: mod_ssl keeps sessions nowhere (it warns "Session Cache is not configured", AH01873).
            """;

    private static string MpmSettings(string mpm) => mpm switch
    {
        "event" => """
            StartServers 2
            ServerLimit 4
            ThreadsPerChild 25
            MaxRequestWorkers 100
            MinSpareThreads 25
            MaxSpareThreads 75
            """,
        "prefork" => """
            StartServers 8
            MinSpareServers 8
            MaxSpareServers 24
            ServerLimit 32
            MaxRequestWorkers 32
            """,
        _ => throw new ArgumentException($"no settings for the {mpm} MPM", nameof(mpm)),
    };

    /// <inheritdoc/>
    // "configured -- resuming normal operations": AH00489 from the event MPM, AH00163 from prefork.
    protected override bool SaysStarted() => ReadErrorLog().Contains("resuming normal operations", StringComparison.Ordinal);

    /// <inheritdoc/>
    protected override int LogMark() => ReadErrorLog().Length;

    /// <inheritdoc/>
    // A graceful restart whose configuration fails after it was read (a module's post-config: mod_ssl reading a key
    // file) logs [emerg] lines, then "AH00020: Configuration Failed, exiting", and the parent exits.
    protected override string? ReloadFailure(int mark)
    {
        string log = ReadErrorLog();
        return log[Math.Min(mark, log.Length)..].Split('\n').FirstOrDefault(line => line.Contains(":emerg]", StringComparison.Ordinal));
    }

    /// <inheritdoc/>
    protected override string LogTail() => Tail(ReadErrorLog());

    /// <summary>The whole error log so far.</summary>
    /// <returns>Its text.</returns>
    public string ReadErrorLog() => WebServerFiles.ReadLog(ErrorLog);

    /// <summary>The error log's lines that tell of a crashed child or an abort in a library.</summary>
    /// <returns>The lines.</returns>
    public IReadOnlyList<string> CrashLines() =>
        [.. ReadErrorLog().Split('\n').Where(line => CrashMarkers.Any(marker => line.Contains(marker, StringComparison.Ordinal)))];

    /// <summary>The error log's lines from one module (its "[tag:" prefix) after <paramref name="fromOffset"/>
    /// characters, counted by message with the variable parts (time, pid, client, numbers) left out, most frequent first.</summary>
    /// <param name="tag">The module's log tag.</param>
    /// <param name="fromOffset">Where to start in the log.</param>
    /// <returns>Each message and how often it appears.</returns>
    public IReadOnlyList<(string Message, int Count)> ModuleMessages(string tag, int fromOffset = 0)
    {
        string log = ReadErrorLog();
        return [.. log[Math.Min(fromOffset, log.Length)..].Split('\n')
            .Where(line => line.Contains($"[{tag}:", StringComparison.Ordinal))
            .Select(line => line[line.IndexOf($"[{tag}:", StringComparison.Ordinal)..])
            .Select(line => Regex.Replace(line, @"\[(pid|client) [^\]]*\] ?", ""))
            .Select(line => Regex.Replace(line, @"(?<![A-Za-z0-9])\d+(?![\d-])", "N"))
            .GroupBy(message => message)
            .Select(group => (group.Key, group.Count()))
            .OrderByDescending(entry => entry.Item2)];
    }

    /// <summary>The error log's lines that contain <paramref name="text"/>.</summary>
    /// <param name="text">What to look for.</param>
    /// <returns>The lines.</returns>
    public IReadOnlyList<string> LogLines(string text) =>
        [.. ReadErrorLog().Split('\n').Where(line => line.Contains(text, StringComparison.Ordinal))];
}
