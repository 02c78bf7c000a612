namespace Distcache.Native.Tests.Support;

/// <summary>
/// What the C tests run against: a real dc_server, a real dc_client in front of it, and a second dc_client whose
/// dc_server does not exist (it answers every request itself, as a failure). All on unix sockets in a temporary
/// folder, started once for the test class; and the built test program, and valgrind.
/// </summary>
public sealed class NativeServers : IAsyncLifetime
{
    /// <summary>valgrind's options: memory errors and definite or indirect leaks fail the run with exit code 99.</summary>
    public static readonly string[] ValgrindOptions =
        ["--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect", "--track-fds=no", "-q"];

    private readonly TempDir _dir = new();
    private Tool? _server;
    private Tool? _proxy;
    private Tool? _downProxy;

    public string Program { get; private set; } = "";

    /// <summary>valgrind's path, or null when DISTCACHE_NATIVE_TESTS_NO_VALGRIND=1 asks to run without it.</summary>
    public string? Valgrind { get; private set; }

    public string ServerAddress { get; private set; } = "";

    public string ProxyAddress { get; private set; } = "";

    public string DownProxyAddress { get; private set; } = "";

    public async ValueTask InitializeAsync()
    {
        Program = NativeTestProgram.ProgramPath;
        Valgrind = FindValgrind();

        (_server, ServerAddress) = await ServerProcess.StartUnixAsync(_dir, "-sessions", "60000");

        ProxyAddress = $"UNIX:{_dir.File("proxy.sock")}";
        _proxy = Tool.Start("dc_client", "-listen", ProxyAddress, "-server", ServerAddress);
        await _proxy.WaitForListenerAsync(ProxyAddress);
        await _proxy.WaitUntilAsync(
            () => (_proxy.Stdout + _proxy.Stderr).Contains("Connected to the server", StringComparison.Ordinal),
            TimeSpan.FromSeconds(20), "dc_client's link to dc_server");

        DownProxyAddress = $"UNIX:{_dir.File("down.sock")}";
        _downProxy = Tool.Start("dc_client", "-listen", DownProxyAddress, "-server", $"UNIX:{_dir.File("no-server.sock")}", "-retry", "60000");
        await _downProxy.WaitForListenerAsync(DownProxyAddress);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (Tool? tool in new[] { _downProxy, _proxy, _server })
        {
            if (tool is not null)
            {
                await tool.DisposeAsync();
            }
        }

        _dir.Dispose();
    }

    /// <summary>The environment of a run: the three addresses, and none of the library's own settings, so that every
    /// test starts from the library's defaults and sets what it needs itself.</summary>
    public Dictionary<string, string?> Environment(bool underValgrind) => new()
    {
        ["DISTCACHE_TEST_SERVER"] = ServerAddress,
        ["DISTCACHE_TEST_PROXY"] = ProxyAddress,
        ["DISTCACHE_TEST_PROXY_DOWN"] = DownProxyAddress,
        ["DISTCACHE_TEST_UNDER_VALGRIND"] = underValgrind ? "1" : null,
        ["DISTCACHE_TIMEOUT_MS"] = null,
        ["DISTCACHE_MIN_SESSION_TIMEOUT_MS"] = null,
    };

    /// <summary>Runs one test of the program under valgrind (unless disabled).</summary>
    public Task<ProcessResult> RunUnderValgrindAsync(string name, TimeSpan timeout)
    {
        return Valgrind is null
            ? NativeTestProgram.RunAsync(Program, [name], Environment(underValgrind: false), timeout)
            : NativeTestProgram.RunAsync(Valgrind, [.. ValgrindOptions, Program, name], Environment(underValgrind: true), timeout);
    }

    /// <summary>Runs the program natively with the given arguments and extra environment.</summary>
    public Task<ProcessResult> RunNativeAsync(IEnumerable<string> args, IReadOnlyDictionary<string, string?> extra, TimeSpan timeout)
    {
        var environment = Environment(underValgrind: false);
        foreach (var (name, value) in extra)
        {
            environment[name] = value;
        }

        return NativeTestProgram.RunAsync(Program, args, environment, timeout);
    }

    /// <summary>What dc_server and dc_client logged, for a failure message.</summary>
    public string ServerLogs() =>
        $"--- dc_server ---\n{_server?.Stderr.TrimEnd()}\n--- dc_client ---\n{_proxy?.Stdout.TrimEnd()}{_proxy?.Stderr.TrimEnd()}";

    private static string? FindValgrind()
    {
        if (System.Environment.GetEnvironmentVariable("DISTCACHE_NATIVE_TESTS_NO_VALGRIND") == "1")
        {
            return null;
        }

        foreach (string dir in (System.Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "valgrind");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException(
            "valgrind is not installed: the C library's tests run under it (apt-get install -y valgrind; scripts/test.sh installs it). "
            + "DISTCACHE_NATIVE_TESTS_NO_VALGRIND=1 runs them without it.");
    }
}
