using System.Globalization;
using System.Text.RegularExpressions;
using Distcache.Tools.Tests.Support;

namespace Distcache.Tools.Tests;

/// <summary>
/// dc_test -check, the long-run checker: it passes against the real dc_server (sessions expiring during the run),
/// through dc_client while dc_server is killed and restarted, and against an honest fake; it fails, naming the lie,
/// against fakes that return wrong bytes, serve a removed session, or never expire, directly and through dc_client.
/// </summary>
public sealed partial class DcTestCheckTests(ITestOutputHelper output)
{
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(60);

    [GeneratedRegex(@"GET hits (\d+)")]
    private static partial Regex Hits();

    [GeneratedRegex(@"unknown outcomes \(DISCONNECTED, failures, timeouts\) (\d+)")]
    private static partial Regex Unknown();

    // The last match: the closing summary, which follows any progress lines.
    private static long Count(Regex regex, string text) => long.Parse(regex.Matches(text)[^1].Groups[1].Value, CultureInfo.InvariantCulture);

    // One-second sessions and a short slack: expiry happens, and is checked, within a few seconds.
    private static string[] Args(string address, params string[] extra) =>
        ["-connect", address, "-check", "-timeout", "1", "-slack", "300", "-keys", "40", "-clients", "2", "-pipeline", "4", "-seed", "11", .. extra];

    private void AssertPassed(Tool test)
    {
        output.WriteLine(test.Stdout.Trim());
        Assert.True(test.ExitCode == 0, test.Stdout + test.Stderr);
        Assert.Contains("Info, check complete, no lies", test.Stdout, StringComparison.Ordinal);
        Assert.True(Count(Hits(), test.Stdout) > 0, "no GET hit, so nothing was checked");
    }

    /// <summary>With the default mix a key is removed within milliseconds; without REMOVEs a session lives until it
    /// expires and is added again, so the expiry check is exercised (1 s sessions, a 3 s run).</summary>
    [Theory]
    [InlineData("get=40,add=30,remove=15,have=15")]
    [InlineData("get=70,add=30")]
    public async Task Passes_against_dc_server_with_sessions_expiring_during_the_run(string mix)
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-sessions", "0");
        await using (server)
        {
            await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", Args(address, "-duration", "3", "-progress", "5000", "-mix", mix));
            AssertPassed(test);
            Assert.Contains("Info, progress: ", test.Stdout, StringComparison.Ordinal);
            Assert.Equal(0, Count(Unknown(), test.Stdout));
        }
    }

    [Fact]
    public async Task Passes_against_an_honest_fake()
    {
        await using var server = new FakeCacheServer(Fault.None);
        await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", Args(server.Address, "-duration", "3"));
        AssertPassed(test);
    }

    [Fact]
    public async Task Passes_through_dc_client_while_dc_server_is_killed_and_restarted()
    {
        using var dir = new TempDir();
        string serverAddress = $"IP:127.0.0.1:{Tool.FreePort()}";
        Tool server = Tool.Start("dc_server", "-listen", serverAddress, "-sessions", "0");
        Tool? restarted = null;
        try
        {
            await server.WaitForListenerAsync(serverAddress);
            string proxyAddress = $"UNIX:{dir.File("check.sock")}";
            await using Tool proxy = Tool.Start("dc_client", "-listen", proxyAddress, "-server", serverAddress, "-retry", "100");
            await proxy.WaitForListenerAsync(proxyAddress);

            Tool test = Tool.Start("dc_test", Args(proxyAddress, "-duration", "5", "-progress", "500"));
            await using (test)
            {
                // The kill must land inside the run, however long dc_test takes to start: its first progress line
                // says the run is under way.
                await test.WaitUntilAsync(() => test.Stdout.Contains("Info, progress: ", StringComparison.Ordinal), TimeSpan.FromSeconds(20), "dc_test's first progress line");
                server.Signal(Native.SIGKILL);
                await server.WaitForExitAsync(TimeSpan.FromSeconds(10));
                await Task.Delay(500);
                restarted = Tool.Start("dc_server", "-listen", serverAddress, "-sessions", "0");
                await test.WaitForExitAsync(RunLimit);
                AssertPassed(test);

                // The outage was seen (DISCONNECTED answers) and ridden out.
                Assert.True(Count(Unknown(), test.Stdout) > 0, test.Stdout);
            }
        }
        finally
        {
            await server.DisposeAsync();
            if (restarted is not null)
            {
                await restarted.DisposeAsync();
            }
        }
    }

    public static TheoryData<Fault, string> Lies() => new()
    {
        { Fault.CorruptGetData, "wrong bytes for version" },
        { Fault.GetAnotherSession, "wrong bytes" },
        { Fault.RemoveKeepsSession, "(hit after an acknowledged REMOVE or replacement)" },
        { Fault.IgnoresExpiry, "(hit after expiry)" },
    };

    [Theory]
    [MemberData(nameof(Lies))]
    public async Task Catches_a_lying_server(Fault fault, string expected)
    {
        await using var server = new FakeCacheServer(fault);
        await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", Args(server.Address, "-duration", "30", "-mix", MixFor(fault)));
        AssertCaught(test, expected);
    }

    [Theory]
    [InlineData(Fault.RemoveKeepsSession, "(hit after an acknowledged REMOVE or replacement)")]
    [InlineData(Fault.IgnoresExpiry, "(hit after expiry)")]
    public async Task Catches_a_lying_server_behind_dc_client(Fault fault, string expected)
    {
        using var dir = new TempDir();
        await using var server = new FakeCacheServer(fault);
        string proxyAddress = $"UNIX:{dir.File("liar.sock")}";
        await using Tool proxy = Tool.Start("dc_client", "-listen", proxyAddress, "-server", server.Address);
        await proxy.WaitForListenerAsync(proxyAddress);
        await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", Args(proxyAddress, "-duration", "30", "-mix", MixFor(fault)));
        AssertCaught(test, expected);
    }

    // A session outlives its timeout only where nothing removes it first.
    private static string MixFor(Fault fault) => fault == Fault.IgnoresExpiry ? "get=70,add=30" : "get=40,add=30,remove=15,have=15";

    private void AssertCaught(Tool test, string expected)
    {
        output.WriteLine(test.Stderr.Trim());
        Assert.Equal(1, test.ExitCode);
        string[] lines = test.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.StartsWith("Error, the cache lied: GET sent at ", lines[0], StringComparison.Ordinal);
        Assert.Contains(expected, lines[0], StringComparison.Ordinal);
        Assert.Matches(@"for id [0-9a-f]{64} returned \d+ bytes", lines[0]);
        Assert.StartsWith("Info, before that (-seed 11): ", lines[1], StringComparison.Ordinal);
    }
}
