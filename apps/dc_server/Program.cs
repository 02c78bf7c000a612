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
    private static readonly ValueOption<uint> MaxConnsOption = new("maxconns", "num", "most connections served at once; more are accepted and closed at once. 0 = no cap", ValueParsers.UInt32InRange(0, int.MaxValue)) { DefaultValue = DistcacheServerOptions.DefaultMaxConnections };
    private static readonly ValueOption<uint> MsgTimeoutOption = new("msgtimeout", "msecs", "a started request must arrive in full within this time, or the connection is closed. 0 = no limit", ValueParsers.UInt32InRange(0, MaxTimeoutMs)) { DefaultValue = (uint)Defaults.MessageTimeout.TotalMilliseconds };
    private static readonly ValueOption<uint> IdleOption = new("idle", "msecs", "close a connection idle for this long. 0 = never (as 1.5.1)", ValueParsers.UInt32InRange(0, MaxTimeoutMs)) { DefaultValue = (uint)Defaults.IdleTimeout.TotalMilliseconds };
    private static readonly ValueOption<uint> WriteTimeoutOption = new("writetimeout", "msecs", "drop a client that leaves its responses unread for this long. 0 = never", ValueParsers.UInt32InRange(0, MaxTimeoutMs)) { DefaultValue = (uint)Defaults.WriteTimeout.TotalMilliseconds };
    private static readonly FlagOption KillableFlag = new("killable", "let SIGUSR1 and SIGUSR2 shut the server down (otherwise ignored)");

    private static readonly CommandLineSpec Spec = new("dc_server",
    [
        ListenOption, DaemonFlag, UserOption, SockOwnerOption, SockGroupOption, SockPermsOption, SessionsOption, MemoryOption,
        ProgressOption, PidFileOption, KillableFlag, MaxConnsOption, MsgTimeoutOption, IdleOption, WriteTimeoutOption,
        .. StoreSelection.Options,
    ])
    {
        Epilogue = "'-listen' is required. Activity is reported on stderr in the foreground; SIGTERM or SIGINT shut down cleanly.",
    };

    private static async Task<int> Main(string[] args)
    {
        if (!Spec.TryParse(args, out ParseResult options, out int exitCode))
        {
            return exitCode;
        }

        if (!options.TryGetValue(ListenOption, out Address? address))
        {
            await Console.Error.WriteLineAsync("Error, must provide -listen").ConfigureAwait(false);
            return 1;
        }

        if (options.IsSet(DaemonFlag) && !Daemon.IsDaemonChild)
        {
            return Daemon.RunDetached(args);
        }

        using ILoggerFactory loggerFactory = ToolLogging.CreateFactory(logging => logging.AddFilter("Distcache.Server", LogLevel.Warning));
        ILogger logger = loggerFactory.CreateLogger("dc_server");
        try
        {
            if (Daemon.IsDaemonChild)
            {
                Daemon.StartSession();
            }

            using var shutdown = new CancellationTokenSource();
            using SignalHandlers signals = SignalHandlers.Register(shutdown, options.IsSet(KillableFlag), logger);

            uint sessions = options.GetValue(SessionsOption);
            ulong memory = options.TryGetValue(MemoryOption, out ulong m) ? m : Math.Max((ulong)MemorySessionStoreOptions.DefaultMaxBytes, sessions * BytesPerSessionAllowance);
            using ISessionStore? store = StoreSelection.Create(options, [SessionsOption, MemoryOption],
                () => new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = (int)sessions, MaxBytes = (long)memory }),
                loggerFactory, out string? storeError);
            if (store is null)
            {
                await Console.Error.WriteLineAsync(storeError).ConfigureAwait(false);
                return 1;
            }

            NetworkListener listener;
            try
            {
                listener = NetworkListener.Listen(address, new ListenerOptions
                {
                    UnixSocketOwner = options.TryGetValue(SockOwnerOption, out string? owner) ? owner : null,
                    UnixSocketGroup = options.TryGetValue(SockGroupOption, out string? group) ? group : null,
                    UnixSocketMode = options.TryGetValue(SockPermsOption, out UnixFileMode mode) ? mode : null,
                    Logger = loggerFactory.CreateLogger<NetworkListener>(),
                });
            }
            catch (Exception e) when (e is NetworkException or ArgumentException or IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
            {
                await Console.Error.WriteLineAsync($"Error, failed to listen on {address}: {e.Message}").ConfigureAwait(false);
                return 1;
            }

            await using (listener.ConfigureAwait(false))
            {
                // Says where it listens, which matters when the port was 0 (any free port) or a name was given.
                await Console.Error.WriteLineAsync($"Info, listening on {listener.LocalAddress}").ConfigureAwait(false);

                // Privileges are dropped only once the socket exists, so a root-started server can bind a
                // privileged port or a socket in a root-owned directory.
                if (options.TryGetValue(UserOption, out string? user))
                {
                    Privileges.SwitchUser(user);
                }

                using PidFile? pidFile = options.TryGetValue(PidFileOption, out string? pidPath) ? PidFile.Create(pidPath) : null;
                var serverOptions = new DistcacheServerOptions
                {
                    MaxConnections = (int)options.GetValue(MaxConnsOption),
                    MessageTimeout = TimeSpan.FromMilliseconds(options.GetValue(MsgTimeoutOption)),
                    IdleTimeout = TimeSpan.FromMilliseconds(options.GetValue(IdleOption)),
                    WriteTimeout = TimeSpan.FromMilliseconds(options.GetValue(WriteTimeoutOption)),
                };
                var server = new DistcacheServer(store, serverOptions, loggerFactory.CreateLogger<DistcacheServer>());
                Daemon.NotifyReady();

                Task reporting = Task.CompletedTask;
                if (!Daemon.IsDaemonChild)
                {
                    var reporter = new ActivityReporter(server, Console.Error, options.GetValue(ProgressOption));
                    reporting = reporter.RunAsync(shutdown.Token);
                }

                await server.RunAsync(listener, shutdown.Token).ConfigureAwait(false);
                await reporting.ConfigureAwait(false);
            }

            return 0;
        }
        catch (HostingException e)
        {
            await Console.Error.WriteLineAsync("Error, " + e.Message).ConfigureAwait(false);
            return 1;
        }
    }
}
