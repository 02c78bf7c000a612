namespace Distcache.Tools.Tests;

/// <summary>The 1.5.1 wordings of argument errors with their reasons, usage on request, and the checks between options.</summary>
public sealed class ArgumentTests
{
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(new[] { "-listen" }, "Error, -listen requires an argument: -listen <address>")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:1", "-server" }, "Error, -server requires an argument: -server <address>")]
    [InlineData(new[] { "-listen", "nonsense" }, "Error, -listen given an invalid argument: 'nonsense' is not an address: missing address type in 'nonsense' (expected a prefix IP, IPv4, IPv6, UNIX or FD followed by ':')")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:1", "-server", "IP:9000" }, "Error, -server given an invalid argument: 'IP:9000' names no host, so it can only be listened on; connecting needs one, as in IP:host:port")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:1", "-connect", "FOO:bar" }, "Error, -connect given an invalid argument: 'FOO:bar' is not an address: unknown address type 'FOO' (expected IP, IPv4, IPv6, UNIX or FD)")]
    [InlineData(new[] { "-bogus" }, "Error, \"-bogus\" not recognised: dc_snoop has no such option")]
    [InlineData(new[] { "stray" }, "Error, \"stray\" not recognised: every word must be an option (-name) or the value that follows one")]
    [InlineData(new string[0], "Error, must provide -listen")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:1" }, "Error, must provide -server")]
    public async Task Dc_snoop_argument_errors(string[] args, string expected) => await ExpectErrorAsync("dc_snoop", args, expected);

    [Theory]
    [InlineData(new string[0], "Error, must provide -connect")]
    [InlineData(new[] { "-connect" }, "Error, -connect requires an argument: -connect <address>")]
    [InlineData(new[] { "-connect", "IP:9000" }, "Error, -connect given an invalid argument: 'IP:9000' names no host, so it can only be listened on; connecting needs one, as in IP:host:port")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-sessions", "0" }, "Error, -sessions given an invalid argument: '0' is not a number from 1 to 100000")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-sessions", "-1" }, "Error, -sessions given an invalid argument: '-1' is not a number from 1 to 100000")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-timeout", "3601" }, "Error, -timeout given an invalid argument: '3601' is not a number from 1 to 3600")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-timeout", "10", "-timevar", "10" }, "Error, -timevar must be less than -timeout (10 >= 10)")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-datamin", "200", "-datamax", "100" }, "Error, -datamin must not be greater than -datamax (200 > 100)")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-datamax", "40000" }, "Error, -datamax given an invalid argument: '40000' is not a number from 1 to 32697")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-withcert", "11" }, "Error, -withcert must not be greater than -sessions (11 > 10)")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-ops" }, "Error, -ops requires an argument: -ops <num>")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-persistent", "-x" }, "Error, \"-x\" not recognised: dc_test has no such option")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-clients", "4" }, "Error, -clients only applies with -bench or -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-requests", "4" }, "Error, -requests only applies with -bench")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-slack", "4" }, "Error, -slack only applies with -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-slack", "4" }, "Error, -slack only applies with -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-check", "-bench" }, "Error, -bench and -check exclude each other")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-check", "-ops", "4" }, "Error, -ops does not apply with -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-check", "-json", "-" }, "Error, -json does not apply with -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-check", "-datamin", "4" }, "Error, -check needs session data of at least 5 bytes, not 4")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-ops", "4" }, "Error, -ops does not apply with -bench")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-persistent" }, "Error, -persistent does not apply with -bench")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-mix", "get=90,put=10" }, "Error, -mix given an invalid argument: 'put' in 'get=90,put=10' is not an operation (get, add, remove, have)")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-mix", "get=0" }, "Error, -mix given an invalid argument: the weights in 'get=0' add up to 0; at least one must be positive")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-clients", "0" }, "Error, -clients given an invalid argument: '0' is not a number from 1 to 1000")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-keys", "10", "-prefill", "11" }, "Error, -prefill must not be greater than -keys (11 > 10)")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-idsize", "64", "-datasize", "32697" }, "Error, -idsize and -datamax together exceed the 32768-byte message limit (8 + 64 + 32697 bytes)")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-datasize", "1" }, "Error, -bench needs session data of at least 2 bytes, not 1")]
    public async Task Dc_test_argument_errors(string[] args, string expected) => await ExpectErrorAsync("dc_test", args, expected);

    [Theory]
    [InlineData("dc_snoop", "-h")]
    [InlineData("dc_snoop", "-help")]
    [InlineData("dc_test", "-?")]
    [InlineData("dc_test", "--help")]
    [InlineData("dc_ticketkeys", "-h")]
    public async Task Usage_on_request_goes_to_stdout_with_success(string tool, string flag)
    {
        await using Tool run = await Tool.RunAsync(RunLimit, tool, flag);
        Assert.Equal(0, run.ExitCode);
        Assert.StartsWith($"Usage: {tool} [options]", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("-<h|help|?>", run.Stdout, StringComparison.Ordinal);
        Assert.Equal(string.Empty, run.Stderr);
    }

    [Fact]
    public async Task The_usage_lists_every_option()
    {
        await using Tool snoop = await Tool.RunAsync(RunLimit, "dc_snoop", "-h");
        foreach (string option in new[] { "-listen <address>", "-server <address>", "also -connect", "-json" })
        {
            Assert.Contains(option, snoop.Stdout, StringComparison.Ordinal);
        }

        await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", "-h");
        foreach (string option in new[]
        {
            "-connect", "-progress", "-sessions", "-datamin", "-datamax", "-timeout", "-timevar", "-ops", "-persistent", "-withcert", "-seed",
            "-bench", "-clients", "-pipeline", "-duration", "-requests", "-warmup", "-mix", "-keys", "-prefill", "-datasize", "-idsize", "-json", "-serverpid", "-check", "-slack",
        })
        {
            Assert.Contains("  " + option + " ", test.Stdout, StringComparison.Ordinal);
        }
    }

    private static async Task ExpectErrorAsync(string tool, string[] args, string expected)
    {
        await using Tool run = await Tool.RunAsync(RunLimit, tool, args);
        Assert.Equal(1, run.ExitCode);
        // The error, then one line pointing at the usage rather than the usage itself.
        Assert.Equal([expected, $"Run {tool} -h for the options."], run.Stderr.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n'));
        Assert.Equal(string.Empty, run.Stdout);
    }
}
