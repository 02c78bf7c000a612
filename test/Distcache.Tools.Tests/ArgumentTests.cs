namespace Distcache.Tools.Tests;

/// <summary>The 1.5.1 wordings of argument errors, usage on request, and the checks between options.</summary>
public sealed class ArgumentTests
{
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(new[] { "-listen" }, "Error, -listen requires an argument")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:1", "-server" }, "Error, -server requires an argument")]
    [InlineData(new[] { "-listen", "nonsense" }, "Error, -listen given an invalid argument")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:1", "-server", "IP:9000" }, "Error, -server given an invalid argument")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:1", "-connect", "FOO:bar" }, "Error, -connect given an invalid argument")]
    [InlineData(new[] { "-bogus" }, "Error, \"-bogus\" not recognised")]
    [InlineData(new[] { "stray" }, "Error, \"stray\" not recognised")]
    [InlineData(new string[0], "Error, must provide -listen")]
    [InlineData(new[] { "-listen", "IP:127.0.0.1:1" }, "Error, must provide -server")]
    public async Task Dc_snoop_argument_errors(string[] args, string expected) => await ExpectErrorAsync("dc_snoop", args, expected);

    [Theory]
    [InlineData(new string[0], "Error, must provide -connect")]
    [InlineData(new[] { "-connect" }, "Error, -connect requires an argument")]
    [InlineData(new[] { "-connect", "IP:9000" }, "Error, -connect given an invalid argument")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-sessions", "0" }, "Error, -sessions given an invalid argument")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-sessions", "-1" }, "Error, -sessions given an invalid argument")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-timeout", "3601" }, "Error, -timeout given an invalid argument")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-timeout", "10", "-timevar", "10" }, "Error, -timevar must be less than -timeout")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-datamin", "200", "-datamax", "100" }, "Error, -datamin must not be greater than -datamax")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-datamax", "40000" }, "Error, -datamax given an invalid argument")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-withcert", "11" }, "Error, -withcert must not be greater than -sessions")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-ops" }, "Error, -ops requires an argument")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-persistent", "-x" }, "Error, \"-x\" not recognised")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-clients", "4" }, "Error, -clients only applies with -bench or -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-requests", "4" }, "Error, -requests only applies with -bench")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-slack", "4" }, "Error, -slack only applies with -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-slack", "4" }, "Error, -slack only applies with -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-check", "-bench" }, "Error, -bench and -check exclude each other")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-check", "-ops", "4" }, "Error, -ops does not apply with -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-check", "-json", "-" }, "Error, -json does not apply with -check")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-check", "-datamin", "4" }, "Error, -check needs session data of at least 5 bytes")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-ops", "4" }, "Error, -ops does not apply with -bench")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-persistent" }, "Error, -persistent does not apply with -bench")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-mix", "get=90,put=10" }, "Error, -mix given an invalid argument")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-mix", "get=0" }, "Error, -mix given an invalid argument")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-clients", "0" }, "Error, -clients given an invalid argument")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-keys", "10", "-prefill", "11" }, "Error, -prefill must not be greater than -keys")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-idsize", "64", "-datasize", "32697" }, "Error, -idsize and -datamax together exceed the 32768-byte message limit")]
    [InlineData(new[] { "-connect", "IP:localhost:9000", "-bench", "-datasize", "1" }, "Error, -bench needs session data of at least 2 bytes")]
    public async Task Dc_test_argument_errors(string[] args, string expected) => await ExpectErrorAsync("dc_test", args, expected);

    [Theory]
    [InlineData("dc_snoop", "-h")]
    [InlineData("dc_snoop", "-help")]
    [InlineData("dc_test", "-?")]
    [InlineData("dc_test", "--help")]
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
        string firstError = run.Stderr.Split('\n').First(l => l.StartsWith("Error, ", StringComparison.Ordinal)).TrimEnd('\r');
        Assert.Equal(expected, firstError);
        Assert.Equal(string.Empty, run.Stdout);
    }
}
