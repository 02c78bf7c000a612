using System.Diagnostics;
using System.Net.Sockets;

namespace Distcache.Apache.Tests.Support;

/// <summary>What an Apache server of the tests loads and listens on.</summary>
/// <param name="ModulePath">the socache module to load (Debian's mod_socache_dc or ours)</param>
/// <param name="ModuleName">its module structure's name, for LoadModule (socache_dc_module, ...)</param>
/// <param name="LogTag">its tag for LogLevel (socache_dc, ...)</param>
/// <param name="Mpm">the multi-processing module: "event" (threads in several children) or "prefork" (one thread per child)</param>
internal sealed record ApacheSettings(
    string Name,
    string Address,
    int Port,
    string ServerName,
    string ModulePath,
    string ModuleName,
    string LogTag,
    string SessionCache,
    string CertificateFile,
    string KeyFile,
    string DocumentRoot,
    IReadOnlyDictionary<string, string> Environment,
    string Mpm);

/// <summary>
/// A real Apache httpd (Debian's /usr/sbin/apache2) with its own configuration in a private folder: its own
/// ServerRoot, PidFile, ErrorLog, runtime dir and mutex folder, modules loaded from /usr/lib/apache2/modules, run in
/// the foreground as a child process. Nothing of the machine's /etc/apache2 is read. Disposing stops it with SIGTERM
/// (Apache stops its own children) and makes sure no child of it is left running.
/// </summary>
internal sealed class ApacheServer : IAsyncDisposable
{
    public const string Binary = "/usr/sbin/apache2";
    private const string Modules = "/usr/lib/apache2/modules";

    // How an Apache child that died shows in the parent's error log ("AH00052: child pid 123 exit signal Aborted (6)"),
    // and what an assert or a crash of the library writes to the child's stderr (the same error log).
    private static readonly string[] CrashMarkers = ["exit signal", "AH00052", "AH00053", "Assertion", "Segmentation fault", "core dumped", "double free", "stack smashing"];

    private readonly Tool _process;

    private ApacheServer(ApacheSettings settings, string directory, Tool process)
    {
        Settings = settings;
        Directory = directory;
        _process = process;
    }

    public ApacheSettings Settings { get; }

    public string Directory { get; }

    public string ErrorLog => Path.Combine(Directory, "error.log");

    public string ConfigFile => Path.Combine(Directory, "httpd.conf");

    public string Endpoint => $"{Settings.Address}:{Settings.Port}";

    public int Pid => _process.Pid;

    public bool HasExited => _process.HasExited;

    /// <summary>Writes the configuration into <paramref name="directory"/> and starts Apache in the foreground.</summary>
    public static ApacheServer Start(ApacheSettings settings, string directory)
    {
        System.IO.Directory.CreateDirectory(directory);
        // The children run as www-data: they must reach the document root and the dc_client socket, and Apache
        // gives its mutex files to that user in this folder.
        File.SetUnixFileMode(directory, (UnixFileMode)0x1ED); // 0755
        File.WriteAllText(Path.Combine(directory, "httpd.conf"), Configuration(settings, directory));

        // NO_DETACH, not FOREGROUND: Apache stays our child but becomes the leader of a session of its own. At
        // shutdown the prefork MPM signals its whole process group, which under FOREGROUND is the test run's.
        // The library reads DISTCACHE_* in the parent (DC_CTX_new at post-config); the children inherit them.
        Tool process = Tool.StartPath(
            Binary,
            ["-f", Path.Combine(directory, "httpd.conf"), "-DNO_DETACH"],
            settings.Environment.ToDictionary(e => e.Key, e => (string?)e.Value, StringComparer.Ordinal),
            directory);
        var server = new ApacheServer(settings, directory, process);
        return server;
    }

    private static string Configuration(ApacheSettings s, string dir) => $"""
        # Written by Distcache.Apache.Tests: a private Apache, nothing read from /etc/apache2.
        ServerRoot "{dir}"
        DefaultRuntimeDir "{dir}"
        PidFile "{dir}/httpd.pid"
        ErrorLog "{dir}/error.log"
        LogLevel notice {s.LogTag}:info
        Mutex file:{dir} default

        LoadModule mpm_{s.Mpm}_module {Modules}/mod_mpm_{s.Mpm}.so
        LoadModule authz_core_module {Modules}/mod_authz_core.so
        LoadModule dir_module {Modules}/mod_dir.so
        LoadModule ssl_module {Modules}/mod_ssl.so
        LoadModule status_module {Modules}/mod_status.so
        LoadModule {s.ModuleName} {s.ModulePath}

        User www-data
        Group www-data
        ServerName {s.ServerName}
        Listen {s.Address}:{s.Port}

        {MpmSettings(s.Mpm)}
        KeepAlive Off
        Timeout 30

        DocumentRoot "{s.DocumentRoot}"
        DirectoryIndex index.html
        <Directory "{s.DocumentRoot}">
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
        # Resumption only through the shared session cache: no stateless tickets.
        SSLSessionTickets off
        SSLSessionCache {s.SessionCache}
        SSLSessionCacheTimeout 300

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

    /// <summary>Waits until Apache says it is running and accepts TCP connections; throws with its log otherwise.</summary>
    public Task WaitReadyAsync(TimeSpan timeout) => WaitReadyAsync(timeout, readyLinesBefore: 0);

    /// <summary>
    /// A graceful restart (SIGUSR1, as <c>apachectl -k graceful</c>): the parent rereads its configuration, unloads
    /// and loads its modules again (the socache module and the library under it included) and replaces its
    /// children. Returns once it says it is running again.
    /// </summary>
    public async Task GracefulRestartAsync(TimeSpan timeout)
    {
        int before = CountReadyLines();
        _process.Signal(Native.SIGUSR1);
        await WaitReadyAsync(timeout, before);
    }

    private int CountReadyLines() =>
        ReadErrorLog().Split('\n').Count(line => line.Contains("resuming normal operations", StringComparison.Ordinal));

    private async Task WaitReadyAsync(TimeSpan timeout, int readyLinesBefore)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"Apache {Settings.Name} ({ConfigFile}) exited with {_process.ExitCode} while starting.\n{Diagnostics()}");
            }

            // "configured -- resuming normal operations": AH00489 from the event MPM, AH00163 from prefork.
            if (CountReadyLines() > readyLinesBefore && CanConnect())
            {
                return;
            }

            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"Apache {Settings.Name} did not start within {timeout}.\n{Diagnostics()}");
            }

            await Task.Delay(50);
        }
    }

    private bool CanConnect()
    {
        try
        {
            using var client = new TcpClient();
            client.Connect(System.Net.IPAddress.Parse(Settings.Address), Settings.Port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public string ReadErrorLog() => WebServerFiles.ReadLog(ErrorLog);


    /// <summary>The error log's lines that tell of a crashed child or an abort in the library.</summary>
    public IReadOnlyList<string> CrashLines() =>
        [.. ReadErrorLog().Split('\n').Where(line => CrashMarkers.Any(marker => line.Contains(marker, StringComparison.Ordinal)))];

    /// <summary>The error log's lines from one module (its "[tag:" prefix) after <paramref name="fromOffset"/>
    /// characters, counted by message with the variable parts (time, pid, client, numbers) left out, most frequent first.</summary>
    public IReadOnlyList<(string Message, int Count)> ModuleMessages(string tag, int fromOffset = 0)
    {
        string log = ReadErrorLog();
        return [.. log[Math.Min(fromOffset, log.Length)..].Split('\n')
            .Where(line => line.Contains($"[{tag}:", StringComparison.Ordinal))
            .Select(line => line[(line.IndexOf($"[{tag}:", StringComparison.Ordinal))..])
            .Select(line => System.Text.RegularExpressions.Regex.Replace(line, @"\[(pid|client) [^\]]*\] ?", ""))
            .Select(line => System.Text.RegularExpressions.Regex.Replace(line, @"(?<![A-Za-z0-9])\d+(?![\d-])", "N"))
            .GroupBy(message => message)
            .Select(group => (group.Key, group.Count()))
            .OrderByDescending(entry => entry.Item2)];
    }

    /// <summary>The error log's lines matching <paramref name="text"/>.</summary>
    public IReadOnlyList<string> LogLines(string text) =>
        [.. ReadErrorLog().Split('\n').Where(line => line.Contains(text, StringComparison.Ordinal))];

    public string Diagnostics()
    {
        string output = _process.Output;
        string[] log = ReadErrorLog().TrimEnd().Split('\n');
        return $"--- {ErrorLog} (last 30 lines):\n{string.Join('\n', log.Skip(Math.Max(0, log.Length - 30)))}\n--- apache2 stdout/stderr:\n{output}";
    }

    /// <summary>The processes whose parent is this Apache (its children), read from /proc.</summary>
    public IReadOnlyList<int> ChildPids() => [.. ProcessTree.Children(_process.Pid).Select(child => child.Pid)];

    /// <summary>Whether a process still runs this server's configuration (not a recycled pid).</summary>
    private bool IsOurs(int pid)
    {
        try
        {
            string cmdline = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
            string state = File.ReadAllText($"/proc/{pid}/stat");
            return cmdline.Contains(ConfigFile, StringComparison.Ordinal) && !state[(state.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Stops Apache: SIGTERM to the parent, which stops its children and exits; SIGKILL for anything left.</summary>
    public async ValueTask DisposeAsync()
    {
        IReadOnlyList<int> children = [];
        if (!_process.HasExited)
        {
            children = ChildPids();
            _process.Signal(Native.SIGTERM);
            try
            {
                await Poll.UntilAsync(() => _process.HasExited, TimeSpan.FromSeconds(15), "Apache to stop", interval: TimeSpan.FromMilliseconds(50));
            }
            catch (TimeoutException)
            {
                _process.Kill();
            }
        }

        // Apache waits for its children before it exits; a child that outlived it anyway is killed here.
        var wait = Stopwatch.StartNew();
        while (children.Any(IsOurs) && wait.Elapsed < TimeSpan.FromSeconds(10))
        {
            foreach (int pid in children.Where(IsOurs))
            {
                _ = Native.Kill(pid, Native.SIGKILL);
            }

            await Task.Delay(50);
        }

        await _process.DisposeAsync();
    }
}
