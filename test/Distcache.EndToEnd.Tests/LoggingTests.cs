using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Distcache.EndToEnd.Tests;

/// <summary>-log, -loglevel, -logformat and syslog, on the real dc_server and dc_client.</summary>
public sealed partial class LoggingTests
{
    private const int SIGHUP = 1;
    private static readonly TimeSpan Quick = TimeSpan.FromSeconds(20);
    private static readonly byte[] WrongVersion = Frames.Header(protoLevel: 0x0010_0000, dataLength: 4);

    [GeneratedRegex(@"^<(\d+)>[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d dc_server\[(\d+)\]: (.*)$", RegexOptions.Singleline)]
    private static partial Regex SyslogDatagram();

    [Fact]
    public async Task Log_file_gets_the_lines_and_after_rename_and_sighup_a_fresh_file_gets_the_new_ones()
    {
        Assert.SkipWhen(SignalDisposition.IsIgnored(SIGHUP), "this test run ignores SIGHUP (started under nohup?), and so would the tool");
        using var dir = new TempDir();
        string log = dir.File("server.log");
        var (server, address) = await ServerProcess.StartTcpAsync("-log", log);
        await using var _ = server;

        Violate(address);
        await WaitForFileAsync(log, "warn: Distcache.Server.DistcacheServer[1] Closing", server);
        string text = await File.ReadAllTextAsync(log);
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info: dc_server\[0\] listening on IP:127\.0\.0\.1:\d+$", text.Split('\n')[0]);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(log) | Umask());
        // The logger's lines go to the file only; stderr keeps its 1.5.1 lines.
        Assert.DoesNotContain("warn:", server.Stderr, StringComparison.Ordinal);

        File.Move(log, log + ".1");
        server.Signal(SIGHUP);
        await WaitForFileAsync(log, "info: dc_server[0] SIGHUP: reopened the log file " + log, server);
        Violate(address);
        await WaitForFileAsync(log, "warn: Distcache.Server.DistcacheServer[1] Closing", server);

        string rotated = await File.ReadAllTextAsync(log + ".1");
        Assert.Equal(1, Regex.Count(rotated, Regex.Escape("warn: Distcache.Server.DistcacheServer[1] Closing")));
        Assert.DoesNotContain("reopened", rotated, StringComparison.Ordinal);
        Assert.Contains("Info, SIGHUP: reopened the log file", server.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_log_file_that_cannot_be_reopened_leaves_the_log_on_the_previous_one()
    {
        Assert.SkipWhen(SignalDisposition.IsIgnored(SIGHUP), "this test run ignores SIGHUP (started under nohup?), and so would the tool");
        using var dir = new TempDir();
        string log = dir.File("server.log");
        var (server, address) = await ServerProcess.StartTcpAsync("-log", log);
        await using var _ = server;
        await WaitForFileAsync(log, "listening on", server);

        // A directory where the file was: open(2) fails with EISDIR.
        File.Move(log, log + ".1");
        Directory.CreateDirectory(log);
        server.Signal(SIGHUP);
        await server.WaitUntilAsync(() => server.Stderr.Contains("Error, SIGHUP: -log", StringComparison.Ordinal), Quick, "the failed reopen");
        Assert.Contains($"Error, SIGHUP: -log {log}: cannot open it for appending: Is a directory; still writing to the previous file", server.Stderr, StringComparison.Ordinal);
        Violate(address);
        await WaitForFileAsync(log + ".1", "warn: Distcache.Server.DistcacheServer[1] Closing", server);
        Assert.Contains("fail: dc_server[0] SIGHUP: -log", await File.ReadAllTextAsync(log + ".1"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dc_client_log_file_is_reopened_on_sighup()
    {
        Assert.SkipWhen(SignalDisposition.IsIgnored(SIGHUP), "this test run ignores SIGHUP (started under nohup?), and so would the tool");
        using var dir = new TempDir();
        string log = dir.File("client.log");
        int port = Tool.FreePort();
        await using var client = Tool.Start("dc_client", "-listen", "UNIX:" + dir.File("c.sock"), "-server", $"IP:127.0.0.1:{port}", "-log", log);
        // Nothing listens on the port: the link's warning is the first thing logged.
        await WaitForFileAsync(log, $"warn: Distcache.Proxy.DistcacheProxy[2] No link to the server at IP:127.0.0.1:{port}", client);

        File.Move(log, log + ".1");
        client.Signal(SIGHUP);
        await WaitForFileAsync(log, "SIGHUP: reopened the log file " + log, client);
        client.Signal(Native.SIGTERM);
        await client.WaitForExitAsync(Quick);
        Assert.Equal(0, client.ExitCode);
        Assert.Contains("SIGTERM received; shutting down", await File.ReadAllTextAsync(log), StringComparison.Ordinal);
        Assert.DoesNotContain("SIGTERM", await File.ReadAllTextAsync(log + ".1"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Daemon_with_a_log_file_logs_its_warnings_there()
    {
        using var dir = new TempDir();
        string log = dir.File("daemon.log");
        string pidFile = dir.File("d.pid");
        string address = "UNIX:" + dir.File("d.sock");
        var parent = await Tool.RunAsync(Quick, "dc_server", "-listen", address, "-daemon", "-pidfile", pidFile, "-log", log);
        Assert.True(parent.ExitCode == 0, parent.Stderr);
        int pid = int.Parse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture);
        try
        {
            Violate(address);
            await Poll.UntilAsync(() => File.ReadAllText(log).Contains("protocol violation", StringComparison.Ordinal), Quick, "the warning in the log", () => File.ReadAllText(log));
            Assert.Contains("warn: Distcache.Server.DistcacheServer[1] Closing", File.ReadAllText(log), StringComparison.Ordinal);
            Assert.Contains("info: dc_server[0] listening on " + address, File.ReadAllText(log), StringComparison.Ordinal);
        }
        finally
        {
            await StopAsync(pid);
        }

        Assert.Contains("info: dc_server[0] at exit: ", File.ReadAllText(log), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dc_client_daemon_with_a_log_file_logs_its_warnings_there()
    {
        using var dir = new TempDir();
        string log = dir.File("daemon.log");
        string pidFile = dir.File("d.pid");
        int port = Tool.FreePort();
        var parent = await Tool.RunAsync(Quick, "dc_client", "-listen", "UNIX:" + dir.File("c.sock"), "-server", $"IP:127.0.0.1:{port}", "-daemon", "-pidfile", pidFile, "-log", log);
        Assert.True(parent.ExitCode == 0, parent.Stderr);
        int pid = int.Parse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture);
        try
        {
            await Poll.UntilAsync(() => File.ReadAllText(log).Contains("No link to the server", StringComparison.Ordinal), Quick, "the warning in the log", () => File.ReadAllText(log));
        }
        finally
        {
            await StopAsync(pid);
        }
    }

    [Theory]
    [InlineData("error", new string[0], new[] { "warn:", "info:", "dbug:" })]
    [InlineData("warning", new[] { "warn: Distcache.Server.DistcacheServer[1]" }, new[] { "info:", "dbug:" })]
    [InlineData("info", new[] { "warn: Distcache.Server.DistcacheServer[1]", "info: dc_server[0] listening on", "info: dc_server[0] at exit" }, new[] { "dbug:" })]
    [InlineData("debug", new[] { "warn: Distcache.Server.DistcacheServer[1]", "info: dc_server[0] at exit", "dbug: Distcache.Networking.NetworkListener[1] Listening on" }, new string[0])]
    public async Task Loglevel_filters_the_log(string level, string[] present, string[] absent)
    {
        using var dir = new TempDir();
        string log = dir.File("level.log");
        var (server, address) = await ServerProcess.StartTcpAsync("-log", log, "-loglevel", level);
        await using (server)
        {
            Violate(address);
            await server.WaitUntilAsync(() => server.Stderr.Contains("Info, listening", StringComparison.Ordinal), Quick, "start-up");
            // The violation is logged (or not) before the connection is closed, which Violate waited for.
            server.Signal(Native.SIGTERM);
            await server.WaitForExitAsync(Quick);
        }

        string text = File.Exists(log) ? await File.ReadAllTextAsync(log) : string.Empty;
        Assert.All(present, line => Assert.Contains(line, text, StringComparison.Ordinal));
        Assert.All(absent, line => Assert.DoesNotContain(line, text, StringComparison.Ordinal));
        // The 1.5.1 lines on stderr do not depend on the level.
        Assert.Contains("Info, at exit: ", server.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Logformat_json_writes_one_json_object_per_line()
    {
        using var dir = new TempDir();
        string log = dir.File("json.log");
        var (server, address) = await ServerProcess.StartTcpAsync("-log", log, "-logformat", "json");
        await using (server)
        {
            Violate(address);
            server.Signal(Native.SIGTERM);
            await server.WaitForExitAsync(Quick);
        }

        string[] lines = (await File.ReadAllTextAsync(log)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length >= 3, string.Join('\n', lines));
        var entries = lines.Select(line => JsonDocument.Parse(line).RootElement).ToList();
        Assert.All(entries, e =>
        {
            Assert.True(DateTimeOffset.TryParse(e.GetProperty("time").GetString(), CultureInfo.InvariantCulture, out _));
            Assert.Contains(e.GetProperty("level").GetString(), new[] { "info", "warning", "error" });
            Assert.False(string.IsNullOrEmpty(e.GetProperty("category").GetString()));
            Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
        });
        Assert.Contains(entries, e => e.GetProperty("level").GetString() == "warning"
            && e.GetProperty("category").GetString() == "Distcache.Server.DistcacheServer"
            && e.GetProperty("message").GetString()!.Contains("protocol violation", StringComparison.Ordinal));
        Assert.Contains(entries, e => e.GetProperty("category").GetString() == "dc_server"
            && e.GetProperty("message").GetString()!.StartsWith("listening on IP:127.0.0.1:", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("dc_server", new[] { "-loglevel", "loud" }, "Error, -loglevel given an invalid argument: 'loud' is not a level: use error, warning, info or debug")]
    [InlineData("dc_server", new[] { "-logformat", "xml" }, "Error, -logformat given an invalid argument: 'xml' is not a format: use text or json")]
    [InlineData("dc_server", new[] { "-log" }, "Error, -log requires an argument: -log <file>")]
    [InlineData("dc_server", new[] { "-log", "" }, "Error, -log given an invalid argument: the value is empty")]
    [InlineData("dc_server", new[] { "-log", "/nonexistent-dir/x.log" }, "Error, -log /nonexistent-dir/x.log: cannot open it for appending: No such file or directory")]
    [InlineData("dc_client", new[] { "-loglevel", "verbose" }, "Error, -loglevel given an invalid argument: 'verbose' is not a level: use error, warning, info or debug")]
    [InlineData("dc_client", new[] { "-logformat", "yaml" }, "Error, -logformat given an invalid argument: 'yaml' is not a format: use text or json")]
    [InlineData("dc_client", new[] { "-log", "/nonexistent-dir/x.log" }, "Error, -log /nonexistent-dir/x.log: cannot open it for appending")]
    public async Task Bad_log_flags_are_refused_naming_the_flag_the_value_and_the_rule(string tool, string[] flags, string error)
    {
        string[] start = tool == "dc_server" ? ["-listen", "IP:127.0.0.1:0"] : ["-listen", "IP:127.0.0.1:0", "-server", "IP:127.0.0.1:9"];
        var run = await Tool.RunAsync(Quick, tool, [.. start, .. flags]);
        Assert.NotEqual(0, run.ExitCode);
        Assert.StartsWith(error, run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Daemon_without_log_and_without_a_syslog_socket_starts_as_1_5_1_did_and_warns_that_the_log_is_lost()
    {
        using var dir = new TempDir();
        string pidFile = dir.File("d.pid");
        await using var parent = Tool.StartWithEnvironment("dc_server", new Dictionary<string, string> { ["DISTCACHE_SYSLOG_SOCKET"] = dir.File("no-such-socket") },
            "-listen", "UNIX:" + dir.File("d.sock"), "-daemon", "-pidfile", pidFile);
        await parent.WaitForExitAsync(Quick);
        Assert.True(parent.ExitCode == 0, parent.Stderr);
        Assert.Contains($"Warning, -daemon without -log sends the log to syslog, but there is no syslog socket at {dir.File("no-such-socket")}", parent.Stderr, StringComparison.Ordinal);
        Assert.Contains("give -log FILE; until then the log is discarded once detached", parent.Stderr, StringComparison.Ordinal);
        int pid = int.Parse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture);
        try
        {
            using var socket = Wire.Open("UNIX:" + dir.File("d.sock"));
            Assert.False(Wire.Have(socket, [1, 2, 3]));
        }
        finally
        {
            using var daemon = System.Diagnostics.Process.GetProcessById(pid);
            daemon.Kill();
            await daemon.WaitForExitAsync(TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task Daemon_without_log_sends_rfc_3164_datagrams_to_syslog()
    {
        using var dir = new TempDir();
        string syslogPath = dir.File("log.sock");
        using var syslog = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        syslog.Bind(new UnixDomainSocketEndPoint(syslogPath));
        syslog.ReceiveTimeout = 20_000;
        string address = "UNIX:" + dir.File("d.sock");
        string pidFile = dir.File("d.pid");
        await using var parent = Tool.StartWithEnvironment("dc_server", new Dictionary<string, string> { ["DISTCACHE_SYSLOG_SOCKET"] = syslogPath },
            "-listen", address, "-daemon", "-pidfile", pidFile);
        await parent.WaitForExitAsync(Quick);
        Assert.True(parent.ExitCode == 0, parent.Stderr);
        int pid = int.Parse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture);
        try
        {
            var received = new List<string>();
            string Next()
            {
                var buffer = new byte[65536];
                int n = syslog.Receive(buffer);
                received.Add(Encoding.UTF8.GetString(buffer, 0, n));
                return received[^1];
            }

            string listening;
            var clock = Stopwatch.StartNew();
            do
            {
                listening = Next();
            }
            while (!listening.Contains("listening on", StringComparison.Ordinal) && clock.Elapsed < Quick);

            var first = SyslogDatagram().Match(listening);
            Assert.True(first.Success, string.Join('\n', received));
            Assert.Equal("30", first.Groups[1].Value); // facility daemon (3) * 8 + informational (6)
            Assert.Equal(pid.ToString(CultureInfo.InvariantCulture), first.Groups[2].Value);
            Assert.Equal("info: dc_server[0] listening on " + address, first.Groups[3].Value);

            Violate(address);
            string warning;
            clock.Restart();
            do
            {
                warning = Next();
            }
            while (!warning.Contains("protocol violation", StringComparison.Ordinal) && clock.Elapsed < Quick);

            var match = SyslogDatagram().Match(warning);
            Assert.True(match.Success, warning);
            Assert.Equal("28", match.Groups[1].Value); // daemon, warning
            Assert.StartsWith("warn: Distcache.Server.DistcacheServer[1] Closing ", match.Groups[3].Value, StringComparison.Ordinal);
        }
        finally
        {
            await StopAsync(pid);
        }
    }

    [Fact]
    public async Task Standard_error_lines_carry_priorities_when_it_is_the_journal_stream()
    {
        // JOURNAL_STREAM names the device and inode of the stream systemd connected; the shell finds those of the
        // pipe that is standard error here, so the server sees exactly what it would see under systemd.
        string command = "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec \"$0\" \"$@\"";
        await using var server = Tool.StartPath("/bin/sh", ["-c", command, Tool.PathOf("dc_server"), "-listen", "IP:127.0.0.1:0"]);
        await server.WaitUntilAsync(() => server.Stderr.Contains("<6>Info, listening on ", StringComparison.Ordinal), Quick, "the prefixed listening line");
        string address = server.Stderr.Split('\n').First(l => l.StartsWith("<6>Info, listening on ", StringComparison.Ordinal))["<6>Info, listening on ".Length..].Trim();
        Violate(address);
        await server.WaitUntilAsync(() => server.Stderr.Contains("<4>warn: Distcache.Server.DistcacheServer[1] Closing", StringComparison.Ordinal), Quick, "the prefixed warning");
    }

    [Fact]
    public async Task Standard_error_lines_have_no_priorities_when_the_journal_stream_is_another()
    {
        var (server, address) = await ServerProcess.StartTcpAsync(new Dictionary<string, string> { ["JOURNAL_STREAM"] = "8:1" });
        await using var _ = server;
        Violate(address);
        await server.WaitUntilAsync(() => server.Stderr.Contains("warn: Distcache.Server.DistcacheServer[1] Closing", StringComparison.Ordinal), Quick, "the warning");
        Assert.DoesNotContain("<4>", server.Stderr, StringComparison.Ordinal);
        Assert.StartsWith("Info, listening on", server.Stderr, StringComparison.Ordinal);
    }

    /// <summary>Sends a message of a wrong protocol version and waits until the server closes that connection.</summary>
    private static void Violate(string address)
    {
        using var offender = Wire.Open(address, timeoutMs: 5000);
        offender.Send(WrongVersion);
        Assert.True(Wire.IsClosedByPeer(offender), "the offending connection was not closed");
    }

    private static async Task WaitForFileAsync(string path, string text, Tool tool) =>
        await tool.WaitUntilAsync(() => File.Exists(path) && File.ReadAllText(path).Contains(text, StringComparison.Ordinal), Quick,
            $"'{text}' in {path}: {(File.Exists(path) ? File.ReadAllText(path) : "(no file)")}");

    private static async Task StopAsync(int pid)
    {
        Native.Kill(pid, Native.SIGTERM);
        var clock = Stopwatch.StartNew();
        while (Native.IsAlive(pid) && clock.Elapsed < Quick)
        {
            await Task.Delay(20);
        }

        if (Native.IsAlive(pid))
        {
            Native.Kill(pid, Native.SIGKILL);
        }
    }

    /// <summary>The file mode creation mask of this process, which the tools inherit.</summary>
    private static UnixFileMode Umask()
    {
        string line = File.ReadAllLines("/proc/self/status").First(l => l.StartsWith("Umask:", StringComparison.Ordinal));
        return (UnixFileMode)Convert.ToInt32(line["Umask:".Length..].Trim(), 8) & (UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
    }
}
