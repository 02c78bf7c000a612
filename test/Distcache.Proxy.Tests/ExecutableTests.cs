using System.Diagnostics;
using Distcache.Networking;
using Distcache.Protocol;
using Distcache.Proxy.Tests.Support;

namespace Distcache.Proxy.Tests;

/// <summary>The dc_client executable: its command line, signals, files, and idle timeout.</summary>
public sealed class ExecutableTests
{
    private static readonly TimeSpan Exit = TimeSpan.FromSeconds(20);

    [Theory]
    [InlineData("-h")]
    [InlineData("-help")]
    [InlineData("-?")]
    public async Task Help_prints_the_usage_and_succeeds(string flag)
    {
        await using Tool tool = await Tool.RunAsync(Exit, "dc_client", flag);
        Assert.Equal(0, tool.ExitCode);
        Assert.StartsWith("Usage: dc_client [options]", tool.Stdout, StringComparison.Ordinal);
        foreach (string option in new[] { "-listen", "-server", "-connect", "-retry", "-idle", "-timeout", "-daemon", "-user", "-sockowner", "-sockgroup", "-sockperms", "-pidfile", "-killable" })
        {
            Assert.Contains(option, tool.Stdout, StringComparison.Ordinal);
        }

        Assert.Contains("default: UNIX:/tmp/scache", tool.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Error, -listen requires an argument: -listen <addr>", "-server", "IP:127.0.0.1:1", "-listen")]
    [InlineData("Error, -server requires an argument: -server <addr>", "-server")]
    [InlineData("Error, -connect requires an argument: -connect <addr>", "-connect")]
    [InlineData("Error, -retry requires an argument: -retry <msecs>", "-server", "IP:127.0.0.1:1", "-retry")]
    [InlineData("Error, -idle requires an argument: -idle <msecs>", "-idle")]
    [InlineData("Error, -pidfile requires an argument: -pidfile <path>", "-pidfile")]
    [InlineData("Error, -retry given an invalid argument: '0' is not a number from 1 to 3600000", "-retry", "0")]
    [InlineData("Error, -retry given an invalid argument: '3600001' is not a number from 1 to 3600000", "-retry", "3600001")]
    [InlineData("Error, -retry given an invalid argument: '5s' is not a number from 1 to 3600000", "-retry", "5s")]
    [InlineData("Error, -idle given an invalid argument: '3600001' is not a number from 0 to 3600000", "-idle", "3600001")]
    [InlineData("Error, -idle given an invalid argument: '-1' is not a number from 0 to 3600000", "-idle", "-1")]
    [InlineData("Error, -timeout given an invalid argument: 'soon' is not a number from 0 to 3600000", "-timeout", "soon")]
    [InlineData("Error, -sockperms given an invalid argument: '999' is not octal permissions from 0 to 777, such as 660", "-sockperms", "999")]
    [InlineData("Error, -server given an invalid argument: 'IP:9001' names no host, so it can only be listened on; connecting needs one, as in IP:host:port", "-server", "IP:9001")]
    [InlineData("Error, -connect given an invalid argument: 'nowhere' is not an address: missing address type in 'nowhere' (expected a prefix IP, IPv4, IPv6, UNIX or FD followed by ':')", "-connect", "nowhere")]
    [InlineData("Error, -listen given an invalid argument: 'TCP:1234' is not an address: unknown address type 'TCP' (expected IP, IPv4, IPv6, UNIX or FD)", "-listen", "TCP:1234")]
    [InlineData("Error, --daemon given an invalid argument: --daemon takes no value, and 'yes' was given", "--daemon=yes")]
    [InlineData("Error, \"-bogus\" not recognised: dc_client has no such option", "-server", "IP:127.0.0.1:1", "-bogus")]
    [InlineData("Error, \"stray\" not recognised: every word must be an option (-name) or the value that follows one", "stray")]
    [InlineData("Error, no server specified!", "-listen", "UNIX:/tmp/never-used-by-this-test")]
    [InlineData("Error, no server specified!")]
    [InlineData("Error, -connect given an invalid argument: IP:127.0.0.1:1 is already a server", "-server", "IP:127.0.0.1:1", "-connect", "IP:127.0.0.1:1")]
    public async Task Argument_errors_are_worded_as_1_5_1_words_them_and_fail(string expected, params string[] args)
    {
        await using Tool tool = await Tool.RunAsync(Exit, "dc_client", args);
        Assert.NotEqual(0, tool.ExitCode);
        Assert.Equal([expected, "Run dc_client -h for the options."], tool.Stderr.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n'));
        Assert.False(File.Exists("/tmp/never-used-by-this-test"));
    }

    [Fact]
    public async Task The_same_server_twice_is_refused_naming_the_flag()
    {
        // Unlike 1.5.1, several different servers are accepted (sessions are spread over them); one twice is not.
        await using Tool tool = await Tool.RunAsync(Exit, "dc_client", "-connect", "IP:127.0.0.1:1", "--server=IP:127.0.0.1:1");
        Assert.Equal(1, tool.ExitCode);
        Assert.StartsWith("Error, --server given an invalid argument: IP:127.0.0.1:1 is already a server", tool.Stderr.ReplaceLineEndings("\n"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_socket_a_live_process_listens_on_is_not_taken_over()
    {
        using var dir = new TempDir();
        string path = dir.File("taken.sock");
        using NetworkListener owner = NetworkListener.Listen(Address.Parse("UNIX:" + path));
        await using Tool tool = await Tool.RunAsync(Exit, "dc_client", "-listen", "UNIX:" + path, "-server", "IP:127.0.0.1:1");
        Assert.Equal(1, tool.ExitCode);
        Assert.Contains("Error, failed to listen on UNIX:" + path, tool.Stderr, StringComparison.Ordinal);
        Assert.True(File.Exists(path));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("0")]
    public async Task Local_connections_and_the_server_link_are_served_on_either_socket_transport(string? nativeTransport)
    {
        // Local connections and the link go on dc_client's own epoll transport unless DISTCACHE_NATIVE_TRANSPORT=0.
        // The event loops' threads ("distcache event loop N", of which Linux keeps 15 characters) show that it
        // runs; which epoll sets hold the listening socket and the link's show who accepts and who carries the link.
        // The runtime keeps one set for its sockets (told here to use one thread): without the native transport it
        // holds both. With it, every event loop's set holds the listening socket (each loop accepts), and the link is
        // in one of them.
        await using var server = InProcessServer.Start();
        using var dir = new TempDir();
        string socket = dir.File("t.sock");
        var environment = new Dictionary<string, string> { ["DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT"] = "1" };
        if (nativeTransport is not null)
        {
            environment["DISTCACHE_NATIVE_TRANSPORT"] = nativeTransport;
        }

        await using Tool tool = Tool.StartWithEnvironment("dc_client", environment, "-listen", "UNIX:" + socket, "-server", server.Address.ToString());
        await LoadTests.WaitForLinkAsync(tool);
        for (int i = 0; i < 20; i++)
        {
            using TestClient client = await TestClient.ConnectAsync(socket);
            Assert.Equal(Frames.Status(7, Operation.Have, StatusCode.NotOk), (await client.CallAsync(Frames.Have(7, "absent"))).Raw);
        }

        int eventLoops = Directory.GetDirectories($"/proc/{tool.Pid}/task")
            .Count(task => File.ReadAllText(Path.Combine(task, "comm")).Trim() == "distcache event");
        Assert.Equal(nativeTransport is null, eventLoops > 0);

        int link = ProcessSockets.Descriptor(tool.Pid, ProcessSockets.TcpInodesConnectedTo(server.Address.Port));
        int listening = ProcessSockets.Descriptor(tool.Pid, ProcessSockets.UnixInodeListeningOn(socket));
        List<HashSet<int>> sets = ProcessSockets.EpollSets(tool.Pid);
        HashSet<int> linkSet = Assert.Single(sets, set => set.Contains(link));
        Assert.Equal(nativeTransport is null ? eventLoops : 1, sets.Count(set => set.Contains(listening)));
        Assert.True(linkSet.Contains(listening), "the link's set is one that accepts (an event loop's, or the runtime's)");
    }

    [Fact(Timeout = 120_000)]
    public async Task A_flood_of_local_connections_beyond_the_descriptor_limit_is_refused_and_never_ends_the_process()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && File.Exists("/usr/bin/prlimit"), "needs Linux and prlimit");

        // dc_client has no -maxconns: it caps its local connections at what fits under its descriptor limit. With a
        // hard limit of 300 (about 100 held by the runtime, 64 kept free) that is some 130, and 400 connections at
        // once used to run it out of descriptors, which ends a .NET process. prlimit execs dc_client.
        await using var server = InProcessServer.Start();
        using var dir = new TempDir();
        string socket = dir.File("flood.sock");
        await using Tool tool = Tool.StartPath("prlimit", ["--nofile=300:300", Tool.PathOf("dc_client"), "-listen", "UNIX:" + socket, "-server", server.Address.ToString()]);
        await LoadTests.WaitForLinkAsync(tool);

        var clients = new List<System.Net.Sockets.Socket>();
        try
        {
            for (int i = 0; i < 400; i++)
            {
                clients.Add(Wire.Open("UNIX:" + socket));
            }

            // The first ones are served; the last, over the cap, is closed at once; the refusals are logged.
            Assert.False(Wire.Have(clients[0], [1, 2, 3]));
            await Poll.UntilAsync(() => Wire.IsClosedByPeer(clients[^1]), TimeSpan.FromSeconds(20), "a connection over the cap to be closed");
            await tool.WaitUntilAsync(() => tool.Stderr.Contains("Refused ", StringComparison.Ordinal), TimeSpan.FromSeconds(20), "the refusals to be logged");
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }

        // Once the flood has gone, a new connection is served again.
        await Wire.ServedAgainAsync("UNIX:" + socket, TimeSpan.FromSeconds(20), "a new connection to be served once the flood has gone");
        Assert.False(tool.HasExited);
        Assert.DoesNotContain("Too many open files", tool.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task SIGTERM_shuts_down_cleanly_removing_the_socket_and_pid_files()
    {
        await using var server = InProcessServer.Start();
        using var dir = new TempDir();
        string socket = dir.File("c.sock");
        string pidFile = dir.File("c.pid");
        await using Tool tool = Tool.Start("dc_client", "-listen", "UNIX:" + socket, "-server", server.Address.ToString(), "-pidfile", pidFile, "-sockperms", "600");
        await LoadTests.WaitForLinkAsync(tool);
        Assert.True(PidFileHolds(pidFile, tool.Pid));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));

        using TestClient client = await TestClient.ConnectAsync(socket);
        Assert.Equal(Frames.Status(1, Operation.Have, StatusCode.NotOk), (await client.CallAsync(Frames.Have(1, "x"))).Raw);

        tool.Signal(Native.SIGTERM);
        await tool.WaitForExitAsync(Exit);
        Assert.Equal(0, tool.ExitCode);
        Assert.True(await client.ClosesWithinAsync(TimeSpan.FromSeconds(5)));
        Assert.False(File.Exists(socket), "the socket file was left behind");
        Assert.False(File.Exists(pidFile), "the pid file was left behind");
    }

    [Fact]
    public async Task Daemon_mode_detaches_once_the_proxy_is_forwarding()
    {
        await using var server = InProcessServer.Start();
        using var dir = new TempDir();
        string socket = dir.File("d.sock");
        string pidFile = dir.File("d.pid");
        // A daemon logs to syslog without -log, and a test host may have none.
        await using Tool parent = await Tool.RunAsync(Exit, "dc_client", "-daemon", "-listen", "UNIX:" + socket, "-server", server.Address.ToString(), "-pidfile", pidFile, "-log", dir.File("d.log"));
        Assert.True(parent.ExitCode == 0, parent.Stderr);
        Assert.True(PidFile(pidFile, out int pid), "no pid file");
        try
        {
            Assert.NotEqual(parent.Pid, pid);
            using TestClient client = await TestClient.ConnectAsync(socket);
            Assert.Equal(Frames.Status(1, Operation.Have, StatusCode.NotOk), (await client.CallAsync(Frames.Have(1, "x"))).Raw);
        }
        finally
        {
            _ = Native.Kill(pid, Native.SIGTERM);
            var clock = Stopwatch.StartNew();
            while (Native.IsAlive(pid) && clock.Elapsed < Exit)
            {
                await Task.Delay(20);
            }

            if (Native.IsAlive(pid))
            {
                _ = Native.Kill(pid, Native.SIGKILL);
            }
        }

        Assert.False(Native.IsAlive(pid));
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public async Task Idle_connections_are_dropped_but_not_one_waiting_on_a_stalled_server()
    {
        await using var server = new FakeServer();
        using var dir = new TempDir();
        string socket = dir.File("idle.sock");
        // The operation timeout is well beyond the bound on the idle connection's close, so that close cannot have
        // waited for the other connection's request to end.
        await using Tool tool = Tool.Start("dc_client", "-listen", "UNIX:" + socket, "-server", server.Address.ToString(), "-idle", "300", "-timeout", "5000");
        await LoadTests.WaitForLinkAsync(tool);
        FakeConnection link = await server.NextConnectionAsync();

        // Started before the connections are made: the idle time and the stalled request's wait both start later.
        var clock = Stopwatch.StartNew();
        using TestClient idle = await TestClient.ConnectAsync(socket);
        using TestClient waiting = await TestClient.ConnectAsync(socket);
        await waiting.SendAsync(Frames.Get(5, "stalled"));
        await link.NextRequestAsync();

        Assert.True(await idle.ClosesWithinAsync(TimeSpan.FromSeconds(10)), "the idle connection stayed open");
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(4));

        // Still open well past the idle timeout, until the operation timeout answers for the stalled server.
        Received answer = await waiting.ReceiveAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(Frames.Disconnected(5, Operation.Get), answer.Raw);
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(4900), $"answered after {clock.Elapsed}");
        Assert.True(await waiting.ClosesWithinAsync(TimeSpan.FromSeconds(10)), "idle after its answer, it should be dropped too");
    }

    private static bool PidFileHolds(string path, int pid) => PidFile(path, out int found) && found == pid;

    private static bool PidFile(string path, out int pid)
    {
        pid = 0;
        return File.Exists(path) && int.TryParse(File.ReadAllText(path).Trim(), System.Globalization.CultureInfo.InvariantCulture, out pid);
    }
}
