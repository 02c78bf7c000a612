namespace Distcache.Hosting.Tests;

/// <summary>The 1.5.1 command-line conventions: spellings, aliases, repetition, help, version and the exact error wording.</summary>
public sealed class CommandLineTests
{
    private static readonly FlagOption DaemonFlag = new("daemon", "detach and run in the background");
    private static readonly ValueOption<string> Listen = new("listen", "addr", "listen on 'addr'", ValueParsers.Text) { DefaultValue = "UNIX:/tmp/scache" };
    private static readonly ValueOption<string> Connect = new("connect", "addr", "use the cache server at 'addr'", ValueParsers.NonEmptyText) { Aliases = ["server"], Repeatable = true };
    private static readonly ValueOption<uint> Sessions = new("sessions", "num", "hold at most 'num' sessions", ValueParsers.UInt32InRange(64, 1 << 20)) { DefaultValue = 512 };
    private static readonly ValueOption<ulong> Memory = new("memory", "size", "use at most 'size' bytes", ValueParsers.SizeInRange(1 << 20, ulong.MaxValue)) { DefaultText = "unlimited" };
    private static readonly ValueOption<UnixFileMode> SockPerms = new("sockperms", "oct", "permissions of the socket file", ValueParsers.OctalPermissions);

    private static readonly CommandLineSpec Spec = new("dc_test", [DaemonFlag, Listen, Connect, Sessions, Memory, SockPerms]) { Epilogue = "Eg. dc_test -connect UNIX:/tmp/scache" };

    [Fact]
    public void Parses_single_dash_words_and_their_values()
    {
        var result = Spec.Parse(["-listen", "UNIX:/tmp/x", "-sessions", "1000", "-daemon", "-memory", "512M", "-sockperms", "0660"]);

        Assert.Equal(ParseStatus.Success, result.Status);
        Assert.Null(result.ErrorMessage);
        Assert.True(result.IsSet(DaemonFlag));
        Assert.Equal("UNIX:/tmp/x", result.GetValue(Listen));
        Assert.Equal(1000u, result.GetValue(Sessions));
        Assert.Equal(512UL << 20, result.GetValue(Memory));
        Assert.Equal((UnixFileMode)0x1B0, result.GetValue(SockPerms));
    }

    [Theory]
    [InlineData("--listen", "UNIX:/a")]
    [InlineData("--listen=UNIX:/a")]
    [InlineData("-listen", "UNIX:/a")]
    public void Accepts_the_GNU_spellings_of_every_option(params string[] args)
    {
        var result = Spec.Parse([.. args, "--daemon", "--sessions=100", "--server", "A"]);

        Assert.Equal(ParseStatus.Success, result.Status);
        Assert.Equal("UNIX:/a", result.GetValue(Listen));
        Assert.True(result.IsSet(DaemonFlag));
        Assert.Equal(100u, result.GetValue(Sessions));
        Assert.Equal(["A"], result.GetValues(Connect));
    }

    [Fact]
    public void An_inline_value_may_be_empty_or_hold_equals_signs()
    {
        Assert.Equal(string.Empty, Spec.Parse(["--listen="]).GetValue(Listen));
        Assert.Equal("a=b", Spec.Parse(["--listen=a=b"]).GetValue(Listen));
    }

    [Fact]
    public void Defaults_apply_when_an_option_is_absent()
    {
        var result = Spec.Parse([]);

        Assert.Equal(ParseStatus.Success, result.Status);
        Assert.False(result.IsSet(DaemonFlag));
        Assert.False(result.IsSet(Sessions));
        Assert.Equal(512u, result.GetValue(Sessions));
        Assert.False(result.TryGetValue(Sessions, out _));
        Assert.Equal("UNIX:/tmp/scache", result.GetValue(Listen));
        Assert.Null(result.GetValue(Connect));
        Assert.Empty(result.GetValues(Connect));
        Assert.Equal(0UL, result.GetValue(Memory));
    }

    [Fact]
    public void Aliases_and_repeats_accumulate_in_command_line_order()
    {
        var result = Spec.Parse(["-server", "A", "-connect", "B", "--server=C"]);

        Assert.Equal(["A", "B", "C"], result.GetValues(Connect));
        Assert.Equal("C", result.GetValue(Connect));
    }

    [Theory]
    [InlineData("200", "-sessions", "100", "-sessions", "200")]
    [InlineData("300", "-sessions", "100", "--sessions=300")]
    [InlineData("100", "-sessions", "100", "-daemon", "-daemon")]
    public void A_single_valued_option_given_twice_counts_with_its_last_value_as_in_1_5_1(string expected, params string[] args)
    {
        // Scripts that wrap the tools put their defaults first and let the caller's flags override them.
        var result = Spec.Parse(args);

        Assert.Equal(ParseStatus.Success, result.Status);
        Assert.Equal(uint.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), result.GetValue(Sessions));
    }

    [Fact]
    public void The_word_after_an_option_is_its_value_even_when_it_starts_with_a_dash()
    {
        var result = Spec.Parse(["-listen", "-daemon"]);

        Assert.Equal("-daemon", result.GetValue(Listen));
        Assert.False(result.IsSet(DaemonFlag));
    }

    [Theory]
    [InlineData("Error, -listen requires an argument: -listen <addr>", "-listen")]
    [InlineData("Error, --listen requires an argument: --listen <addr>", "--listen")]
    [InlineData("Error, -server requires an argument: -server <addr>", "-daemon", "-server")]
    [InlineData("Error, -sessions given an invalid argument: 'abc' is not a number from 64 to 1048576", "-sessions", "abc")]
    [InlineData("Error, -sessions given an invalid argument: '63' is not a number from 64 to 1048576", "-sessions", "63")]
    [InlineData("Error, -sessions given an invalid argument: '1048577' is not a number from 64 to 1048576", "-sessions", "1048577")]
    [InlineData("Error, -sessions given an invalid argument: '-5' is not a number from 64 to 1048576", "-sessions", "-5")]
    [InlineData("Error, -sessions given an invalid argument: '' is not a number from 64 to 1048576", "-sessions", "")]
    [InlineData("Error, --sessions given an invalid argument: '99999999999' is not a number from 64 to 1048576", "--sessions=99999999999")]
    [InlineData("Error, -sessions given an invalid argument: '-daemon' is not a number from 64 to 1048576 (if -daemon was meant as the next option, -sessions is missing its value)", "-sessions", "-daemon")]
    [InlineData("Error, -memory given an invalid argument: '1.5G' is not a size (a number of bytes, optionally followed by k, M, G or T for powers of 1024)", "-memory", "1.5G")]
    [InlineData("Error, -memory given an invalid argument: '512k' is not a size of at least 1M", "-memory", "512k")]
    [InlineData("Error, -sockperms given an invalid argument: '999' is not octal permissions from 0 to 777, such as 660", "-sockperms", "999")]
    [InlineData("Error, -server given an invalid argument: the value is empty", "-server", "")]
    [InlineData("Error, --daemon given an invalid argument: --daemon takes no value, and 'yes' was given", "--daemon=yes")]
    [InlineData("Error, --help given an invalid argument: --help takes no value, and '1' was given", "--help=1")]
    [InlineData("Error, --version given an invalid argument: --version takes no value, and 'x' was given", "--version=x")]
    [InlineData("Error, \"-bogus\" not recognised: dc_test has no such option", "-bogus")]
    [InlineData("Error, \"--bogus=1\" not recognised: dc_test has no such option", "--bogus=1")]
    [InlineData("Error, \"-listen=x\" not recognised: write -listen x or --listen=x", "-listen=x")]
    [InlineData("Error, \"-daemon=1\" not recognised: -daemon takes no value", "-daemon=1")]
    [InlineData("Error, \"foo\" not recognised: every word must be an option (-name) or the value that follows one", "foo")]
    [InlineData("Error, \"yes\" not recognised: -daemon takes no value", "-daemon", "yes")]
    [InlineData("Error, \"-\" not recognised: every word must be an option (-name) or the value that follows one", "-")]
    [InlineData("Error, \"--\" not recognised: every word must be an option (-name) or the value that follows one", "--")]
    [InlineData("Error, \"---daemon\" not recognised: did you mean -daemon?", "---daemon")]
    [InlineData("Error, \"-Daemon\" not recognised: did you mean -daemon?", "-Daemon")]
    [InlineData("Error, \"-sesions\" not recognised: did you mean -sessions?", "-sesions")]
    [InlineData("Error, \"--conect\" not recognised: did you mean -connect?", "--conect")]
    [InlineData("Error, \"\" not recognised: every word must be an option (-name) or the value that follows one", "")]
    [InlineData("Error, \"-bogus\" not recognised: dc_test has no such option", "-bogus", "-h")]
    [InlineData("Error, \"-bogus\" not recognised: dc_test has no such option", "-listen", "x", "-bogus", "-sessions")]
    public void Errors_start_as_in_1_5_1_and_say_why(string expected, params string[] args)
    {
        var result = Spec.Parse(args);

        Assert.Equal(ParseStatus.Error, result.Status);
        Assert.Equal(expected, result.ErrorMessage);
    }

    [Theory]
    [InlineData("-h")]
    [InlineData("-help")]
    [InlineData("-?")]
    [InlineData("--help")]
    [InlineData("--h")]
    [InlineData("-daemon", "-h", "-bogus")]
    public void Help_words_ask_for_the_usage(params string[] args)
    {
        Assert.Equal(ParseStatus.HelpRequested, Spec.Parse(args).Status);
    }

    [Theory]
    [InlineData("-version")]
    [InlineData("--version")]
    [InlineData("-daemon", "-version", "-bogus")]
    public void The_version_word_asks_for_the_version_line(params string[] args)
    {
        Assert.Equal(ParseStatus.VersionRequested, Spec.Parse(args).Status);
    }

    [Fact]
    public void TryParse_prints_the_version_line_to_stdout_and_exits_0()
    {
        var output = new StringWriter();
        var error = new StringWriter();

        var proceed = Spec.TryParse(["-version"], out _, out var exitCode, output, error);

        Assert.False(proceed);
        Assert.Equal(0, exitCode);
        Assert.Matches(@"^dc_test \S+ \(commit \S+, \.NET \d+\.\d+\.\S+, [a-z]+-[a-z0-9]+\)\n$", output.ToString().ReplaceLineEndings("\n"));
        Assert.Empty(error.ToString());
    }

    [Fact]
    public void TryParse_prints_help_to_stdout_and_exits_0()
    {
        var output = new StringWriter();
        var error = new StringWriter();

        var proceed = Spec.TryParse(["-help"], out _, out var exitCode, output, error);

        Assert.False(proceed);
        Assert.Equal(0, exitCode);
        Assert.StartsWith("Usage: dc_test [options]", output.ToString(), StringComparison.Ordinal);
        Assert.Empty(error.ToString());
    }

    [Fact]
    public void TryParse_prints_the_error_then_one_line_pointing_at_the_usage_and_exits_1()
    {
        var output = new StringWriter();
        var error = new StringWriter();

        var proceed = Spec.TryParse(["-sessions"], out var result, out var exitCode, output, error);

        Assert.False(proceed);
        Assert.Equal(1, exitCode);
        Assert.Equal(ParseStatus.Error, result.Status);
        Assert.Equal("Error, -sessions requires an argument: -sessions <num>\nRun dc_test -h for the options.\n", error.ToString().ReplaceLineEndings("\n"));
        Assert.Empty(output.ToString());
    }

    [Fact]
    public void ReportError_words_a_later_check_the_same_way()
    {
        var error = new StringWriter();

        Assert.Equal(1, Spec.ReportError("-a and -b exclude each other", error));
        Assert.Equal("Error, -a and -b exclude each other\nRun dc_test -h for the options.\n", error.ToString().ReplaceLineEndings("\n"));
        Assert.Equal("Run dc_test -h for the options.", Spec.HelpPointer);
    }

    [Fact]
    public void TryParse_lets_a_good_command_line_through_silently()
    {
        var output = new StringWriter();
        var error = new StringWriter();

        Assert.True(Spec.TryParse(["-daemon"], out var result, out var exitCode, output, error));
        Assert.Equal(0, exitCode);
        Assert.True(result.IsSet(DaemonFlag));
        Assert.Empty(output.ToString() + error.ToString());
    }

    [Fact]
    public void The_usage_lists_every_option_with_value_aliases_and_default()
    {
        var writer = new StringWriter();

        Spec.WriteUsage(writer);

        var usage = writer.ToString();
        Assert.Equal(
            """
            Usage: dc_test [options]     where 'options' are from;
              -daemon             (detach and run in the background)
              -listen <addr>      (listen on 'addr'; default: UNIX:/tmp/scache)
              -connect <addr>     (use the cache server at 'addr'; also -server; may be repeated)
              -sessions <num>     (hold at most 'num' sessions; default: 512)
              -memory <size>      (use at most 'size' bytes; default: unlimited)
              -sockperms <oct>    (permissions of the socket file)
              -<h|help|?>         (display this usage message)
              -version            (print the version, commit and runtime, and exit)
            Every option may also be written --option, and --option=value.

            Eg. dc_test -connect UNIX:/tmp/scache

            """.ReplaceLineEndings("\n"),
            usage);
    }

    [Fact]
    public void Bad_specs_are_rejected_when_built()
    {
        Assert.Throws<ArgumentException>(() => new FlagOption("-daemon", "x"));
        Assert.Throws<ArgumentException>(() => new FlagOption("a=b", "x"));
        Assert.Throws<ArgumentException>(() => new FlagOption("two words", "x"));
        Assert.Throws<ArgumentException>(() => new FlagOption("", "x"));
        Assert.Throws<ArgumentException>(() => new FlagOption("help", "x"));
        Assert.Throws<ArgumentException>(() => new FlagOption("version", "x"));
        Assert.Throws<ArgumentException>(() => new FlagOption("daemon", "x") { Aliases = ["?"] });
        Assert.Throws<ArgumentException>(() => new ValueOption<string>("listen", "", "x", ValueParsers.Text));
        Assert.Throws<ArgumentException>(() => new CommandLineSpec("p", [new FlagOption("a", "x"), new FlagOption("b", "y") { Aliases = ["a"] }]));
        Assert.Throws<ArgumentException>(() => new CommandLineSpec("p", [DaemonFlag, DaemonFlag]));
    }

    [Fact]
    public void Querying_a_failed_parse_or_a_foreign_option_is_a_programming_error()
    {
        var failed = Spec.Parse(["-bogus"]);
        var help = Spec.Parse(["-h"]);
        var foreign = new FlagOption("daemon", "another spec's flag");

        Assert.Throws<InvalidOperationException>(() => failed.IsSet(DaemonFlag));
        Assert.Throws<InvalidOperationException>(() => help.GetValue(Sessions));
        Assert.Throws<ArgumentException>(() => Spec.Parse([]).IsSet(foreign));
    }

    [Fact]
    public void Each_option_describes_itself_for_the_usage()
    {
        Assert.False(DaemonFlag.TakesValue);
        Assert.Null(DaemonFlag.ValueName);
        Assert.True(Connect.TakesValue);
        Assert.Equal("addr", Connect.ValueName);
        Assert.Equal(["server"], Connect.Aliases);
        Assert.Equal("512", Sessions.DefaultDisplay);
        Assert.Equal("unlimited", Memory.DefaultDisplay);
        Assert.Null(SockPerms.DefaultDisplay);
    }
}
