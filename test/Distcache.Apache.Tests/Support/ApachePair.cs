using System.Diagnostics;

namespace Distcache.Apache.Tests.Support;

/// <summary>
/// The set-up the tests run against, as in a web farm: dc_server (TCP, loopback), dc_client in front of it on a unix
/// socket, and two Apache servers on 127.0.0.1 and 127.0.0.2 with the same port and the same ServerName (mod_ssl's
/// session id context), each with <c>SSLSessionCache dc:UNIX:.../dc_client.sock</c> through one socache module. One
/// set per test class; the tests that stop dc_client start it again before they end.
/// </summary>
public abstract class ApachePair : IAsyncLifetime
{
    public const string ServerName = "cache.test";

    /// <summary>
    /// The library's time limit for one cache operation, DISTCACHE_TIMEOUT_MS: the library's default (1000 ms), passed
    /// explicitly so that the bound the tests check does not move with the default.
    /// </summary>
    public const int LibraryTimeoutMs = 1000;

    /// <summary>
    /// dc_server's session limit. Its default, 512, is far below what the tests store (each TLS 1.3 handshake stores
    /// two sessions, one per ticket, and a resumption one more: about 2000 per load run), and a full store evicts the
    /// sessions due to expire soonest, which under load can be ones stored a few milliseconds ago (a ticket issued
    /// on a resumed connection keeps its original session's expiry). Sized here as a web farm would size it.
    /// </summary>
    public const int DcServerSessions = 50_000;

    private readonly NativeBuild _build;
    private readonly string _dir = Directory.CreateTempSubdirectory("dc-apache-").FullName;
    private Tool? _dcServer;
    private Tool? _dcClient;
    private readonly List<ApacheServer> _apaches = [];

    protected ApachePair(NativeBuild build)
    {
        _build = build;
    }

    /// <summary>What the tests print first: which module, built how.</summary>
    public abstract string Description { get; }

    /// <summary>The module to load, or null and why not (thrown by InitializeAsync).</summary>
    protected abstract (string? Path, string? Error) Module(NativeBuild build);

    protected abstract string ModuleName { get; }

    /// <summary>Apache's multi-processing module: event (a server of threads, as Debian configures it) by default.</summary>
    public virtual string Mpm => "event";

    public abstract string LogTag { get; }

    public string DcServerAddress { get; private set; } = "";

    public string DcClientSocket => Path.Combine(_dir, "dc_client.sock");

    internal ApacheServer First => _apaches[0];

    internal ApacheServer Second => _apaches[1];

    internal IReadOnlyList<ApacheServer> Apaches => _apaches;

    public NativeBuild Build => _build;

    /// <summary>The DISTCACHE_* variables Apache runs with.</summary>
    public IReadOnlyDictionary<string, string> LibraryEnvironment { get; private set; } = new Dictionary<string, string>();

    internal Tool DcClient => _dcClient ?? throw new InvalidOperationException("dc_client is not running");

    public async ValueTask InitializeAsync()
    {
        (string? module, string? error) = Module(_build);
        if (module is null)
        {
            throw new InvalidOperationException(error ?? "the module is not built");
        }

        if (await NativeBuild.UnresolvedLibrariesAsync(module) is { } unresolved)
        {
            throw new InvalidOperationException(unresolved);
        }

        try
        {
            await StartAsync(module);
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    private async Task StartAsync(string module)
    {
        // www-data (Apache's children) must reach the dc_client socket in this folder.
        File.SetUnixFileMode(_dir, (UnixFileMode)0x1ED); // 0755
        string cert = Path.Combine(_dir, "cert.pem");
        string key = Path.Combine(_dir, "key.pem");
        ProcessResult certificate = await WebServerFiles.SelfSignedCertificateAsync(cert, key, ServerName);
        if (!certificate.Succeeded)
        {
            throw new InvalidOperationException($"openssl req -x509 failed (exit {certificate.ExitCode}): {certificate.CommandLine}\n{certificate.Tail()}");
        }

        (_dcServer, DcServerAddress) = await ServerProcess.StartTcpAsync("-sessions", DcServerSessions.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await StartDcClientAsync();

        var environment = new Dictionary<string, string> { ["DISTCACHE_TIMEOUT_MS"] = LibraryTimeoutMs.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        LibraryEnvironment = environment;

        // The same port on both addresses; a port someone takes between the check and Apache's bind is retried.
        // The library reads DISTCACHE_* in the parent (DC_CTX_new at post-config); the children inherit them.
        Exception? last = null;
        for (int attempt = 0; attempt < 5 && _apaches.Count == 0; attempt++)
        {
            int port = Tool.FreePortOnBoth();
            var started = new List<ApacheServer>();
            try
            {
                foreach (string address in new[] { "127.0.0.1", "127.0.0.2" })
                {
                    var apache = new ApacheServer(new ApacheSettings(address, port, ServerName, cert, key)
                    {
                        Mpm = Mpm,
                        SessionCacheModule = new ApacheModule(ModuleName, module, LogTag),
                        SessionCache = $"dc:UNIX:{DcClientSocket}",
                        Environment = environment,
                    });
                    started.Add(apache);
                    await apache.StartAsync();
                }

                _apaches.AddRange(started);
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException)
            {
                last = e;
                foreach (ApacheServer apache in started)
                {
                    await apache.DisposeAsync();
                }

                // Only a port taken meanwhile is worth another try.
                if (!e.Message.Contains("Address already in use", StringComparison.Ordinal))
                {
                    throw;
                }
            }
        }

        if (_apaches.Count == 0)
        {
            throw new InvalidOperationException("could not start the two Apache servers", last);
        }

        // The whole chain works before any test runs: a session made on one server resumes on the other.
        await WaitForResumptionAsync("1.2", TimeSpan.FromSeconds(20));
    }

    /// <summary>Starts dc_client on the fixture's socket (again, after a test stopped it) and waits until it accepts.</summary>
    public async Task StartDcClientAsync()
    {
        if (_dcClient is not null)
        {
            await _dcClient.DisposeAsync();
        }

        // -sockperms 666: Apache's children run as www-data. -retry 200: the link to dc_server comes back quickly.
        _dcClient = Tool.Start("dc_client", "-listen", $"UNIX:{DcClientSocket}", "-server", DcServerAddress, "-sockperms", "666", "-retry", "200");
        await _dcClient.WaitForListenerAsync($"UNIX:{DcClientSocket}");
    }

    /// <summary>Stops dc_client (SIGTERM) and waits for it to exit.</summary>
    public async Task StopDcClientAsync()
    {
        Tool client = DcClient;
        client.Signal(Native.SIGTERM);
        await client.WaitForExitAsync(TimeSpan.FromSeconds(20));
    }

    /// <summary>Makes sure dc_client runs and answers (a test that stopped or froze it may have failed half way).</summary>
    public async Task EnsureDcClientAsync()
    {
        if (_dcClient is null || _dcClient.HasExited)
        {
            await StartDcClientAsync();
        }
        else
        {
            _dcClient.Signal(18); // SIGCONT, in case a test left it stopped
        }
    }

    /// <summary>Tries cross-server resumptions until one works; throws with the servers' logs when none does in time.</summary>
    public async Task<(int Attempts, TimeSpan Elapsed)> WaitForResumptionAsync(string tls, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        int attempts = 0;
        System.Text.Json.JsonElement last = default;
        while (clock.Elapsed < timeout)
        {
            attempts++;
            last = await TlsClient.PairAsync(tls, ServerName, First.Endpoint, Second.Endpoint);
            if (last.Int("reused") == 1)
            {
                return (attempts, clock.Elapsed);
            }

            await Task.Delay(200);
        }

        throw new TimeoutException($"no TLS {tls} session made on {First.Endpoint} resumed on {Second.Endpoint} within {timeout} ({attempts} attempts); last: {last}\n"
            + $"dc_client stderr:\n{_dcClient?.Stderr}\n{First.Diagnostics()}\n{Second.Diagnostics()}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (ApacheServer apache in _apaches)
        {
            await apache.DisposeAsync();
        }

        _apaches.Clear();
        if (_dcClient is not null)
        {
            _dcClient.Signal(18); // a stopped process ignores SIGKILL's cleanup until it runs again
            await _dcClient.DisposeAsync();
            _dcClient = null;
        }

        if (_dcServer is not null)
        {
            await _dcServer.DisposeAsync();
            _dcServer = null;
        }

        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        GC.SuppressFinalize(this);
    }
}

/// <summary>Apache's own mod_socache_dc, from Debian's apache2 source package, built unchanged against the library.</summary>
public sealed class DebianModulePair(NativeBuild build) : ApachePair(build)
{
    public override string Description => $"Apache's mod_socache_dc (Debian apache2 {Build.DebianSourceVersion} source, unchanged) with libdistcache";

    protected override string ModuleName => "socache_dc_module";

    public override string LogTag => "socache_dc";

    protected override (string? Path, string? Error) Module(NativeBuild build) =>
        (build.DebianModule, build.DebianModuleError);
}

/// <summary>This repository's mod_socache_distcache (native/apache).</summary>
public class DistcacheModulePair(NativeBuild build) : ApachePair(build)
{
    public override string Description => $"mod_socache_distcache (native/apache) with libdistcache, {Mpm} MPM";

    protected override string ModuleName => "socache_distcache_module";

    public override string LogTag => "socache_distcache";

    protected override (string? Path, string? Error) Module(NativeBuild build) =>
        (build.OwnModule, build.OwnModuleError);
}

/// <summary>mod_socache_distcache under the prefork MPM: many single-threaded children, each forked from the parent
/// that created the library's context.</summary>
public sealed class DistcacheModulePreforkPair(NativeBuild build) : DistcacheModulePair(build)
{
    public override string Mpm => "prefork";
}
