using Distcache.Apps.Test.Load;
using Distcache.Hosting;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Apps.Test;

/// <summary>
/// dc_test: 1.5.1's correctness test of a session cache (server or proxy), and with <c>-bench</c> a pipelined load
/// generator that measures throughput and latency.
/// </summary>
internal static class Program
{
    // An ADD carries 8 bytes of prefix, the id (up to 63 bytes here) and the data in at most 32768 bytes.
    private const uint MaxData = ProtocolConstants.MaxMessagePayload - ProtocolConstants.AddRequestPrefixSize - 63;

    private static readonly ValueOption<Address> ConnectOption = new("connect", "address", "the server or proxy to test (IP:host:port, UNIX:/path)", AddressParsers.Connect);
    private static readonly ValueOption<uint> ProgressOption = new("progress", "num", "print a line every num operations", ValueParsers.UInt32InRange(0, uint.MaxValue)) { DefaultValue = 0 };
    private static readonly ValueOption<uint> SessionsOption = new("sessions", "num", "how many random test sessions to use (1..100000); the server must hold them all", ValueParsers.UInt32InRange(1, 100_000)) { DefaultValue = 10 };
    private static readonly ValueOption<uint> DataMinOption = new("datamin", "num", "shortest session data in bytes", ValueParsers.UInt32InRange(1, MaxData)) { DefaultValue = 50 };
    private static readonly ValueOption<uint> DataMaxOption = new("datamax", "num", $"longest session data in bytes (up to {MaxData})", ValueParsers.UInt32InRange(1, MaxData)) { DefaultValue = 2100 };
    private static readonly ValueOption<uint> TimeoutOption = new("timeout", "secs", "session timeout, 1..3600 (-bench: 3600 unless given)", ValueParsers.UInt32InRange(1, 3600)) { DefaultValue = 60 };
    private static readonly ValueOption<uint> TimevarOption = new("timevar", "secs", "vary each timeout by up to this much (less than -timeout)", ValueParsers.UInt32InRange(0, 3599)) { DefaultValue = 5 };
    private static readonly ValueOption<ulong> OpsOption = new("ops", "num", "how many random operations to run", ValueParsers.UInt64InRange(0, ulong.MaxValue)) { DefaultText = "10 x sessions^2" };
    private static readonly FlagOption PersistentFlag = new("persistent", "one connection for all operations (otherwise one per operation)");
    private static readonly ValueOption<uint> WithCertOption = new("withcert", "num", "make num sessions 2-4 KB larger, as if they carried a peer certificate", ValueParsers.UInt32InRange(0, 100_000)) { DefaultValue = 0 };
    private static readonly ValueOption<ulong> SeedOption = new("seed", "num", "seed of the random choices, to repeat a run", ValueParsers.UInt64InRange(0, ulong.MaxValue)) { DefaultText = "random" };

    private static readonly FlagOption BenchFlag = new("bench", "measure throughput and latency instead of testing correctness");
    private static readonly ValueOption<uint> ClientsOption = new("clients", "num", "-bench, -check: connections", ValueParsers.UInt32InRange(1, 1000)) { DefaultValue = 4 };
    private static readonly ValueOption<uint> PipelineOption = new("pipeline", "num", "-bench: requests in flight per connection; -check: workers per connection, each on its own keys", ValueParsers.UInt32InRange(1, 4096)) { DefaultValue = 8 };
    private static readonly ValueOption<uint> DurationOption = new("duration", "secs", "-bench: how long to measure; -check: how long to run", ValueParsers.UInt32InRange(1, 86_400)) { DefaultValue = 10 };
    private static readonly ValueOption<ulong> RequestsOption = new("requests", "num", "-bench: measure this many requests instead of a duration", ValueParsers.UInt64InRange(1, long.MaxValue));
    private static readonly ValueOption<uint> WarmupOption = new("warmup", "secs", "-bench: run this long before measuring", ValueParsers.UInt32InRange(0, 3600)) { DefaultValue = 1 };
    private static readonly ValueOption<OperationMix> MixOption = new("mix", "list", "-bench, -check: operation weights, e.g. get=90,add=10 (get, add, remove, have)", OperationMix.TryParse) { DefaultText = "get=90,add=10; -check: get=40,add=30,remove=15,have=15" };
    private static readonly ValueOption<uint> KeysOption = new("keys", "num", "-bench, -check: size of the key space; the server's -sessions should be at least this", ValueParsers.UInt32InRange(1, 10_000_000)) { DefaultValue = 500 };
    private static readonly ValueOption<uint> PrefillOption = new("prefill", "num", "-bench: add this many keys before measuring, so GETs hit", ValueParsers.UInt32InRange(0, 10_000_000)) { DefaultText = "all keys" };
    private static readonly ValueOption<uint> DataSizeOption = new("datasize", "num", "-bench, -check: session data size in bytes (sets -datamin and -datamax)", ValueParsers.UInt32InRange(1, MaxData));
    private static readonly ValueOption<uint> IdSizeOption = new("idsize", "num", "-bench, -check: session id size in bytes (4..64)", ValueParsers.UInt32InRange(4, 64)) { DefaultValue = 32 };
    private static readonly ValueOption<string> JsonOption = new("json", "file", "-bench, -stats: also write the result as JSON to file, or to stdout with '-'", ValueParsers.NonEmptyText);
    private static readonly ValueOption<uint> RateOption = new("rate", "num", "-bench: send this many requests per second in all, paced evenly over the connections (open loop), instead of as fast as answers come", ValueParsers.UInt32InRange(1, 100_000_000));
    private static readonly FlagOption ShortFlag = new("short", "-bench: a new connection for every request (with -pipeline 1), as applications of dc_client make them; latency includes the connect");
    private static readonly ValueOption<uint> ServerPidOption = new("serverpid", "pid", "-bench: also measure the CPU time of this (server) process", ValueParsers.UInt32InRange(1, int.MaxValue));

    private static readonly FlagOption CheckFlag = new("check", "run for -duration checking that the cache never lies (wrong bytes, a hit after REMOVE or after expiry)");
    private static readonly ValueOption<uint> SlackOption = new("slack", "msecs", "-check: clock slack allowed around a session's expiry", ValueParsers.UInt32InRange(0, 3_600_000)) { DefaultValue = 1000 };

    private static readonly ValueOption<Address> StatsOption = new("stats", "address", "print the figures of a running dc_server or dc_client from its -metrics endpoint (IP:host:port); with -json, as JSON", AddressParsers.MetricsConnect);

    private static readonly CommandLineOption[] CorrectnessOnly = [ProgressOption, SessionsOption, TimevarOption, OpsOption, PersistentFlag, WithCertOption];
    private static readonly CommandLineOption[] BenchOnly = [ClientsOption, PipelineOption, DurationOption, RequestsOption, WarmupOption, MixOption, KeysOption, PrefillOption, DataSizeOption, IdSizeOption, JsonOption, ServerPidOption, RateOption, ShortFlag];

    // -check shares the load options that shape its traffic, and prints progress like the correctness test.
    private static readonly CommandLineOption[] CheckAlso = [ClientsOption, PipelineOption, DurationOption, MixOption, KeysOption, DataSizeOption, IdSizeOption, ProgressOption];
    private static readonly CommandLineOption[] CheckOnly = [SlackOption];

    private static readonly CommandLineSpec Spec = new("dc_test",
    [
        ConnectOption, ProgressOption, SessionsOption, DataMinOption, DataMaxOption, TimeoutOption, TimevarOption, OpsOption, PersistentFlag,
        WithCertOption, SeedOption, BenchFlag, ClientsOption, PipelineOption, DurationOption, RequestsOption, WarmupOption, MixOption, KeysOption,
        PrefillOption, DataSizeOption, IdSizeOption, JsonOption, ServerPidOption, RateOption, ShortFlag, CheckFlag, SlackOption, StatsOption,
    ])
    {
        Epilogue = """
            '-connect' is required. Without -bench, runs random ADD/GET/REMOVE/HAVE operations on -sessions random
            sessions and checks every answer; it stops at the first wrong one (exit 1) or prints
            "Info, all tests complete" (exit 0).
            With -bench, keeps -clients x -pipeline requests in flight for -duration seconds and reports ops/s,
            latency percentiles, hits and misses; exit 1 if any answer was an error.
            With -check, runs -clients x -pipeline workers for -duration seconds and fails (exit 1) at the first
            answer that is a lie: bytes that are not the session's, a hit after an acknowledged REMOVE, or a hit
            after expiry beyond -slack. Misses and DISCONNECTED answers are allowed.
            With -stats ADDRESS, prints the figures of a dc_server or dc_client started with -metrics ADDRESS
            (-json FILE also writes them as JSON, -json - writes only the JSON, to stdout).
            """,
    };

    private static async Task<int> Main(string[] args)
    {
        if (!Spec.TryParse(args, out ParseResult options, out int exitCode))
        {
            return exitCode;
        }

        if (options.TryGetValue(StatsOption, out Address? statsEndpoint))
        {
            // It reads figures and drives no load: every other option would be ignored, so each is refused.
            if (Spec.Options.FirstOrDefault(o => o != StatsOption && o != JsonOption && options.IsSet(o)) is { } other)
            {
                Console.Error.WriteLine($"Error, -{other.Name} does not apply with -stats");
                return 1;
            }

            using var cancel = new CancellationTokenSource();
            return await Stats.RunAsync(statsEndpoint, options.TryGetValue(JsonOption, out string? statsJson) ? statsJson : null, cancel.Token).ConfigureAwait(false);
        }

        if (!options.TryGetValue(ConnectOption, out Address? target))
        {
            return Spec.ReportError("must provide -connect");
        }

        bool bench = options.IsSet(BenchFlag);
        bool check = options.IsSet(CheckFlag);
        if (bench && check)
        {
            return Spec.ReportError("-bench and -check exclude each other");
        }

        foreach (CommandLineOption misplaced in check ? CorrectnessOnly.Concat(BenchOnly).Except(CheckAlso) : bench ? CorrectnessOnly.Concat(CheckOnly) : BenchOnly.Concat(CheckOnly))
        {
            if (options.IsSet(misplaced))
            {
                string message = check ? "does not apply with -check"
                    : bench ? (CheckOnly.Contains(misplaced) ? "only applies with -check" : "does not apply with -bench")
                    : CheckOnly.Contains(misplaced) ? "only applies with -check"
                    : CheckAlso.Contains(misplaced) ? "only applies with -bench or -check"
                    : "only applies with -bench";
                return Spec.ReportError($"-{misplaced.Name} {message}");
            }
        }

        int dataMin = (int)options.GetValue(DataMinOption);
        int dataMax = (int)options.GetValue(DataMaxOption);
        if (options.TryGetValue(DataSizeOption, out uint dataSize))
        {
            dataMin = dataMax = (int)dataSize;
        }

        if (dataMin > dataMax)
        {
            return Spec.ReportError($"-datamin must not be greater than -datamax ({dataMin} > {dataMax})");
        }

        ulong seed = options.TryGetValue(SeedOption, out ulong given) ? given : (ulong)Random.Shared.NextInt64(long.MaxValue);
        using var shutdown = new CancellationTokenSource();
        using SignalHandlers signals = SignalHandlers.Register(shutdown, killable: false);
        if (check)
        {
            return await RunCheckAsync(options, target, dataMin, dataMax, seed, shutdown.Token).ConfigureAwait(false);
        }

        return bench
            ? await RunBenchAsync(options, target, dataMin, dataMax, seed, shutdown.Token).ConfigureAwait(false)
            : RunCorrectness(options, target, dataMin, dataMax, seed, shutdown.Token);
    }

    private static async Task<int> RunCheckAsync(ParseResult options, Address target, int dataMin, int dataMax, ulong seed, CancellationToken cancellationToken)
    {
        // Every session carries a four-byte version and at least one byte derived from it, and a one-byte GET answer
        // would read as a status.
        if (dataMin < 5)
        {
            return Spec.ReportError($"-check needs session data of at least 5 bytes, not {dataMin}");
        }

        int idSize = (int)options.GetValue(IdSizeOption);
        if (dataMax > ProtocolConstants.MaxMessagePayload - ProtocolConstants.AddRequestPrefixSize - idSize)
        {
            return Spec.ReportError($"-idsize and -datamax together exceed the 32768-byte message limit ({ProtocolConstants.AddRequestPrefixSize} + {idSize} + {dataMax} bytes)");
        }

        var settings = new CheckSettings
        {
            Target = target,
            Clients = (int)options.GetValue(ClientsOption),
            Pipeline = (int)options.GetValue(PipelineOption),
            Duration = TimeSpan.FromSeconds(options.GetValue(DurationOption)),
            Mix = options.TryGetValue(MixOption, out OperationMix? mix) ? mix : OperationMix.CheckDefault,
            Keys = (int)options.GetValue(KeysOption),
            IdSize = idSize,
            DataMin = dataMin,
            DataMax = dataMax,
            SessionTimeoutMilliseconds = options.GetValue(TimeoutOption) * 1000,
            Slack = TimeSpan.FromMilliseconds(options.GetValue(SlackOption)),
            Progress = options.GetValue(ProgressOption),
            Seed = seed,
        };
        return await Checker.RunAsync(settings, cancellationToken).ConfigureAwait(false);
    }

    private static int RunCorrectness(ParseResult options, Address target, int dataMin, int dataMax, ulong seed, CancellationToken cancellationToken)
    {
        uint sessions = options.GetValue(SessionsOption);
        uint timeout = options.GetValue(TimeoutOption);
        uint timevar = options.GetValue(TimevarOption);
        if (timevar >= timeout)
        {
            return Spec.ReportError($"-timevar must be less than -timeout ({timevar} >= {timeout})");
        }

        uint withCert = options.GetValue(WithCertOption);
        if (withCert > sessions)
        {
            return Spec.ReportError($"-withcert must not be greater than -sessions ({withCert} > {sessions})");
        }

        var settings = new CorrectnessSettings
        {
            Target = target,
            Sessions = (int)sessions,
            DataMin = dataMin,
            DataMax = dataMax,
            TimeoutSeconds = (int)timeout,
            TimevarSeconds = (int)timevar,
            Operations = options.TryGetValue(OpsOption, out ulong ops) ? ops : 10UL * sessions * sessions,
            Persistent = options.IsSet(PersistentFlag),
            WithCert = (int)withCert,
            Progress = options.GetValue(ProgressOption),
            Seed = seed,
        };
        return CorrectnessTest.Run(settings, cancellationToken);
    }

    private static async Task<int> RunBenchAsync(ParseResult options, Address target, int dataMin, int dataMax, ulong seed, CancellationToken cancellationToken)
    {
        if (dataMin < 2)
        {
            // A one-byte GET answer is a status (NOTOK, ...), so one-byte data could not be told from a miss.
            return Spec.ReportError($"-bench needs session data of at least 2 bytes, not {dataMin}");
        }

        int keys = (int)options.GetValue(KeysOption);
        int prefill = options.TryGetValue(PrefillOption, out uint p) ? (int)p : keys;
        if (prefill > keys)
        {
            return Spec.ReportError($"-prefill must not be greater than -keys ({prefill} > {keys})");
        }

        int idSize = (int)options.GetValue(IdSizeOption);
        if (dataMax > ProtocolConstants.MaxMessagePayload - ProtocolConstants.AddRequestPrefixSize - idSize)
        {
            return Spec.ReportError($"-idsize and -datamax together exceed the 32768-byte message limit ({ProtocolConstants.AddRequestPrefixSize} + {idSize} + {dataMax} bytes)");
        }

        bool shortConnections = options.IsSet(ShortFlag);
        if (shortConnections && options.TryGetValue(PipelineOption, out uint asked) && asked != 1)
        {
            return Spec.ReportError($"-short sends one request per connection, so -pipeline must be 1 (not {asked})");
        }

        var settings = new LoadSettings
        {
            Target = target,
            ShortConnections = shortConnections,
            Clients = (int)options.GetValue(ClientsOption),
            Pipeline = shortConnections ? 1 : (int)options.GetValue(PipelineOption),
            Duration = TimeSpan.FromSeconds(options.GetValue(DurationOption)),
            Requests = options.TryGetValue(RequestsOption, out ulong requests) ? (long)requests : null,
            Warmup = TimeSpan.FromSeconds(options.GetValue(WarmupOption)),
            Mix = options.TryGetValue(MixOption, out OperationMix? mix) ? mix : OperationMix.Default,
            Keys = keys,
            Prefill = prefill,
            DataMin = dataMin,
            DataMax = dataMax,
            IdSize = idSize,
            SessionTimeoutMilliseconds = (options.TryGetValue(TimeoutOption, out uint timeout) ? timeout : 3600) * 1000,
            Seed = seed,
            JsonPath = options.TryGetValue(JsonOption, out string? json) ? json : null,
            ServerPid = options.TryGetValue(ServerPidOption, out uint pid) ? (int)pid : null,
            Rate = options.TryGetValue(RateOption, out uint rate) ? (int)rate : null,
        };
        // Run socket continuations on the epoll threads instead of handing each to the thread pool: the load loops
        // never block, and skipping the hand-off cut our user CPU per operation by about 40% in the measurements of
        // docs/tools.md. The runtime reads this when the first socket is created, which has not happened yet.
        Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
        return await LoadGenerator.RunAsync(settings, cancellationToken).ConfigureAwait(false);
    }
}
