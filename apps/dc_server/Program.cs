using Distcache.Hosting;
using Distcache.Networking;
using Distcache.Server;
using Distcache.Storage;
using Microsoft.Extensions.Logging;

namespace Distcache.Apps.Server;

/// <summary>
/// dc_server: the cache server, a drop-in for 1.5.1's. Same options, same defaults, same messages; wider limits.
/// </summary>
internal static class Program
{
    // 1.5.1 accepts -sessions 64..60000; ours takes any count, and 0 for "no count limit" (the byte bound still holds).
    private const uint MaxSessionsLimit = 1_000_000_000;

    // Without -memory, the byte bound leaves room for the session count at 4 KiB a session (a TLS session with a
    // client certificate), and never less than 64 MiB, so that -sessions stays the binding limit as in 1.5.1.
    private const ulong BytesPerSessionAllowance = 4096;

    private static readonly DistcacheServerOptions Defaults = new();

    private static readonly ValueOption<Address> ListenOption = new("listen", "address", "where to accept connections (IP:port, IP:host:port, UNIX:/path, IPv6:[addr]:port)", AddressParsers.Listen);
    private static readonly FlagOption DaemonFlag = new("daemon", "detach from the terminal after start-up (best with -pidfile)");
    private static readonly ValueOption<string> UserOption = new("user", "user", "switch to this user after the listening socket exists", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> SockOwnerOption = new("sockowner", "user", "owner of a unix socket file", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> SockGroupOption = new("sockgroup", "group", "group of a unix socket file", ValueParsers.NonEmptyText);
    private static readonly ValueOption<UnixFileMode> SockPermsOption = new("sockperms", "octal", "permissions of a unix socket file, e.g. 660", ValueParsers.OctalPermissions);
    private static readonly ValueOption<uint> SessionsOption = new("sessions", "num", "maximum number of stored sessions; 0 = no count limit", ValueParsers.UInt32InRange(0, MaxSessionsLimit)) { DefaultValue = (uint)MemorySessionStoreOptions.DefaultMaxSessions };
    private static readonly ValueOption<ulong> MemoryOption = new("memory", "size", "maximum bytes of session storage, e.g. 512M, 2G", ValueParsers.SizeInRange((ulong)MemorySessionStoreOptions.MinMaxBytes, long.MaxValue)) { DefaultText = "64M, or 4K per session if more" };
    private static readonly ValueOption<uint> ProgressOption = new("progress", "num", "also print the activity line every num operations", ValueParsers.UInt32InRange(0, uint.MaxValue)) { DefaultValue = 0 };
    private static readonly ValueOption<string> PidFileOption = new("pidfile", "path", "write the process id here after start-up", ValueParsers.NonEmptyText);
    // The limits that keep one peer from exhausting the server; the defaults and their reasons are those of
    // DistcacheServerOptions, this only maps flags to it. A day in milliseconds is a generous ceiling.
    private const uint MaxTimeoutMs = 86_400_000;
    private static readonly ValueOption<uint> MaxConnsOption = new("maxconns", "num", "most connections served at once (no more than the descriptor limit allows); more are accepted and closed at once. 0 = as many as that limit allows", ValueParsers.UInt32InRange(0, int.MaxValue)) { DefaultValue = DistcacheServerOptions.DefaultMaxConnections };
    private static readonly ValueOption<uint> MsgTimeoutOption = new("msgtimeout", "msecs", "a started request must arrive in full within this time, or the connection is closed. 0 = no limit", ValueParsers.UInt32InRange(0, MaxTimeoutMs)) { DefaultValue = (uint)Defaults.MessageTimeout.TotalMilliseconds };
    private static readonly ValueOption<uint> IdleOption = new("idle", "msecs", "close a connection idle for this long. 0 = never (as 1.5.1)", ValueParsers.UInt32InRange(0, MaxTimeoutMs)) { DefaultValue = (uint)Defaults.IdleTimeout.TotalMilliseconds };
    private static readonly ValueOption<uint> WriteTimeoutOption = new("writetimeout", "msecs", "drop a client that leaves its responses unread for this long. 0 = never", ValueParsers.UInt32InRange(0, MaxTimeoutMs)) { DefaultValue = (uint)Defaults.WriteTimeout.TotalMilliseconds };
    private static readonly FlagOption KillableFlag = new("killable", "let SIGUSR1 and SIGUSR2 shut the server down (otherwise ignored)");
    private static readonly ValueOption<Address> MetricsOption = new("metrics", "addr", "serve Prometheus metrics over HTTP (GET /metrics) at this TCP address, e.g. IP:127.0.0.1:9101", AddressParsers.MetricsListen);

    // Security (docs/security.md). SIGHUP reads the TLS files and the partition map again.
    private static readonly ValueOption<string> TlsCertOption = new("tls-cert", "file", "accept only TLS, with this PEM certificate (and chain); the key may be in the same file", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> TlsKeyOption = new("tls-key", "file", "the PEM private key of -tls-cert", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> TlsCaOption = new("tls-ca", "file", "require a client certificate issued by a CA in this PEM file (mutual TLS)", ValueParsers.NonEmptyText);
    private static readonly FlagOption PartitionFlag = new("partition", "give each client certificate subject a partition of its own (needs -tls-ca)");
    private static readonly ValueOption<string> PartitionMapOption = new("partition-map", "file", "map certificate subjects to partitions and rw/ro access; others are refused (needs -tls-ca)", ValueParsers.NonEmptyText);
    private static readonly ValueOption<uint[]> AllowUidOption = new("allow-uid", "users", "only these users (names or ids, comma-separated) may connect to the unix socket", SecurityParsers.UserIdList);
    private static readonly ValueOption<uint[]> AllowGidOption = new("allow-gid", "groups", "only processes of these groups (names or ids, comma-separated) may connect to the unix socket", SecurityParsers.GroupIdList);

    private static readonly CommandLineSpec Spec = new("dc_server",
    [
        ListenOption, DaemonFlag, UserOption, SockOwnerOption, SockGroupOption, SockPermsOption, SessionsOption, MemoryOption,
        ProgressOption, PidFileOption, KillableFlag, MetricsOption, MaxConnsOption, MsgTimeoutOption, IdleOption, WriteTimeoutOption,
        TlsCertOption, TlsKeyOption, TlsCaOption, PartitionFlag, PartitionMapOption, AllowUidOption, AllowGidOption,
        .. StoreSelection.Options, .. ToolLog.Options,
    ])
    {
        Epilogue = "'-listen' is required, unless systemd passes the listening socket (a socket unit). Activity is reported on stderr in the foreground; SIGTERM or SIGINT shut down cleanly; SIGHUP reopens -log and reloads the -tls-* files.",
    };

    private static async Task<int> Main(string[] args)
    {
        // Before any socket exists: the engine reads the setting once (see SocketEngine for why).
        SocketEngine.UseInlineCompletions();
        if (!Spec.TryParse(args, out ParseResult options, out int exitCode))
        {
            return exitCode;
        }

        if (ToolListener.ChooseAddress("dc_server", options.TryGetValue(ListenOption, out Address? given) ? given : null, options.IsSet(DaemonFlag), out Address? address) is { } activationProblem)
        {
            await Console.Error.WriteLineAsync("Error, " + activationProblem).ConfigureAwait(false);
            return 1;
        }

        if (address is null)
        {
            return Spec.ReportError("must provide -listen");
        }

        if (SecurityProblem(options) is { } problem)
        {
            return Spec.ReportError(problem);
        }

        // The store's flags are checked before anything starts, so a command-line mistake is reported as one.
        if (StoreSelection.Problem(options, [SessionsOption, MemoryOption]) is { } storeProblem)
        {
            return Spec.ReportError(storeProblem);
        }

        if (options.IsSet(DaemonFlag) && !Daemon.IsDaemonChild)
        {
            return Daemon.RunDetached(args);
        }

        ToolLog log;
        try
        {
            // Connection events of the server below warning are many and routine; an explicit -loglevel shows them.
            log = ToolLog.Open("dc_server", options, Daemon.IsDaemonChild, logging => logging.AddFilter("Distcache.Server", LogLevel.Warning));
        }
        catch (HostingException e)
        {
            await Console.Error.WriteLineAsync("Error, " + e.Message).ConfigureAwait(false);
            return 1;
        }

        using (log)
        {
            return await RunAsync(options, address, log).ConfigureAwait(false);
        }
    }

    private static async Task<int> RunAsync(ParseResult options, Address address, ToolLog log)
    {
        ILoggerFactory loggerFactory = log.Factory;
        ILogger logger = loggerFactory.CreateLogger("dc_server");
        try
        {
            if (Daemon.IsDaemonChild)
            {
                Daemon.StartSession();
            }

            using var shutdown = new CancellationTokenSource();
            using SignalHandlers signals = SignalHandlers.Register(shutdown, options.IsSet(KillableFlag), logger);

            // Read before listening and before dropping privileges: a bad file is a start-up error, and keys are
            // often readable by root only.
            TlsServerSettings? tls;
            ClientAccessPolicy? access;
            try
            {
                tls = options.TryGetValue(TlsCertOption, out string? certFile)
                    ? new TlsServerSettings(certFile, options.TryGetValue(TlsKeyOption, out string? keyFile) ? keyFile : null, options.TryGetValue(TlsCaOption, out string? caFile) ? caFile : null)
                    : null;
                access = options.TryGetValue(PartitionMapOption, out string? mapFile) ? ClientAccessPolicy.Load(mapFile)
                    : options.IsSet(PartitionFlag) ? ClientAccessPolicy.PartitionBySubject
                    : null;
            }
            catch (TlsConfigurationException e)
            {
                log.Error($"{SecurityParsers.FlagOf(e.Role)} {e.Message}");
                return 1;
            }
            catch (Exception e) when (e is FormatException or IOException or UnauthorizedAccessException)
            {
                log.Error($"-partition-map {e.Message}");
                return 1;
            }

            signals.Hangup += (_, _) => Reload(log, tls, access);

            uint sessions = options.GetValue(SessionsOption);
            ulong memory = options.TryGetValue(MemoryOption, out ulong m) ? m : Math.Max((ulong)MemorySessionStoreOptions.DefaultMaxBytes, sessions * BytesPerSessionAllowance);
            using ISessionStore? store = StoreSelection.Create(options,
                () => new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = (int)sessions, MaxBytes = (long)memory }),
                loggerFactory, out string? storeError);
            if (store is null)
            {
                log.Error(storeError!);
                return 1;
            }

            NetworkListener? listener = await ToolListener.TryListenAsync(address, ToolListener.ReadOptions(
                options, SockOwnerOption, SockGroupOption, SockPermsOption, AllowUidOption, AllowGidOption, loggerFactory.CreateLogger<NetworkListener>(),
                // TLS connections run over the runtime's sockets (SslStream) whatever the listener does, and their
                // handshakes must not start on an event loop's thread, so a TLS listener accepts the runtime's way.
                nativeTransport: SocketEngine.NativeTransportWanted() && tls is null), log).ConfigureAwait(false);
            if (listener is null)
            {
                return 1;
            }

            // Bound with the cache's socket, before privileges are dropped, so that it too may use a privileged port.
            MetricsEndpoint? metrics = null;
            if (options.TryGetValue(MetricsOption, out Address? metricsAddress))
            {
                metrics = await MetricsEndpoint.TryListenAsync(metricsAddress, [ServerMetrics.MeterName], loggerFactory.CreateLogger<MetricsEndpoint>()).ConfigureAwait(false);
                if (metrics is null)
                {
                    await listener.DisposeAsync().ConfigureAwait(false);
                    return 1;
                }
            }

            await using (new MetricsEndpoint.Owner(metrics).ConfigureAwait(false))
            await using (listener.ConfigureAwait(false))
            {
                // Says where it listens, which matters when the port was 0 (any free port) or a name was given.
                log.Info($"listening on {listener.LocalAddress}");
                if (tls is not null)
                {
                    log.Info($"TLS only, as '{tls.Certificate.Subject}'{(tls.RequiresClientCertificate ? "; client certificates required" : string.Empty)}{(access is null ? string.Empty : "; partitioned by client identity")}");
                }

                if (tls is null && SecurityParsers.IsReachableFromOtherHosts(listener.LocalAddress))
                {
                    log.Warning(
                        $"listening on {listener.LocalAddress} without TLS: anyone who can reach it can read, add and remove sessions (their master secrets). Use -tls-cert, -tls-key and -tls-ca, or listen on a loopback address or unix socket; see docs/security.md");
                }

                // Privileges are dropped only once the socket exists, so a root-started server can bind a
                // privileged port or a socket in a root-owned directory.
                if (options.TryGetValue(UserOption, out string? user))
                {
                    Privileges.SwitchUser(user);
                }

                using PidFile? pidFile = options.TryGetValue(PidFileOption, out string? pidPath) ? PidFile.Create(pidPath) : null;

                // Connections beyond the descriptor limit would end the process, not just the connection: the cap
                // fits under the limit, raised first as far as the hard limit allows.
                int maxConnections = DescriptorBudget.Fit((int)options.GetValue(MaxConnsOption), "-maxconns", out string? budgetWarning);
                if (budgetWarning is not null)
                {
                    log.Warning(budgetWarning);
                }

                var serverOptions = new DistcacheServerOptions
                {
                    MaxConnections = maxConnections,
                    MessageTimeout = TimeSpan.FromMilliseconds(options.GetValue(MsgTimeoutOption)),
                    IdleTimeout = TimeSpan.FromMilliseconds(options.GetValue(IdleOption)),
                    WriteTimeout = TimeSpan.FromMilliseconds(options.GetValue(WriteTimeoutOption)),
                    Tls = tls,
                    Access = access,
                };
                var server = new DistcacheServer(store, serverOptions, loggerFactory.CreateLogger<DistcacheServer>());
                using var serverMetrics = new ServerMetrics(server);
                if (metrics is not null)
                {
                    await metrics.AnnounceAsync(Console.Error).ConfigureAwait(false);
                    metrics.Start();
                }

                Daemon.NotifyReady(log);

                Task reporting = Task.CompletedTask;
                if (!Daemon.IsDaemonChild)
                {
                    var reporter = new ActivityReporter(server, Console.Error, options.GetValue(ProgressOption));
                    reporting = reporter.RunAsync(shutdown.Token);
                }

                await server.RunAsync(listener, shutdown.Token).ConfigureAwait(false);
                await reporting.ConfigureAwait(false);

                // A line of its own, after the activity lines, so the 1.5.1 activity format stays as it was.
                log.Info("at exit: " + server.Statistics.Summary());
            }

            return 0;
        }
        catch (HostingException e)
        {
            log.Error(e.Message);
            return 1;
        }
    }

    /// <summary>Combinations of the security flags that cannot work, worded for the user; null when they are fine.</summary>
    private static string? SecurityProblem(ParseResult options)
    {
        bool tls = options.IsSet(TlsCertOption);
        if (!tls && (options.IsSet(TlsKeyOption) || options.IsSet(TlsCaOption)))
        {
            return $"{(options.IsSet(TlsKeyOption) ? "-tls-key" : "-tls-ca")} needs -tls-cert, the server's certificate";
        }

        if ((options.IsSet(PartitionFlag) || options.IsSet(PartitionMapOption)) && !options.IsSet(TlsCaOption))
        {
            return $"{(options.IsSet(PartitionFlag) ? "-partition" : "-partition-map")} needs -tls-cert and -tls-ca: partitions are given to verified client certificates";
        }

        if (options.IsSet(PartitionFlag) && options.IsSet(PartitionMapOption))
        {
            return "-partition and -partition-map exclude each other: the map gives the partitions";
        }

        return null;
    }

    /// <summary>
    /// SIGHUP: the log file is opened again (logrotate renamed it), then new handshakes use the TLS files as they are
    /// now; established connections are left alone.
    /// </summary>
    private static void Reload(ToolLog log, TlsServerSettings? tls, ClientAccessPolicy? access)
    {
        bool reopened = log.ReopenOnHangup();
        try
        {
            tls?.Reload();
            access?.Reload();
            if (tls is not null || access?.File is not null)
            {
                log.Info($"SIGHUP: reloaded{(tls is null ? string.Empty : $" the TLS certificate (now '{tls.Certificate.Subject}', serial {tls.Certificate.SerialNumber})")}{(access?.File is null ? string.Empty : " the partition map")}");
            }
            else if (!reopened)
            {
                log.Info("SIGHUP: nothing to reload");
            }
        }
        catch (TlsConfigurationException e)
        {
            log.Error($"SIGHUP: {SecurityParsers.FlagOf(e.Role)} {e.Message}; still using the previous certificate");
        }
        catch (Exception e) when (e is FormatException or IOException or UnauthorizedAccessException)
        {
            log.Error($"SIGHUP: -partition-map {e.Message}; still using the previous map");
        }
    }
}
