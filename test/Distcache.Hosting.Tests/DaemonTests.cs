using Distcache.Hosting.Tests.Support;
using Distcache.Testing;

namespace Distcache.Hosting.Tests;

/// <summary>Daemon mode and signal handling, checked on real processes of Distcache.Hosting.TestApp.</summary>
public sealed class DaemonTests : IDisposable
{
    private const int SIGHUP = 1;
    private const int SIGINT = 2;
    private const int SIGUSR1 = 10;
    private const int SIGUSR2 = 12;
    private const int SIGTERM = 15;
    private static readonly TimeSpan ExitLimit = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan QuickStart = TimeSpan.FromSeconds(15);
    private const string Env = "/usr/bin/env";

    private readonly TestAppHarness _app = new();

    public void Dispose() => _app.Dispose();

    [Fact]
    public async Task Parent_returns_at_once_with_0_while_the_detached_child_keeps_running()
    {
        var pidPath = _app.PathFor("app.pid");

        var run = await _app.RunAsync("-daemon", "-pidfile", pidPath, "-sleep", "60", "-say", "starting up");

        Assert.Equal(0, run.ExitCode);
        Assert.True(run.Elapsed < QuickStart, $"the parent took {run.Elapsed}");
        Assert.Equal("starting up\n", run.Output);
        Assert.Equal(string.Empty, run.Error);
        var pid = TestAppHarness.ReadPid(pidPath);
        Thread.Sleep(300);
        var stat = TestAppHarness.Stat(pid);
        Assert.NotNull(stat);
        Assert.True(TestAppHarness.IsRunning(pid), "the daemon is gone although it writes to its old stdout every 100 ms");
        Assert.Equal(pid, stat.Session);
        Assert.Equal(pid, stat.ProcessGroup);
        Assert.Equal(0, stat.TerminalNumber);
        Assert.All(new[] { 0, 1, 2 }, fd => Assert.Equal("/dev/null", new FileInfo($"/proc/{pid}/fd/{fd}").LinkTarget));

        TestAppHarness.Signal(pid, SIGTERM);

        Assert.True(TestAppHarness.WaitForExit(pid, ExitLimit), "SIGTERM did not stop the daemon");
        Assert.False(File.Exists(pidPath), "the pid file outlived a clean shutdown");
    }

    [Fact]
    public async Task The_child_leaves_the_controlling_terminal_of_its_parent()
    {
        const string script = "/usr/bin/script";
        Assert.SkipUnless(File.Exists(script), "util-linux script(1) is needed to give the parent a terminal");
        var pidPath = _app.PathFor("tty.pid");
        var ttyPath = _app.PathFor("parent-tty");
        // script(1) runs the command on a new pseudo-terminal; the first command records that the harness works.
        var command = $"cut -d' ' -f7 /proc/self/stat > '{ttyPath}'; exec '{TestAppHarness.AppHost}' -daemon -pidfile '{pidPath}' -sleep 60";

        var run = await _app.RunAsync(script, ["-qec", command, "/dev/null"]);

        Assert.Equal(0, run.ExitCode);
        Assert.NotEqual("0", File.ReadAllText(ttyPath).Trim());
        var pid = TestAppHarness.ReadPid(pidPath);
        var stat = TestAppHarness.Stat(pid);
        Assert.NotNull(stat);
        Assert.Equal(0, stat.TerminalNumber);
        Assert.Equal(pid, stat.Session);
    }

    [Fact]
    public async Task Relative_paths_keep_their_meaning_in_the_child()
    {
        var run = await _app.RunAsync(TestAppHarness.AppHost, ["-daemon", "-pidfile", "relative.pid", "-sleep", "60"], workingDirectory: _app.Directory);

        Assert.Equal(0, run.ExitCode);
        var pidPath = _app.PathFor("relative.pid");
        var pid = TestAppHarness.ReadPid(pidPath);
        Assert.Equal(_app.Directory, new DirectoryInfo($"/proc/{pid}/cwd").LinkTarget);

        TestAppHarness.Signal(pid, SIGTERM);

        Assert.True(TestAppHarness.WaitForExit(pid, ExitLimit), "SIGTERM did not stop the daemon");
        Assert.False(File.Exists(pidPath));
    }

    [Fact]
    public async Task SIGINT_requests_a_clean_shutdown()
    {
        Assert.SkipUnless(File.Exists(Env), "GNU env(1) is needed to undo an inherited SIG_IGN");
        var pidPath = _app.PathFor("app.pid");
        // A test run started in the background inherits SIGINT ignored, and the runtime keeps it that way.
        var run = await _app.RunAsync(Env, ["--default-signal=INT", TestAppHarness.AppHost, "-daemon", "-pidfile", pidPath]);
        Assert.Equal(0, run.ExitCode);
        var pid = TestAppHarness.ReadPid(pidPath);

        TestAppHarness.Signal(pid, SIGINT);

        Assert.True(TestAppHarness.WaitForExit(pid, ExitLimit), "SIGINT did not stop the daemon");
        Assert.False(File.Exists(pidPath));
    }

    [Fact]
    public async Task A_SIGINT_ignored_at_start_stays_ignored_as_for_any_background_job()
    {
        var pidPath = _app.PathFor("app.pid");
        // A non-interactive shell starts background jobs with SIGINT and SIGQUIT ignored.
        var run = await _app.RunAsync("/bin/sh", ["-c", $"'{TestAppHarness.AppHost}' -daemon -pidfile '{pidPath}' & wait $!"]);
        Assert.Equal(0, run.ExitCode);
        var pid = TestAppHarness.ReadPid(pidPath);

        TestAppHarness.Signal(pid, SIGINT);
        Thread.Sleep(500);

        Assert.True(TestAppHarness.IsRunning(pid));
        TestAppHarness.Signal(pid, SIGTERM);
        Assert.True(TestAppHarness.WaitForExit(pid, ExitLimit));
    }

    [Fact]
    public async Task Without_killable_SIGUSR1_SIGUSR2_and_SIGHUP_are_ignored()
    {
        var pidPath = _app.PathFor("app.pid");
        Assert.Equal(0, (await _app.RunAsync("-daemon", "-pidfile", pidPath)).ExitCode);
        var pid = TestAppHarness.ReadPid(pidPath);

        TestAppHarness.Signal(pid, SIGUSR1);
        TestAppHarness.Signal(pid, SIGUSR2);
        TestAppHarness.Signal(pid, SIGHUP);
        Thread.Sleep(500);

        Assert.True(TestAppHarness.IsRunning(pid), "an ignored signal stopped the daemon");
        Assert.True(File.Exists(pidPath));
        TestAppHarness.Signal(pid, SIGTERM);
        Assert.True(TestAppHarness.WaitForExit(pid, ExitLimit));
        Assert.False(File.Exists(pidPath));
    }

    [Theory]
    [InlineData(SIGUSR1)]
    [InlineData(SIGUSR2)]
    public async Task With_killable_SIGUSR1_and_SIGUSR2_shut_down_cleanly(int signal)
    {
        var pidPath = _app.PathFor("app.pid");
        Assert.Equal(0, (await _app.RunAsync("-daemon", "-killable", "-pidfile", pidPath)).ExitCode);
        var pid = TestAppHarness.ReadPid(pidPath);

        TestAppHarness.Signal(pid, signal);

        Assert.True(TestAppHarness.WaitForExit(pid, ExitLimit), "the signal did not stop a -killable daemon");
        Assert.False(File.Exists(pidPath), "the shutdown was not clean: the pid file is still there");
    }

    [Fact]
    public async Task SIGHUP_runs_the_hangup_hook_and_the_process_keeps_running()
    {
        Assert.SkipWhen(SignalDisposition.IsIgnored(SIGHUP), "this test run ignores SIGHUP (started under nohup?), and so would the daemon");
        var pidPath = _app.PathFor("app.pid");
        var hupPath = _app.PathFor("hups");
        Assert.Equal(0, (await _app.RunAsync("-daemon", "-pidfile", pidPath, "-hupfile", hupPath)).ExitCode);
        var pid = TestAppHarness.ReadPid(pidPath);

        TestAppHarness.Signal(pid, SIGHUP);

        // The hook creates the file before it writes the line: only a whole line says it has run.
        await Poll.UntilAsync(() => File.Exists(hupPath) && File.ReadAllText(hupPath).EndsWith('\n'), ExitLimit, "the hangup hook's line");
        Assert.Equal("hup\n", File.ReadAllText(hupPath));
        Assert.True(TestAppHarness.IsRunning(pid));
    }

    [Fact]
    public async Task A_child_failing_during_start_up_makes_the_parent_relay_its_error_and_fail()
    {
        var run = await _app.RunAsync("-daemon", "-say", "trying", "-fail", "cannot bind UNIX:/nowhere/x");

        Assert.Equal(3, run.ExitCode);
        Assert.True(run.Elapsed < QuickStart, $"the parent took {run.Elapsed}");
        Assert.Equal("Error, cannot bind UNIX:/nowhere/x\n", run.Error);
        Assert.Equal("trying\n", run.Output);
    }

    [Fact]
    public async Task A_child_exiting_silently_before_ready_is_still_a_failure()
    {
        var run = await _app.RunAsync("-daemon", "-hang", "-sleep", "0");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("Error, the daemon exited during start-up (exit status 0)\n", run.Error);
    }

    [Fact]
    public async Task A_child_that_never_gets_ready_is_stopped_after_the_timeout()
    {
        var pidPath = _app.PathFor("hang.pid");

        var run = await _app.RunAsync("-daemon", "-hang", "-ready-timeout", "2", "-pidfile", pidPath);

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("Error, the daemon did not finish starting within 2 seconds; it has been stopped", run.Error, StringComparison.Ordinal);
        Assert.InRange(run.Elapsed, TimeSpan.FromSeconds(2), QuickStart);
        var pid = TestAppHarness.ReadPid(pidPath);
        Assert.True(TestAppHarness.WaitForExit(pid, ExitLimit), "the half-started daemon was left running");
    }

    [Fact]
    public async Task Interrupting_the_waiting_parent_stops_the_half_started_child()
    {
        var pidPath = _app.PathFor("hang.pid");
        using var parent = _app.Start("-daemon", "-hang", "-pidfile", pidPath);
        var child = TestAppHarness.ReadPid(pidPath);

        TestAppHarness.Signal(parent.Id, SIGTERM);
        var run = await TestAppHarness.WaitAsync(parent);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("Error, interrupted while the daemon was starting; it has been stopped\n", run.Error);
        Assert.True(TestAppHarness.WaitForExit(child, ExitLimit), "the half-started daemon was left running");
    }

    [Fact]
    public async Task A_command_line_error_is_reported_by_the_parent_without_starting_a_child()
    {
        var run = await _app.RunAsync("-daemon", "-sleep", "soon");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("Error, -sleep given an invalid argument: 'soon' is not a number from 0 to 3600\nRun hosting-testapp -h for the options.\n", run.Error);
        Assert.Equal(string.Empty, run.Output);
    }

    [Fact]
    public void The_test_process_is_not_a_daemon_child()
    {
        Assert.False(Daemon.IsDaemonChild);
        Daemon.NotifyReady();
        Assert.Throws<InvalidOperationException>(Daemon.StartSession);
    }
}
