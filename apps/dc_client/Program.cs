using Distcache.Hosting;
using Distcache.Networking;
using Distcache.Proxy;
using Microsoft.Extensions.Logging;

namespace Distcache.Apps.Client;

/// <summary>
/// dc_client: the local proxy, a drop-in for 1.5.1's. Same options, same defaults, same messages, plus -timeout.
/// </summary>
internal static class Program
{
    // 1.5.1 caps -retry and -idle at one hour, and refuses a retry period of 0 (it would reconnect in a tight loop).
    private const uint MaxPeriod = 3_600_000;
    private const string DefaultListen = "UNIX:/tmp/scache";

    private static readonly ValueOption<Address> ListenOption = new("listen", "addr", "listen on address 'addr': UNIX:/path, IP:port, IP:host:port, IPv6:[addr]:port", AddressParsers.Listen)
    {
        DefaultValue = Address.Parse(DefaultListen),
        DefaultText = DefaultListen,
    };

    private static readonly ValueOption<Address> ServerOption = new("server", "addr", "connects to a cache server at 'addr', required; repeat it to spread sessions over several servers", AddressParsers.Connect)
    {
        Aliases = ["connect"],
        Repeatable = true,
    };

    private static readonly FlagOption DaemonFlag = new("daemon", "detach and run in the background, best with -pidfile");
    private static readonly ValueOption<uint> RetryOption = new("retry", "msecs", "retry period for the cache server link, 1..3600000", ValueParsers.UInt32InRange(1, MaxPeriod)) { DefaultValue = 5000 };
    private static readonly ValueOption<uint> IdleOption = new("idle", "msecs", "drop a local connection idle this long, 0 = never, at most 3600000", ValueParsers.UInt32InRange(0, MaxPeriod)) { DefaultValue = 0 };
    private static readonly ValueOption<uint> TimeoutOption = new("timeout", "msecs", "give up on a server link whose oldest request waits this long, and bound each connection attempt; 0 = never", ValueParsers.UInt32InRange(0, MaxPeriod)) { DefaultValue = 5000 };
    private static readonly ValueOption<string> UserOption = new("user", "user", "switch to this user once the listening socket exists, before connecting to the server", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> SockOwnerOption = new("sockowner", "user", "owner of a unix domain listening socket", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> SockGroupOption = new("sockgroup", "group", "group of a unix domain listening socket", ValueParsers.NonEmptyText);
    private static readonly ValueOption<UnixFileMode> SockPermsOption = new("sockperms", "oct", "permissions of a unix domain listening socket, e.g. 660", ValueParsers.OctalPermissions);
    private static readonly ValueOption<string> PidFileOption = new("pidfile", "path", "a file to store the process ID in", ValueParsers.NonEmptyText);
    private static readonly FlagOption KillableFlag = new("killable", "exit cleanly on a SIGUSR1 or SIGUSR2 signal, otherwise ignored");
    private static readonly ValueOption<Address> MetricsOption = new("metrics", "addr", "serve Prometheus metrics over HTTP (GET /metrics) at this TCP address, e.g. IP:127.0.0.1:9102", AddressParsers.MetricsListen);

    // The -tls-* flags are about the server link, the one connection that crosses the network; the listening side is
    // local and is protected by socket permissions and -allow-uid/-allow-gid instead (docs/security.md).
    private static readonly ValueOption<string> TlsCaOption = new("tls-ca", "file", "connect to the server with TLS, verifying its certificate against the CAs in this PEM file", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> TlsCertOption = new("tls-cert", "file", "present this PEM client certificate to the server (needs -tls-ca)", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> TlsKeyOption = new("tls-key", "file", "the PEM private key of -tls-cert", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> TlsNameOption = new("tls-name", "name", "the name the server certificate must carry (default: the host of -server)", ValueParsers.NonEmptyText);
    private static readonly ValueOption<uint[]> AllowUidOption = new("allow-uid", "users", "only these users (names or ids, comma-separated) may connect to a unix -listen socket", SecurityParsers.UserIdList);
    private static readonly ValueOption<uint[]> AllowGidOption = new("allow-gid", "groups", "only processes of these groups (names or ids, comma-separated) may connect to a unix -listen socket", SecurityParsers.GroupIdList);

    private static readonly CommandLineSpec Spec = new("dc_client",
    [
        DaemonFlag, ListenOption, ServerOption, RetryOption, IdleOption, TimeoutOption, UserOption, SockOwnerOption, SockGroupOption,
        SockPermsOption, PidFileOption, KillableFlag, MetricsOption, TlsCaOption, TlsCertOption, TlsKeyOption, TlsNameOption, AllowUidOption, AllowGidOption,
        .. ToolLog.Options,
    ])
    {
        Epilogue = """
             Eg. dc_client -listen UNIX:/tmp/scache -server IP:192.168.2.5:9003
             will listen on a unix domain socket at /tmp/scache and will manage
             forwarding requests and responses to and from the cache server.
             While the server is unreachable every request is answered at once with DISCONNECTED.
             SIGTERM or SIGINT shut down cleanly; SIGHUP reopens -log and reloads the -tls-* files.
             Under systemd a socket unit may pass the listening socket instead of -listen.
            """,
    };

    private static async Task<int> Main(string[] args)
    {
        // Before any socket exists: the engine reads the setting once (see SocketEngine for why).
        SocketEngine.UseInlineCompletions();
        if (!Spec.TryParse(args, out ParseResult options, out int exitCode))
        {
            return exitCode;
        }

        // Several servers spread the sessions between them by consistent hashing; the same one twice is a mistake,
        // since it would count double on the hash ring.
        List<string> serverSpellings = ServerSpellings(args);
        IReadOnlyList<Address> servers = options.GetValues(ServerOption);
        if (servers.Count == 0)
        {
            return Spec.ReportError("no server specified!");
        }

        for (int i = 1; i < servers.Count; i++)
        {
            if (servers.Take(i).Any(s => s.ToString() == servers[i].ToString()))
            {
                return Spec.ReportError($"{serverSpellings[i]} given an invalid argument: {servers[i]} is already a server");
            }
        }

        TlsClientSettings? tls;
        try
        {
            tls = LoadTls(options, servers);
        }
        catch (TlsConfigurationException e)
        {
            await Console.Error.WriteLineAsync($"Error, {SecurityParsers.FlagOf(e.Role)} {e.Message}").ConfigureAwait(false);
            return 1;
        }
        catch (ArgumentException e)
        {
            return Spec.ReportError(e.Message);
        }

        if (ToolListener.ChooseAddress("dc_client", options.IsSet(ListenOption) ? options.GetValue(ListenOption) : null, options.IsSet(DaemonFlag), out Address? chosen) is { } activationProblem)
        {
            await Console.Error.WriteLineAsync("Error, " + activationProblem).ConfigureAwait(false);
            return 1;
        }

        if (options.IsSet(DaemonFlag) && !Daemon.IsDaemonChild)
        {
            return Daemon.RunDetached(args);
        }

        ToolLog log;
        try
        {
            log = ToolLog.Open("dc_client", options, Daemon.IsDaemonChild);
        }
        catch (HostingException e)
        {
            await Console.Error.WriteLineAsync("Error, " + e.Message).ConfigureAwait(false);
            return 1;
        }

        using (log)
        {
            return await RunAsync(options, servers, tls, chosen ?? options.GetValue(ListenOption)!, log).ConfigureAwait(false);
        }
    }

    private static async Task<int> RunAsync(ParseResult options, IReadOnlyList<Address> servers, TlsClientSettings? tls, Address address, ToolLog log)
    {
        ILoggerFactory loggerFactory = log.Factory;
        ILogger logger = loggerFactory.CreateLogger("dc_client");
        try
        {
            if (Daemon.IsDaemonChild)
            {
                Daemon.StartSession();
            }

            using var shutdown = new CancellationTokenSource();
            using SignalHandlers signals = SignalHandlers.Register(shutdown, options.IsSet(KillableFlag), logger);
            signals.Hangup += (_, _) => Reload(log, tls);

            var proxyOptions = new DistcacheProxyOptions
            {
                Servers = servers,
                RetryInterval = TimeSpan.FromMilliseconds(options.GetValue(RetryOption)),
                IdleTimeout = TimeSpan.FromMilliseconds(options.GetValue(IdleOption)),
                OperationTimeout = TimeSpan.FromMilliseconds(options.GetValue(TimeoutOption)),
                Tls = tls,
                NativeTransport = SocketEngine.NativeTransportWanted(),

                // Local connections are as many as the applications open: the soft descriptor limit is raised to the
                // hard one, and connections beyond what fits under it are closed at once rather than accepted until
                // EMFILE, which would end the process (the runtime needs descriptors too).
                MaxConnections = DescriptorBudget.Fit(0, string.Empty, out _),
            };

            // Owner, group and mode are applied by Listen before listen(2), so no application can connect
            // while the socket still has the permissions the umask gave it.
            NetworkListener? listener = await ToolListener.TryListenAsync(address, ToolListener.ReadOptions(
                options, SockOwnerOption, SockGroupOption, SockPermsOption, AllowUidOption, AllowGidOption, loggerFactory.CreateLogger<NetworkListener>(),
                nativeTransport: SocketEngine.NativeTransportWanted()), log).ConfigureAwait(false);
            if (listener is null)
            {
                return 1;
            }

            // Bound with the local socket, before privileges are dropped, so that it too may use a privileged port.
            MetricsEndpoint? metrics = null;
            if (options.TryGetValue(MetricsOption, out Address? metricsAddress))
            {
                metrics = await MetricsEndpoint.TryListenAsync(metricsAddress, [ProxyMetrics.MeterName], loggerFactory.CreateLogger<MetricsEndpoint>()).ConfigureAwait(false);
                if (metrics is null)
                {
                    await listener.DisposeAsync().ConfigureAwait(false);
                    return 1;
                }
            }

            await using (new MetricsEndpoint.Owner(metrics).ConfigureAwait(false))
            await using (listener.ConfigureAwait(false))
            {
                if (SecurityParsers.IsReachableFromOtherHosts(listener.LocalAddress))
                {
                    log.Warning(
                        $"listening on {listener.LocalAddress}, which other hosts can reach, and the listening side has no TLS: listen on a unix socket or loopback address; see docs/security.md");
                }

                foreach (Address server in servers.Where(s => tls is null && SecurityParsers.IsReachableFromOtherHosts(s)))
                {
                    log.Warning(
                        $"the link to {server} is not encrypted: sessions (their master secrets) cross the network in the clear. Use -tls-ca, -tls-cert and -tls-key; see docs/security.md");
                }

                // As in 1.5.1: the user changes after the listening socket exists and before the server is first
                // contacted, so connecting works the same at start-up as on every later retry.
                if (options.TryGetValue(UserOption, out string? user))
                {
                    Privileges.SwitchUser(user);
                }

                PidFile? pidFile = null;
                if (options.TryGetValue(PidFileOption, out string? pidPath) && (pidFile = PidFile.TryCreate(pidPath, log)) is null)
                {
                    return 1;
                }

                using (pidFile)
                {
                    var proxy = new DistcacheProxy(proxyOptions, loggerFactory.CreateLogger<DistcacheProxy>());
                    using var proxyMetrics = new ProxyMetrics(proxy);
                    if (metrics is not null)
                    {
                        await metrics.AnnounceAsync(Console.Error).ConfigureAwait(false);
                        metrics.Start();
                    }

                    Task running = proxy.RunAsync(listener, shutdown.Token);

                    // 1.5.1 made its first connection attempt before detaching, so that a failure shows where the
                    // user is looking and a script that started the daemon finds it forwarding. The attempt is
                    // bounded by -timeout; failing it is not fatal, the proxy keeps retrying.
                    await Task.WhenAny(proxy.FirstConnectAttempt, running).ConfigureAwait(false);
                    if (servers.Count > 1)
                    {
                        log.Info($"spreading sessions over {servers.Count} servers ({proxy.ConnectedServers} connected): {string.Join(", ", servers)}");
                    }

                    Daemon.NotifyReady(log);

                    await running.ConfigureAwait(false);
                }
            }

            return 0;
        }
        catch (HostingException e)
        {
            log.Error(e.Message);
            return 1;
        }
    }

    /// <summary>The server link's TLS settings from the -tls-* flags, or null when TLS is not asked for.</summary>
    /// <exception cref="TlsConfigurationException">A file is unusable.</exception>
    /// <exception cref="ArgumentException">The flags do not fit together; the message names them.</exception>
    private static TlsClientSettings? LoadTls(ParseResult options, IReadOnlyList<Address> servers)
    {
        options.TryGetValue(TlsCaOption, out string? ca);
        options.TryGetValue(TlsCertOption, out string? cert);
        options.TryGetValue(TlsKeyOption, out string? key);
        options.TryGetValue(TlsNameOption, out string? name);
        return SecurityParsers.ClientTls(ca, cert, key, name, servers, "server");
    }

    /// <summary>SIGHUP: the log file is opened again (logrotate renamed it); connections made from now on use the TLS files as they are now.</summary>
    private static void Reload(ToolLog log, TlsClientSettings? tls)
    {
        bool reopened = log.ReopenOnHangup();

        if (tls is null)
        {
            if (!reopened)
            {
                log.Info("SIGHUP: nothing to reload");
            }

            return;
        }

        try
        {
            tls.Reload();
            log.Info("SIGHUP: reloaded the TLS files");
        }
        catch (TlsConfigurationException e)
        {
            log.Error($"SIGHUP: {SecurityParsers.FlagOf(e.Role)} {e.Message}; still using the previous files");
        }
    }

    // How each server option was spelled, in order (-server, -connect, --server, ...), for 1.5.1's complaint about
    // a second one. Only called after a successful parse, so every word is an option or the value of one.
    private static List<string> ServerSpellings(string[] args)
    {
        var spellings = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            string name = arg.StartsWith("--", StringComparison.Ordinal) ? arg[2..] : arg.TrimStart('-');
            int equals = name.IndexOf('=', StringComparison.Ordinal);
            bool inlineValue = equals >= 0 && arg.StartsWith("--", StringComparison.Ordinal);
            if (inlineValue)
            {
                name = name[..equals];
            }

            CommandLineOption? option = Spec.Options.FirstOrDefault(o => o.Name == name || o.Aliases.Contains(name));
            if (option == ServerOption)
            {
                spellings.Add(inlineValue ? arg[..(arg.IndexOf('=', StringComparison.Ordinal))] : arg);
            }

            if (option is { TakesValue: true } && !inlineValue)
            {
                i++;
            }
        }

        return spellings;
    }
}
