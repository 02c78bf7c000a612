using System.Net.Sockets;
using System.Text;

namespace Distcache.EndToEnd.Tests;

/// <summary>
/// dc_server and dc_client as systemd services: a listening socket handed over by a socket unit (LISTEN_FDS),
/// readiness (READY=1 to NOTIFY_SOCKET), and the unit files under packaging/systemd, dc_ticketkeys's included.
/// </summary>
public sealed class SystemdTests
{
    private static readonly TimeSpan Quick = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Plays the socket unit: binds and listens on a unix socket, puts it at descriptor 3, sets LISTEN_FDS=1 and
    /// execs the tool through a shell that sets LISTEN_PID to its own pid, which the tool keeps (exec all the way
    /// down). .NET's Process cannot pass a descriptor beyond the standard three, which is why this takes Python.
    /// </summary>
    private const string SocketUnit = """
        import os, socket, sys
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sys.argv[1])
        listener.listen(64)
        if listener.fileno() != 3:
            os.dup2(listener.fileno(), 3)
        os.set_inheritable(3, True)
        env = dict(os.environ, LISTEN_FDS="1")
        os.execve("/bin/sh", ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"'] + sys.argv[2:], env)
        """;

    private static string Python => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Dc_server_serves_the_socket_systemd_passes(bool listenFd3)
    {
        string[] listen = listenFd3 ? ["-listen", "FD:3"] : [];
        using var dir = new TempDir();
        string path = dir.File("activated.sock");
        await using var server = StartActivated(path, "dc_server", listen);
        await server.WaitUntilAsync(() => server.Stderr.Contains("Info, listening on UNIX:" + path, StringComparison.Ordinal), Quick, "the listening line");

        using var socket = Wire.Open("UNIX:" + path);
        Assert.Equal([0], Wire.Add(socket, [1, 2], [3, 4]));
        Assert.Equal([3, 4], Wire.Get(socket, [1, 2]));

        server.Signal(Native.SIGTERM);
        await server.WaitForExitAsync(Quick);
        Assert.Equal(0, server.ExitCode);
    }

    [Fact]
    public async Task Dc_client_serves_the_socket_systemd_passes()
    {
        var (cache, cacheAddress) = await ServerProcess.StartTcpAsync();
        await using var _ = cache;
        using var dir = new TempDir();
        string path = dir.File("client.sock");
        await using var client = StartActivated(path, "dc_client", ["-server", cacheAddress]);
        await client.WaitUntilAsync(() => client.Stderr.Contains("Connected to the server", StringComparison.Ordinal) || Tool.CanConnect("UNIX:" + path), Quick, "the proxy");

        using var socket = Wire.Open("UNIX:" + path);
        Assert.Equal([0], Wire.Add(socket, [7], [8, 9]));
        using var direct = Wire.Open(cacheAddress);
        Assert.Equal([8, 9], Wire.Get(direct, [7]));
    }

    [Theory]
    [InlineData("dc_server", new[] { "-listen", "IP:127.0.0.1:0" }, "Error, -listen IP:127.0.0.1:0 was given, but systemd passed a listening socket (LISTEN_FDS=1): leave -listen out, or give -listen FD:3")]
    [InlineData("dc_server", new[] { "-listen", "FD:4" }, "Error, -listen FD:4 was given, but systemd passed a listening socket")]
    [InlineData("dc_server", new[] { "-daemon" }, "Error, -daemon does not go with a listening socket passed by systemd (LISTEN_FDS)")]
    [InlineData("dc_client", new[] { "-listen", "UNIX:/tmp/x.sock", "-server", "IP:127.0.0.1:9" }, "Error, -listen UNIX:/tmp/x.sock was given, but systemd passed a listening socket")]
    public async Task A_passed_socket_with_another_listen_or_daemon_is_refused(string tool, string[] args, string error)
    {
        using var dir = new TempDir();
        await using var run = StartActivated(dir.File("s.sock"), tool, args);
        await run.WaitForExitAsync(Quick);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(error, run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Listen_variables_meant_for_another_process_are_not_taken()
    {
        var environment = new Dictionary<string, string> { ["LISTEN_PID"] = "1", ["LISTEN_FDS"] = "1" };
        await using var run = Tool.StartWithEnvironment("dc_server", environment);
        await run.WaitForExitAsync(Quick);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("Error, must provide -listen", run.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("dc_server", false)]
    [InlineData("dc_client", true)]
    public async Task Ready_is_sent_to_notify_socket_once_the_listener_exists(string tool, bool abstractName)
    {
        using var dir = new TempDir();
        string name = abstractName ? "distcache-test-" + Guid.NewGuid().ToString("N") : dir.File("notify.sock");
        using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(abstractName ? "\0" + name : name));
        notify.ReceiveTimeout = (int)Quick.TotalMilliseconds;

        string address = "UNIX:" + dir.File("ready.sock");
        Tool cache = null!;
        string[] args = ["-listen", address];
        if (tool == "dc_client")
        {
            (cache, string cacheAddress) = await ServerProcess.StartTcpAsync();
            args = [.. args, "-server", cacheAddress];
        }

        try
        {
            await using var process = Tool.StartWithEnvironment(tool, new Dictionary<string, string> { ["NOTIFY_SOCKET"] = abstractName ? "@" + name : name }, args);
            var buffer = new byte[4096];
            int n = await Task.Run(() => notify.Receive(buffer));
            Assert.Equal("READY=1", Encoding.UTF8.GetString(buffer, 0, n));
            Assert.True(Tool.CanConnect(address), "READY=1 arrived before the listener accepted connections");
            Assert.False(process.HasExited);
        }
        finally
        {
            if (cache is not null)
            {
                await cache.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task The_unit_files_pass_systemd_analyze_verify()
    {
        string analyze = new[] { "/usr/bin/systemd-analyze", "/bin/systemd-analyze" }.FirstOrDefault(File.Exists) ?? string.Empty;
        Assert.SkipWhen(analyze.Length == 0, "systemd-analyze is not installed (apt-get install systemd) to check the unit files");
        using var dir = new TempDir();
        string units = Path.Combine(Tool.RepositoryRoot, "packaging", "systemd");
        string[] names =
        [
            "dc_server.service", "dc_server.socket", "dc_client.service", "dc_client.socket",
            "dc_ticketkeys.service", "dc_ticketkeys-once.service", "dc_ticketkeys.timer",
        ];
        foreach (string name in names)
        {
            // verify checks that ExecStart's program exists: point the install folder at the built tools.
            string text = await File.ReadAllTextAsync(Path.Combine(units, name));
            Assert.True(!name.EndsWith(".service", StringComparison.Ordinal) || text.Contains("ExecStart=/opt/distcache/", StringComparison.Ordinal), name);
            foreach (string tool in new[] { "dc_server", "dc_client", "dc_ticketkeys" })
            {
                text = text.Replace("/opt/distcache/bin/" + tool, Tool.PathOf(tool), StringComparison.Ordinal);
            }

            await File.WriteAllTextAsync(dir.File(name), text);
        }

        var result = await Tool.RunProgramAsync(analyze, ["verify", .. names.Select(n => "./" + n)], TimeSpan.FromSeconds(60), workingDirectory: dir.Path);
        Assert.SkipWhen(result.ExitCode != 0 && result.Output.Contains("Failed to initialize manager", StringComparison.Ordinal), "systemd-analyze verify cannot run in this container: " + result.Output);
        Assert.True(result.ExitCode == 0, result.Output);
        // Warnings (an unknown key, a misspelt section) leave the exit status at 0 but are still mistakes.
        Assert.Equal(string.Empty, result.Output.Trim());
    }

    [Fact]
    public void The_units_harden_the_services_and_leave_the_jit_its_memory()
    {
        foreach (string tool in new[] { "dc_server", "dc_client" })
        {
            string unit = File.ReadAllText(Path.Combine(Tool.RepositoryRoot, "packaging", "systemd", tool + ".service"));
            foreach (string line in new[] { "Type=notify", "User=distcache", "Group=distcache", "RuntimeDirectory=distcache", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "LimitNOFILE=", $"Requires={tool}.socket" })
            {
                Assert.Contains("\n" + line, unit, StringComparison.Ordinal);
            }

            Assert.DoesNotContain("\nMemoryDenyWriteExecute=", unit, StringComparison.Ordinal);
            Assert.DoesNotContain(" -listen", unit.Split('\n').Single(l => l.StartsWith("ExecStart=", StringComparison.Ordinal)), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void The_ticket_key_units_run_as_root_without_capabilities_through_dc_clients_socket()
    {
        string units = Path.Combine(Tool.RepositoryRoot, "packaging", "systemd");
        string socket = File.ReadAllText(Path.Combine(units, "dc_client.socket"));
        string clientSocket = socket.Split('\n').Single(l => l.StartsWith("ListenStream=", StringComparison.Ordinal))["ListenStream=".Length..];
        foreach ((string name, string type) in new[] { ("dc_ticketkeys.service", "notify"), ("dc_ticketkeys-once.service", "oneshot") })
        {
            string unit = File.ReadAllText(Path.Combine(units, name));
            foreach (string line in new[]
            {
                "Type=" + type, "User=root", "SupplementaryGroups=distcache", "StateDirectory=dc_ticketkeys", "StateDirectoryMode=0700", "UMask=0077",
                "ProtectSystem=strict", "ReadWritePaths=-/etc/nginx/ticketkeys", "NoNewPrivileges=yes", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "CapabilityBoundingSet=\n",
            })
            {
                Assert.Contains("\n" + line, unit, StringComparison.Ordinal);
            }

            Assert.DoesNotContain("\nMemoryDenyWriteExecute=", unit, StringComparison.Ordinal);
            string exec = unit.Split('\n').Single(l => l.StartsWith("ExecStart=", StringComparison.Ordinal));
            // The socket dc_client.socket makes, the key directory the sandbox leaves writable, and a reload.
            Assert.Contains($" -connect UNIX:{clientSocket} ", exec, StringComparison.Ordinal);
            Assert.Contains(" -nginx /etc/nginx/ticketkeys ", exec, StringComparison.Ordinal);
            Assert.Contains(" -reload \"systemctl reload nginx\"", exec, StringComparison.Ordinal);
            Assert.Equal(type == "oneshot", exec.Contains(" -once ", StringComparison.Ordinal));
            Assert.DoesNotContain(" -daemon", exec, StringComparison.Ordinal);
        }

        string timer = File.ReadAllText(Path.Combine(units, "dc_ticketkeys.timer"));
        foreach (string line in new[] { "OnCalendar=*:0/5", "Persistent=true", "RandomizedDelaySec=", "Unit=dc_ticketkeys-once.service", "WantedBy=timers.target" })
        {
            Assert.Contains("\n" + line, timer, StringComparison.Ordinal);
        }
    }

    private static Tool StartActivated(string socketPath, string tool, string[] args) =>
        Tool.StartPath(Python, ["-c", SocketUnit, socketPath, Tool.PathOf(tool), .. args]);
}
