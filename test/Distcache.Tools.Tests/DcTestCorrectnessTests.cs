namespace Distcache.Tools.Tests;

/// <summary>dc_test's 1.5.1 correctness mode against the real dc_server and dc_client, and against servers that lie.</summary>
public sealed class DcTestCorrectnessTests
{
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(120);

    public static TheoryData<bool> Modes => [true, false];

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Passes_against_dc_server_over_tcp(bool persistent)
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", Args(address, persistent, "-sessions", "20", "-ops", "1500", "-progress", "500"));
            Assert.True(test.ExitCode == 0, test.Stdout + test.Stderr);
            Assert.Contains("Info, all tests complete", test.Stdout, StringComparison.Ordinal);
            Assert.Equal(3, test.Stdout.Split('\n').Count(l => l.Contains("tests complete (", StringComparison.Ordinal)));
            Assert.Equal(string.Empty, test.Stderr);
        }
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Passes_against_dc_server_over_a_unix_socket_with_large_sessions(bool persistent)
    {
        using var dir = new TempDir();
        var (server, address) = await ServerProcess.StartUnixAsync(dir);
        await using (server)
        {
            // -withcert sessions span three frames; -datamax beyond 1.5.1's 4096 is allowed up to the message limit.
            await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", Args(address, persistent, "-sessions", "8", "-withcert", "4", "-datamax", "9000", "-ops", "600"));
            Assert.True(test.ExitCode == 0, test.Stdout + test.Stderr);
            Assert.Contains("Info, all tests complete", test.Stdout, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Passes_through_dc_client(bool persistent)
    {
        Assert.SkipWhen(DcClient.IsPlaceholder, "apps/dc_client is still the placeholder that prints 'not implemented yet'");
        using var dir = new TempDir();
        var (server, serverAddress) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            string proxyAddress = $"UNIX:{dir.File("scache")}";
            await using Tool proxy = Tool.Start("dc_client", "-listen", proxyAddress, "-server", serverAddress);
            await proxy.WaitForListenerAsync(proxyAddress);
            await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", Args(proxyAddress, persistent, "-sessions", "15", "-ops", "800"));
            Assert.True(test.ExitCode == 0, test.Stdout + test.Stderr);
            Assert.Contains("Info, all tests complete", test.Stdout, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(Fault.RemoveAlwaysOk, "Error, remove succeeded and shouldn't have!")]
    [InlineData(Fault.AddAlwaysOk, "Error, add succeeded and shouldn't have!")]
    [InlineData(Fault.CorruptGetData, "Error, get returned the wrong data!")]
    public async Task Catches_a_server_that_answers_wrongly(Fault fault, string expected)
    {
        await using var server = new FakeCacheServer(fault);
        await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", "-connect", server.Address, "-persistent", "-sessions", "5", "-ops", "2000", "-seed", "42");
        Assert.Equal(1, test.ExitCode);
        string[] lines = test.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.StartsWith(expected, lines[0], StringComparison.Ordinal);

        // Which operation and which session: the failing test's number, the operation and the session id in hex.
        Assert.Matches(@"^Info, test \d+ of 2000: (ADD|GET|REMOVE|HAVE) of session \d \(id [0-9a-f]{20,126}, \d+ bytes of data\)$", lines[1]);

        // Every request before the failing one was answered correctly, and the failing one was the last sent.
        var succeeded = System.Text.RegularExpressions.Regex.Match(lines[2], @"^Info, (\d+) tests succeeded before the first failure");
        Assert.True(succeeded.Success, lines[2]);
        Assert.Equal(server.Requests - 1, long.Parse(succeeded.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(string.Empty, test.Stdout);
    }

    [Fact]
    public async Task The_same_seed_repeats_the_same_failure()
    {
        string first;
        await using (var server = new FakeCacheServer(Fault.RemoveAlwaysOk))
        {
            await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", "-connect", server.Address, "-sessions", "6", "-seed", "7");
            first = test.Stderr;
        }

        await using (var server = new FakeCacheServer(Fault.RemoveAlwaysOk))
        {
            await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", "-connect", server.Address, "-sessions", "6", "-seed", "7");
            Assert.Equal(first, test.Stderr);
        }
    }

    [Fact]
    public async Task A_server_that_is_not_there_is_an_error()
    {
        int port = Tool.FreePort();
        await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", "-connect", $"IP:127.0.0.1:{port}", "-persistent");
        Assert.Equal(1, test.ExitCode);
        Assert.StartsWith($"Error, failed to connect to IP:127.0.0.1:{port}", test.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_a_server_the_first_per_operation_connect_fails_the_first_test()
    {
        int port = Tool.FreePort();
        await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", "-connect", $"IP:127.0.0.1:{port}", "-ops", "3");
        Assert.Equal(1, test.ExitCode);
        Assert.Matches(@"^Error, (add|get|remove|have) could not complete: ", test.Stderr);
        Assert.Contains("Info, 0 tests succeeded before the first failure", test.Stderr, StringComparison.Ordinal);
    }

    private static string[] Args(string address, bool persistent, params string[] extra) =>
        ["-connect", address, .. persistent ? new[] { "-persistent" } : [], .. extra];
}

/// <summary>Whether apps/dc_client is still the placeholder (it is being written concurrently).</summary>
internal static class DcClient
{
    public static bool IsPlaceholder { get; } =
        File.ReadAllText(Path.Combine(Tool.RepositoryRoot, "apps", "dc_client", "Program.cs")).Contains("not implemented yet", StringComparison.Ordinal);
}
