using System.Text.RegularExpressions;

namespace Distcache.Tools.Tests;

/// <summary>
/// The command-line errors of all five tools, on the real executables: every flag that takes a value, given a bad
/// one, is refused with 1.5.1's first words, the value and the rule, then one line pointing at -h (never the usage);
/// the other ways a command line goes wrong say what is wrong the same way; -version prints one line.
/// </summary>
public sealed partial class FlagErrorTests
{
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(60);

    private static readonly string[] Tools = ["dc_server", "dc_client", "dc_test", "dc_snoop", "dc_ticketkeys"];

    // Flags whose parser takes any text, so no value of theirs can be bad.
    private static readonly string[] AnyText = ["dc_server -redisprefix"];

    /// <summary>Tool, flag, bad value, the exact first line on stderr.</summary>
    public static TheoryData<string, string, string, string> BadValues { get; } = new()
    {
        { "dc_server", "-listen", "TCP:x", "Error, -listen given an invalid argument: 'TCP:x' is not an address: unknown address type 'TCP' (expected IP, IPv4, IPv6, UNIX or FD)" },
        { "dc_server", "-user", "", "Error, -user given an invalid argument: the value is empty" },
        { "dc_server", "-sockowner", "", "Error, -sockowner given an invalid argument: the value is empty" },
        { "dc_server", "-sockgroup", "", "Error, -sockgroup given an invalid argument: the value is empty" },
        { "dc_server", "-sockperms", "999", "Error, -sockperms given an invalid argument: '999' is not octal permissions from 0 to 777, such as 660" },
        { "dc_server", "-sessions", "abc", "Error, -sessions given an invalid argument: 'abc' is not a number from 0 to 1000000000" },
        { "dc_server", "-memory", "lots", "Error, -memory given an invalid argument: 'lots' is not a size (a number of bytes, optionally followed by k, M, G or T for powers of 1024)" },
        { "dc_server", "-progress", "-1", "Error, -progress given an invalid argument: '-1' is not a number from 0 to 4294967295" },
        { "dc_server", "-pidfile", "", "Error, -pidfile given an invalid argument: the value is empty" },
        { "dc_server", "-maxconns", "2147483648", "Error, -maxconns given an invalid argument: '2147483648' is not a number from 0 to 2147483647" },
        { "dc_server", "-msgtimeout", "soon", "Error, -msgtimeout given an invalid argument: 'soon' is not a number from 0 to 86400000" },
        { "dc_server", "-idle", "86400001", "Error, -idle given an invalid argument: '86400001' is not a number from 0 to 86400000" },
        { "dc_server", "-writetimeout", "1.5", "Error, -writetimeout given an invalid argument: '1.5' is not a number from 0 to 86400000" },
        { "dc_server", "-tls-cert", "", "Error, -tls-cert given an invalid argument: the value is empty" },
        { "dc_server", "-tls-key", "", "Error, -tls-key given an invalid argument: the value is empty" },
        { "dc_server", "-tls-ca", "", "Error, -tls-ca given an invalid argument: the value is empty" },
        { "dc_server", "-partition-map", "", "Error, -partition-map given an invalid argument: the value is empty" },
        { "dc_server", "-allow-uid", "no-such-user-dcx", "Error, -allow-uid given an invalid argument: 'no-such-user-dcx' is not a user on this system" },
        { "dc_server", "-allow-gid", "1,,2", "Error, -allow-gid given an invalid argument: '1,,2' has an empty item: give group names or ids, separated by single commas" },
        { "dc_server", "-store", "mem", "Error, -store given an invalid argument: 'mem' is neither 'memory' nor 'redis:HOST:PORT[,HOST:PORT...]'" },
        { "dc_server", "-redisdb", "x", "Error, -redisdb given an invalid argument: 'x' is not a number from 0 to 1000000" },
        { "dc_server", "-redisuser", "", "Error, -redisuser given an invalid argument: the value is empty" },
        { "dc_server", "-redispassfile", "", "Error, -redispassfile given an invalid argument: the value is empty" },
        { "dc_server", "-redistlsca", "", "Error, -redistlsca given an invalid argument: the value is empty" },
        { "dc_server", "-redistimeout", "0", "Error, -redistimeout given an invalid argument: '0' is not a number from 1 to 60000" },
        { "dc_server", "-log", "", "Error, -log given an invalid argument: the value is empty" },
        { "dc_server", "-loglevel", "loud", "Error, -loglevel given an invalid argument: 'loud' is not a level: use error, warning, info or debug" },
        { "dc_server", "-logformat", "xml", "Error, -logformat given an invalid argument: 'xml' is not a format: use text or json" },
        { "dc_server", "-metrics", "UNIX:/tmp/m.sock", "Error, -metrics given an invalid argument: 'UNIX:/tmp/m.sock' is not a TCP address: -metrics serves HTTP over TCP, so it needs IP:port, IP:host:port or IPv6:[addr]:port" },
        { "dc_client", "-listen", "TCP:1234", "Error, -listen given an invalid argument: 'TCP:1234' is not an address: unknown address type 'TCP' (expected IP, IPv4, IPv6, UNIX or FD)" },
        { "dc_client", "-server", "IP:9001", "Error, -server given an invalid argument: 'IP:9001' names no host, so it can only be listened on; connecting needs one, as in IP:host:port" },
        { "dc_client", "-connect", "nowhere", "Error, -connect given an invalid argument: 'nowhere' is not an address: missing address type in 'nowhere' (expected a prefix IP, IPv4, IPv6, UNIX or FD followed by ':')" },
        { "dc_client", "-retry", "0", "Error, -retry given an invalid argument: '0' is not a number from 1 to 3600000" },
        { "dc_client", "-idle", "3600001", "Error, -idle given an invalid argument: '3600001' is not a number from 0 to 3600000" },
        { "dc_client", "-timeout", "soon", "Error, -timeout given an invalid argument: 'soon' is not a number from 0 to 3600000" },
        { "dc_client", "-user", "", "Error, -user given an invalid argument: the value is empty" },
        { "dc_client", "-sockowner", "", "Error, -sockowner given an invalid argument: the value is empty" },
        { "dc_client", "-sockgroup", "", "Error, -sockgroup given an invalid argument: the value is empty" },
        { "dc_client", "-sockperms", "8", "Error, -sockperms given an invalid argument: '8' is not octal permissions from 0 to 777, such as 660" },
        { "dc_client", "-pidfile", "", "Error, -pidfile given an invalid argument: the value is empty" },
        { "dc_client", "-tls-ca", "", "Error, -tls-ca given an invalid argument: the value is empty" },
        { "dc_client", "-tls-cert", "", "Error, -tls-cert given an invalid argument: the value is empty" },
        { "dc_client", "-tls-key", "", "Error, -tls-key given an invalid argument: the value is empty" },
        { "dc_client", "-log", "", "Error, -log given an invalid argument: the value is empty" },
        { "dc_client", "-loglevel", "verbose", "Error, -loglevel given an invalid argument: 'verbose' is not a level: use error, warning, info or debug" },
        { "dc_client", "-logformat", "yaml", "Error, -logformat given an invalid argument: 'yaml' is not a format: use text or json" },
        { "dc_client", "-metrics", "FD:3", "Error, -metrics given an invalid argument: 'FD:3' is not a TCP address: -metrics serves HTTP over TCP, so it needs IP:port, IP:host:port or IPv6:[addr]:port" },
        { "dc_client", "-tls-name", "", "Error, -tls-name given an invalid argument: the value is empty" },
        { "dc_client", "-allow-uid", "", "Error, -allow-uid given an invalid argument: '' names no user: give user names or ids, separated by commas" },
        { "dc_client", "-allow-gid", "no-such-group-dcx", "Error, -allow-gid given an invalid argument: 'no-such-group-dcx' is not a group on this system" },
        { "dc_test", "-connect", "IP:9000", "Error, -connect given an invalid argument: 'IP:9000' names no host, so it can only be listened on; connecting needs one, as in IP:host:port" },
        { "dc_test", "-progress", "x", "Error, -progress given an invalid argument: 'x' is not a number from 0 to 4294967295" },
        { "dc_test", "-stats", "UNIX:/tmp/m.sock", "Error, -stats given an invalid argument: 'UNIX:/tmp/m.sock' is not a TCP address: -stats reads a -metrics endpoint over TCP, so it needs IP:host:port or IPv6:[addr]:port" },
        { "dc_test", "-sessions", "0", "Error, -sessions given an invalid argument: '0' is not a number from 1 to 100000" },
        { "dc_test", "-datamin", "0", "Error, -datamin given an invalid argument: '0' is not a number from 1 to 32697" },
        { "dc_test", "-datamax", "40000", "Error, -datamax given an invalid argument: '40000' is not a number from 1 to 32697" },
        { "dc_test", "-timeout", "3601", "Error, -timeout given an invalid argument: '3601' is not a number from 1 to 3600" },
        { "dc_test", "-timevar", "3600", "Error, -timevar given an invalid argument: '3600' is not a number from 0 to 3599" },
        { "dc_test", "-ops", "-1", "Error, -ops given an invalid argument: '-1' is not a number from 0 to 18446744073709551615" },
        { "dc_test", "-withcert", "100001", "Error, -withcert given an invalid argument: '100001' is not a number from 0 to 100000" },
        { "dc_test", "-seed", "x", "Error, -seed given an invalid argument: 'x' is not a number from 0 to 18446744073709551615" },
        { "dc_test", "-clients", "0", "Error, -clients given an invalid argument: '0' is not a number from 1 to 1000" },
        { "dc_test", "-pipeline", "4097", "Error, -pipeline given an invalid argument: '4097' is not a number from 1 to 4096" },
        { "dc_test", "-duration", "0", "Error, -duration given an invalid argument: '0' is not a number from 1 to 86400" },
        { "dc_test", "-requests", "0", "Error, -requests given an invalid argument: '0' is not a number from 1 to 9223372036854775807" },
        { "dc_test", "-warmup", "3601", "Error, -warmup given an invalid argument: '3601' is not a number from 0 to 3600" },
        { "dc_test", "-mix", "get=0", "Error, -mix given an invalid argument: the weights in 'get=0' add up to 0; at least one must be positive" },
        { "dc_test", "-keys", "0", "Error, -keys given an invalid argument: '0' is not a number from 1 to 10000000" },
        { "dc_test", "-prefill", "x", "Error, -prefill given an invalid argument: 'x' is not a number from 0 to 10000000" },
        { "dc_test", "-datasize", "0", "Error, -datasize given an invalid argument: '0' is not a number from 1 to 32697" },
        { "dc_test", "-idsize", "65", "Error, -idsize given an invalid argument: '65' is not a number from 4 to 64" },
        { "dc_test", "-json", "", "Error, -json given an invalid argument: the value is empty" },
        { "dc_test", "-serverpid", "0", "Error, -serverpid given an invalid argument: '0' is not a number from 1 to 2147483647" },
        { "dc_test", "-rate", "0", "Error, -rate given an invalid argument: '0' is not a number from 1 to 100000000" },
        { "dc_test", "-slack", "3600001", "Error, -slack given an invalid argument: '3600001' is not a number from 0 to 3600000" },
        { "dc_snoop", "-listen", "nonsense", "Error, -listen given an invalid argument: 'nonsense' is not an address: missing address type in 'nonsense' (expected a prefix IP, IPv4, IPv6, UNIX or FD followed by ':')" },
        { "dc_snoop", "-server", "IP:9000", "Error, -server given an invalid argument: 'IP:9000' names no host, so it can only be listened on; connecting needs one, as in IP:host:port" },
        { "dc_snoop", "-connect", "IP:localhost:0", "Error, -connect given an invalid argument: 'IP:localhost:0' has port 0, which only means \"any free port\" when listening" },
        { "dc_ticketkeys", "-connect", "IP:9000", "Error, -connect given an invalid argument: 'IP:9000' names no host, so it can only be listened on; connecting needs one, as in IP:host:port" },
        { "dc_ticketkeys", "-name", "web farm", "Error, -name given an invalid argument: 'web farm' is not a farm name: 1 to 32 letters, digits, '.', '_' or '-'" },
        { "dc_ticketkeys", "-period", "9", "Error, -period given an invalid argument: '9' is not a number from 10 to 172800" },
        { "dc_ticketkeys", "-nginx", "", "Error, -nginx given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-haproxy", "", "Error, -haproxy given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-apache", "", "Error, -apache given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-reload", "", "Error, -reload given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-reload-timeout", "0", "Error, -reload-timeout given an invalid argument: '0' is not a number from 1 to 3600" },
        { "dc_ticketkeys", "-state", "", "Error, -state given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-refresh", "86401", "Error, -refresh given an invalid argument: '86401' is not a number from 1 to 86400" },
        { "dc_ticketkeys", "-retry", "0", "Error, -retry given an invalid argument: '0' is not a number from 1 to 3600" },
        { "dc_ticketkeys", "-timeout", "99", "Error, -timeout given an invalid argument: '99' is not a number from 100 to 60000" },
        { "dc_ticketkeys", "-tls-ca", "", "Error, -tls-ca given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-tls-cert", "", "Error, -tls-cert given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-tls-key", "", "Error, -tls-key given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-tls-name", "", "Error, -tls-name given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-pidfile", "", "Error, -pidfile given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-log", "", "Error, -log given an invalid argument: the value is empty" },
        { "dc_ticketkeys", "-loglevel", "loud", "Error, -loglevel given an invalid argument: 'loud' is not a level: use error, warning, info or debug" },
        { "dc_ticketkeys", "-logformat", "xml", "Error, -logformat given an invalid argument: 'xml' is not a format: use text or json" }
    };

    [GeneratedRegex(@"^  -(?<name>\S+) <[^>]+>", RegexOptions.Multiline)]
    private static partial Regex ValueTakingEntry();

    [Theory]
    [MemberData(nameof(BadValues))]
    public async Task A_bad_value_is_refused_naming_flag_value_and_rule_then_pointing_at_the_usage(string tool, string flag, string value, string expected)
    {
        await ExpectRefusalAsync(tool, [flag, value], expected);
    }

    [Theory]
    [MemberData(nameof(ToolNames))]
    public async Task Every_flag_that_takes_a_value_has_a_bad_value_in_the_table(string tool)
    {
        await using Tool usage = await Tool.RunAsync(RunLimit, tool, "-h");
        var flags = ValueTakingEntry().Matches(usage.Stdout).Select(m => "-" + m.Groups["name"].Value).ToList();
        Assert.NotEmpty(flags);
        var covered = BadValues.Select(row => ((ITheoryDataRow)row).GetData()).Select(data => ((string)data[0]!, (string)data[1]!)).ToHashSet();
        var missing = flags.Where(flag => !covered.Contains((tool, flag)) && !AnyText.Contains($"{tool} {flag}")).ToList();
        Assert.True(missing.Count == 0, $"{tool}: no bad-value case for {string.Join(", ", missing)}");
    }

    public static TheoryData<string> ToolNames { get; } = new(Tools);

    /// <summary>Tool, arguments, the exact first line on stderr: the other ways a command line goes wrong.</summary>
    public static TheoryData<string, string[], string> OtherMistakes { get; } = new()
    {
        { "dc_server", ["-sessions"], "Error, -sessions requires an argument: -sessions <num>" },
        { "dc_server", ["-listen", "IP:127.0.0.1:0", "-sesions", "5"], "Error, \"-sesions\" not recognised: did you mean -sessions?" },
        { "dc_server", ["-bogus"], "Error, \"-bogus\" not recognised: dc_server has no such option" },
        { "dc_server", ["-daemon", "yes"], "Error, \"yes\" not recognised: -daemon takes no value" },
        { "dc_server", ["--killable=1"], "Error, --killable given an invalid argument: --killable takes no value, and '1' was given" },
        { "dc_server", ["-listen=IP:127.0.0.1:0"], "Error, \"-listen=IP:127.0.0.1:0\" not recognised: write -listen IP:127.0.0.1:0 or --listen=IP:127.0.0.1:0" },
        { "dc_server", ["-listen", "-daemon"], "Error, -listen given an invalid argument: '-daemon' is not an address: missing address type in '-daemon' (expected a prefix IP, IPv4, IPv6, UNIX or FD followed by ':') (if -daemon was meant as the next option, -listen is missing its value)" },
        { "dc_server", [], "Error, must provide -listen" },
        { "dc_server", ["-listen", "IP:127.0.0.1:0", "-partition"], "Error, -partition needs -tls-cert and -tls-ca: partitions are given to verified client certificates" },
        { "dc_server", ["-listen", "IP:127.0.0.1:0", "-redistls"], "Error, -redistls applies only to -store redis:HOST:PORT" },
        { "dc_server", ["-listen", "IP:127.0.0.1:0", "-store", "redis:127.0.0.1:1", "-sessions", "5"], "Error, -sessions does not apply to -store redis:...: Redis's maxmemory bounds the sessions there" },
        { "dc_client", ["-retry"], "Error, -retry requires an argument: -retry <msecs>" },
        { "dc_client", ["-server", "IP:127.0.0.1:1", "-retyr", "5"], "Error, \"-retyr\" not recognised: did you mean -retry?" },
        { "dc_client", [], "Error, no server specified!" },
        { "dc_client", ["-server", "IP:127.0.0.1:1", "-connect", "IP:127.0.0.1:1"], "Error, -connect given an invalid argument: IP:127.0.0.1:1 is already a server" },
        { "dc_client", ["-server", "IP:127.0.0.1:1", "-tls-key", "/x"], "Error, -tls-key needs -tls-ca, the CA that issued the server's certificate" },
        { "dc_test", ["-connect"], "Error, -connect requires an argument: -connect <address>" },
        { "dc_test", ["stray"], "Error, \"stray\" not recognised: every word must be an option (-name) or the value that follows one" },
        { "dc_test", [], "Error, must provide -connect" },
        { "dc_test", ["-connect", "IP:localhost:1", "-timeout", "10", "-timevar", "10"], "Error, -timevar must be less than -timeout (10 >= 10)" },
        { "dc_test", ["-connect", "IP:localhost:1", "-bench", "-check"], "Error, -bench and -check exclude each other" },
        { "dc_snoop", ["-server"], "Error, -server requires an argument: -server <address>" },
        { "dc_snoop", ["-listen", "IP:127.0.0.1:0", "-jsno"], "Error, \"-jsno\" not recognised: did you mean -json?" },
        { "dc_snoop", ["-listen", "IP:127.0.0.1:0"], "Error, must provide -server" },
        { "dc_ticketkeys", ["-period"], "Error, -period requires an argument: -period <secs>" },
        { "dc_ticketkeys", ["-connect", "UNIX:/run/distcache/dc_client.sock", "-ngnix", "/etc/nginx/ticketkeys"], "Error, \"-ngnix\" not recognised: did you mean -nginx?" },
        { "dc_ticketkeys", ["-once", "yes"], "Error, \"yes\" not recognised: -once takes no value" },
        { "dc_ticketkeys", [], "Error, must provide -connect, the cache" },
    };

    [Theory]
    [MemberData(nameof(OtherMistakes))]
    public async Task Other_mistakes_say_what_is_wrong_then_point_at_the_usage(string tool, string[] args, string expected)
    {
        await ExpectRefusalAsync(tool, args, expected);
    }

    [Theory]
    [MemberData(nameof(ToolNames))]
    public async Task Version_prints_one_line_and_succeeds(string tool)
    {
        foreach (string flag in new[] { "-version", "--version" })
        {
            await using Tool run = await Tool.RunAsync(RunLimit, tool, flag);
            Assert.Equal(0, run.ExitCode);
            Assert.Matches($@"^{tool} \d+\.\d+\.\d+\S* \(commit ([0-9a-f]{{7}}|unknown), \.NET \d+\.\d+\.\S+, [a-z]+-[a-z0-9]+\)\n$", run.Stdout.ReplaceLineEndings("\n"));
            Assert.Equal(string.Empty, run.Stderr);
        }
    }

    [Theory]
    [MemberData(nameof(ToolNames))]
    public async Task The_usage_lists_version(string tool)
    {
        await using Tool run = await Tool.RunAsync(RunLimit, tool, "-h");
        Assert.Contains("  -version ", run.Stdout, StringComparison.Ordinal);
    }

    private static async Task ExpectRefusalAsync(string tool, string[] args, string expected)
    {
        await using Tool run = await Tool.RunAsync(RunLimit, tool, args);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal([expected, $"Run {tool} -h for the options."], run.Stderr.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n'));
        Assert.Equal(string.Empty, run.Stdout);
    }
}
