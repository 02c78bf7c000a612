using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Distcache.EndToEnd.Tests;

/// <summary>Every dc_server option of TOOLS.md, on the real executable.</summary>
public sealed partial class DcServerOptionTests
{
    private static readonly TimeSpan Quick = TimeSpan.FromSeconds(20);

    [GeneratedRegex(@"^Info, total operations = +\d+  \(\+ +\d+\), total sessions = +\d+  \([+=-] *\d+\)$", RegexOptions.Multiline)]
    private static partial Regex ActivityLine();

    [Theory]
    [InlineData("-h")]
    [InlineData("-help")]
    [InlineData("-?")]
    [InlineData("--help")]
    public async Task Help_prints_usage_and_succeeds(string flag)
    {
        var tool = await Tool.RunAsync(Quick, "dc_server", flag);
        Assert.Equal(0, tool.ExitCode);
        foreach (var option in new[] { "-version", "-listen", "-daemon", "-user", "-sockowner", "-sockgroup", "-sockperms", "-sessions", "-progress", "-pidfile", "-killable", "-memory", "-maxconns", "-msgtimeout", "-idle", "-writetimeout" })
        {
            Assert.Contains(option, tool.Stdout, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(new string[0], "Error, must provide -listen")]
    [InlineData(new[] { "-listen" }, "Error, -listen requires an argument: -listen <address>")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-sessions" }, "Error, -sessions requires an argument: -sessions <num>")]
    [InlineData(new[] { "-listen", "TCP:x:1" }, "Error, -listen given an invalid argument: 'TCP:x:1' is not an address: unknown address type 'TCP' (expected IP, IPv4, IPv6, UNIX or FD)")]
    [InlineData(new[] { "-listen", "IP:99999" }, "Error, -listen given an invalid argument: 'IP:99999' is not an address: port 99999 is out of range (1-65535)")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-sessions", "abc" }, "Error, -sessions given an invalid argument: 'abc' is not a number from 0 to 1000000000")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-sockperms", "999" }, "Error, -sockperms given an invalid argument: '999' is not octal permissions from 0 to 777, such as 660")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-memory", "lots" }, "Error, -memory given an invalid argument: 'lots' is not a size (a number of bytes, optionally followed by k, M, G or T for powers of 1024)")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-memory", "1k" }, "Error, -memory given an invalid argument: '1k' is not a size of at least 32896")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-progress", "-1" }, "Error, -progress given an invalid argument: '-1' is not a number from 0 to 4294967295")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-maxconns", "-1" }, "Error, -maxconns given an invalid argument: '-1' is not a number from 0 to 2147483647")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-msgtimeout", "soon" }, "Error, -msgtimeout given an invalid argument: 'soon' is not a number from 0 to 86400000")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-writetimeout" }, "Error, -writetimeout requires an argument: -writetimeout <msecs>")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:9", "-bogus" }, "Error, \"-bogus\" not recognised: dc_server has no such option")]
    public async Task Bad_arguments_get_1_5_1_messages_with_the_reason_and_fail(string[] args, string message)
    {
        var tool = await Tool.RunAsync(Quick, "dc_server", args);
        Assert.Equal(1, tool.ExitCode);
        // One line pointing at the usage instead of the usage itself, which pushed the error off the screen.
        Assert.Equal([message, "Run dc_server -h for the options."], tool.Stderr.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public async Task A_unix_socket_in_a_missing_directory_is_reported_with_the_real_cause()
    {
        // bind(2) says ENOENT, which the runtime words "Cannot assign requested address".
        var tool = await Tool.RunAsync(Quick, "dc_server", "-listen", "UNIX:/no/such/dir/sock");
        Assert.Equal(1, tool.ExitCode);
        Assert.Equal("Error, failed to listen on UNIX:/no/such/dir/sock: the directory /no/such/dir does not exist\n", tool.Stderr.ReplaceLineEndings("\n"));
    }

    [Fact]
    public async Task Listening_where_a_live_server_listens_fails_with_a_message()
    {
        using var dir = new TempDir();
        var (server, address) = await ServerProcess.StartUnixAsync(dir);
        await using var _ = server;
        var second = await Tool.RunAsync(Quick, "dc_server", "-listen", address);
        Assert.NotEqual(0, second.ExitCode);
        Assert.Contains("Error, failed to listen", second.Stderr, StringComparison.Ordinal);
        using var socket = Wire.Open(address);
        Assert.False(Wire.Have(socket, [1]));
    }

    [Fact]
    public async Task Gnu_style_long_options_are_aliases()
    {
        await using var server = Tool.Start("dc_server", "--listen=IP:127.0.0.1:0", "--sessions", "100");
        await server.WaitUntilAsync(() => ServerProcess.ListeningAddress(server.Stderr) is not null, Quick, "listening");
    }

    [Fact]
    public async Task Sessions_bounds_the_count_and_evicts_the_soonest_to_expire_in_batches_of_a_thirtieth()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-sessions", "64");
        await using var _ = server;
        using var socket = Wire.Open(address);
        // Session i expires after 60 s + i s: session 0 is due first.
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal([0], Wire.Add(socket, [(byte)i, 1], [(byte)i], timeoutMs: (uint)(60_000 + (i * 1000))));
        }

        // Full: the next ADD evicts 64/30 = 2 soonest-expiring sessions, then stores.
        Assert.Equal([0], Wire.Add(socket, [200, 1], [1], timeoutMs: 600_000));
        Assert.False(Wire.Have(socket, [0, 1]));
        Assert.False(Wire.Have(socket, [1, 1]));
        for (int i = 2; i < 64; i++)
        {
            Assert.True(Wire.Have(socket, [(byte)i, 1]), $"session {i}");
        }

        Assert.True(Wire.Have(socket, [200, 1]));
        await server.WaitUntilAsync(() => server.Stderr.Contains("total sessions =    63", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "the activity line shows 63 sessions");
    }

    [Fact]
    public async Task Sessions_zero_means_no_count_limit_and_large_counts_are_accepted()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-sessions", "0");
        await using var _ = server;
        using var socket = Wire.Open(address);
        for (int i = 0; i < 2000; i++)
        {
            Assert.Equal([0], Wire.Add(socket, BitConverter.GetBytes(i), [1, 2, 3, 4, 5]));
        }

        Assert.True(Wire.Have(socket, BitConverter.GetBytes(0)));
        var big = await ServerProcess.StartTcpAsync("-sessions", "5000000");
        await big.Server.DisposeAsync();
    }

    [Fact]
    public async Task Memory_bounds_the_bytes_stored_and_evicts_the_soonest_to_expire()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-sessions", "0", "-memory", "1M");
        await using var _ = server;
        using var socket = Wire.Open(address);
        var data = new byte[30_000];
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal([0], Wire.Add(socket, BitConverter.GetBytes(i), data, timeoutMs: (uint)(60_000 + (i * 1000))));
        }

        // 100 x 30 KB is 3 MB: only about a third fit in 1 MiB, and those are the latest to expire.
        Assert.False(Wire.Have(socket, BitConverter.GetBytes(0)));
        Assert.True(Wire.Have(socket, BitConverter.GetBytes(99)));
        int stored = Enumerable.Range(0, 100).Count(i => Wire.Have(socket, BitConverter.GetBytes(i)));
        Assert.InRange(stored, 20, 35);
    }

    [Fact]
    public async Task Activity_line_has_the_1_5_1_format_and_appears_only_when_something_changed()
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using var _ = server;
        using var socket = Wire.Open(address);

        // Both ADDs in one write, so that they are served together and no once-a-second line can fall between them.
        socket.Send(Frames.Encode(w =>
        {
            Distcache.Protocol.Requests.WriteAdd(w, 1, 60_000, [1], [1]);
            Distcache.Protocol.Requests.WriteAdd(w, 2, 60_000, [2], [1]);
        }));
        Wire.ReceiveExactly(socket, 2 * (Distcache.Protocol.ProtocolConstants.FrameHeaderSize + 1));
        const string Line = "Info, total operations =       2  (+     2), total sessions =     2  (+  2)";
        await server.WaitUntilAsync(() => server.Stderr.Contains(Line, StringComparison.Ordinal), TimeSpan.FromSeconds(10), "the activity line for both ADDs");
        await Task.Delay(1500);
        Assert.Single(ActivityLine().Matches(server.Stderr));
        Wire.Ask(socket, w => Distcache.Protocol.Requests.WriteIdRequest(w, 1, Distcache.Protocol.Operation.Remove, [1]));
        await server.WaitUntilAsync(() => server.Stderr.Contains("(+     1), total sessions =     1  (-  1)", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "a line for the remove");
    }

    [Fact]
    public async Task Progress_prints_a_line_every_n_operations_even_within_a_second()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-progress", "10");
        await using var _ = server;
        using var socket = Wire.Open(address);

        // One operation's once-a-second line first, so that none falls inside the batches below.
        Wire.Have(socket, [1]);
        await server.WaitUntilAsync(() => server.Stderr.Contains("Info, total operations =       1  ", StringComparison.Ordinal), TimeSpan.FromSeconds(10), "the line for the first operation");

        // Each batch of 10 waits for its own line. Without -progress, lines come at most once a second, so 10 lines
        // would take at least 9 s; with it they take well under one, and the bound leaves seconds for a busy machine.
        const int Batches = 10;
        var clock = Stopwatch.StartNew();
        for (int batch = 1; batch <= Batches; batch++)
        {
            for (int i = 0; i < 10; i++)
            {
                Wire.Have(socket, [1]);
            }

            string total = string.Create(CultureInfo.InvariantCulture, $"Info, total operations = {1 + (batch * 10),7}  ");
            await server.WaitUntilAsync(() => server.Stderr.Contains(total, StringComparison.Ordinal), TimeSpan.FromSeconds(10), $"the line for {1 + (batch * 10)} operations");
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"{Batches} progress lines in {clock.ElapsedMilliseconds} ms");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(Batches - 3), $"{Batches} lines took {clock.Elapsed}");
    }

    [Fact]
    public async Task Daemon_detaches_writes_its_pidfile_serves_and_stops_on_sigterm()
    {
        using var dir = new TempDir();
        string address = $"UNIX:{dir.File("d.sock")}";
        string pidFile = dir.File("dc_server.pid");
        // A daemon logs to syslog without -log, and a test host may have none.
        var parent = await Tool.RunAsync(Quick, "dc_server", "-listen", address, "-daemon", "-pidfile", pidFile, "-log", dir.File("d.log"));
        Assert.Equal(0, parent.ExitCode);
        int pid = int.Parse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture);
        try
        {
            Assert.NotEqual(parent.Pid, pid);
            Assert.True(Native.IsAlive(pid));
            // Field 6 of /proc/PID/stat is the session id: a new session led by the daemon itself.
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            Assert.Equal(pid.ToString(CultureInfo.InvariantCulture), fields[3]);
            Assert.Equal("0", fields[4]); // no controlling terminal
            using (var socket = Wire.Open(address))
            {
                Assert.Equal([0], Wire.Add(socket, [9], [9, 9]));
            }

            Native.Kill(pid, Native.SIGTERM);
            var clock = Stopwatch.StartNew();
            while (Native.IsAlive(pid) && clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(20);
            }

            Assert.False(Native.IsAlive(pid));
            Assert.False(File.Exists(pidFile));
            Assert.False(File.Exists(dir.File("d.sock")));
        }
        finally
        {
            Native.Kill(pid, Native.SIGKILL);
        }
    }

    [Fact]
    public async Task Daemon_start_up_failure_is_reported_by_the_parent()
    {
        using var dir = new TempDir();
        var parent = await Tool.RunAsync(Quick, "dc_server", "-listen", "UNIX:/nonexistent-dir/x.sock", "-daemon", "-log", dir.File("d.log"));
        Assert.NotEqual(0, parent.ExitCode);
        Assert.Contains("Error, failed to listen on UNIX:/nonexistent-dir/x.sock: the directory /nonexistent-dir does not exist", parent.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Pidfile_holds_the_server_pid_in_the_foreground_and_is_removed_on_exit()
    {
        using var dir = new TempDir();
        string pidFile = dir.File("s.pid");
        var (server, _) = await ServerProcess.StartTcpAsync("-pidfile", pidFile);
        await using (server)
        {
            await server.WaitUntilAsync(() => File.Exists(pidFile), Quick, "the pid file");
            Assert.Equal(server.Pid.ToString(CultureInfo.InvariantCulture), File.ReadAllText(pidFile).Trim());
            server.Signal(Native.SIGTERM);
            await server.WaitForExitAsync(Quick);
            Assert.Equal(0, server.ExitCode);
        }

        Assert.False(File.Exists(pidFile));
    }

    [Fact]
    public async Task User_switches_to_that_user_after_listening()
    {
        Assert.SkipUnless(Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root", "needs root to switch user");
        var (server, address) = await ServerProcess.StartTcpAsync("-user", "nobody");
        await using var _ = server;
        // The socket exists before the switch, so wait for the switch itself rather than for the listener.
        string[] Uids() => File.ReadAllLines($"/proc/{server.Pid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1..];
        await server.WaitUntilAsync(() => Uids().All(uid => uid == "65534"), Quick, "running as nobody");
        try
        {
            using var socket = Wire.Open(address);
            Assert.Equal([0], Wire.Add(socket, [1], [2]));
        }
        catch (System.Net.Sockets.SocketException e)
        {
            // Once seen in CI as a reset; the server's own account is what tells why.
            throw new InvalidOperationException($"request after the user switch failed ({e.SocketErrorCode}); exited={server.HasExited}; stderr:\n{server.Stderr}", e);
        }
    }

    [Fact]
    public async Task Regression_user_switch_with_an_install_directory_the_user_cannot_read()
    {
        // Connections were reset right after start-up when the binaries sat in a directory only root could read:
        // .NET loaded the code for the first connection after the switch to the new user, and could not.
        Assert.SkipUnless(Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root", "needs root to switch user");
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string install = Path.Combine(dir.Path, "bin");
        string built = Path.GetDirectoryName(Tool.PathOf("dc_server"))!;
        Directory.CreateDirectory(install);
        foreach (var file in Directory.GetFiles(built))
        {
            File.Copy(file, Path.Combine(install, Path.GetFileName(file)));
        }

        string path = Path.Combine(install, "dc_server");
        File.SetUnixFileMode(path, File.GetUnixFileMode(Tool.PathOf("dc_server")));
        await using var server = Tool.StartPath(path, ["-listen", "IP:127.0.0.1:0", "-user", "nobody"]);
        string? address = null;
        await server.WaitUntilAsync(() => (address = ServerProcess.ListeningAddress(server.Stderr)) is not null, Quick, "listening");
        await server.WaitUntilAsync(() => File.ReadAllText($"/proc/{server.Pid}/status").Contains("Uid:\t65534", StringComparison.Ordinal), Quick, "running as nobody");
        using var socket = Wire.Open(address!);
        Assert.Equal([0], Wire.Add(socket, [1], [2]));
        Assert.Equal([2], Wire.Get(socket, [1]));
    }

    [Fact]
    public async Task User_that_does_not_exist_fails_start_up()
    {
        var tool = await Tool.RunAsync(Quick, "dc_server", "-listen", "IP:127.0.0.1:0", "-user", "no-such-user-x");
        Assert.NotEqual(0, tool.ExitCode);
        Assert.Contains("no-such-user-x", tool.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Socket_owner_group_and_permissions_are_applied_to_the_unix_socket()
    {
        Assert.SkipUnless(Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root", "needs root to give the socket away");
        using var dir = new TempDir();
        var (server, address) = await ServerProcess.StartUnixAsync(dir, "-sockowner", "nobody", "-sockgroup", "nogroup", "-sockperms", "640");
        await using var _ = server;
        string path = address[5..];
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(path));
        ProcessResult owner = await Tool.RunProgramAsync("stat", ["-c", "%u %g", path], TimeSpan.FromSeconds(30));
        Assert.Equal("65534 65534", owner.Stdout.Trim());
    }

    [Theory]
    [InlineData(Native.SIGTERM)]
    [InlineData(Native.SIGINT)]
    public async Task Termination_signals_shut_down_cleanly_and_remove_the_socket_file(int signal)
    {
        // A background job of a non-interactive shell ignores SIGINT, and so does every process it starts.
        Assert.SkipWhen(SignalDisposition.IsIgnored(signal), $"this test run ignores signal {signal} (started in the background of a script?), and so would dc_server");
        using var dir = new TempDir();
        var (server, address) = await ServerProcess.StartUnixAsync(dir);
        await using var _ = server;
        using (var socket = Wire.Open(address))
        {
            Assert.Equal([0], Wire.Add(socket, [1], [1]));
        }

        server.Signal(signal);
        await server.WaitForExitAsync(Quick);
        Assert.Equal(0, server.ExitCode);
        Assert.False(File.Exists(address[5..]));
    }

    [Fact]
    public async Task User_signals_are_ignored_unless_killable()
    {
        var (plain, plainAddress) = await ServerProcess.StartTcpAsync();
        await using var _ = plain;
        plain.Signal(Native.SIGUSR1);
        plain.Signal(Native.SIGUSR2);
        await Task.Delay(500);
        Assert.False(plain.HasExited);
        using var socket = Wire.Open(plainAddress);
        Assert.False(Wire.Have(socket, [1]));

        foreach (int signal in new[] { Native.SIGUSR1, Native.SIGUSR2 })
        {
            var (killable, _) = await ServerProcess.StartTcpAsync("-killable");
            await using var __ = killable;
            killable.Signal(signal);
            await killable.WaitForExitAsync(Quick);
            Assert.Equal(0, killable.ExitCode);
        }
    }
}
