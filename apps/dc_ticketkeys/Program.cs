using System.Diagnostics.CodeAnalysis;
using Distcache.Client;
using Distcache.Hosting;
using Distcache.Networking;
using Microsoft.Extensions.Logging;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// dc_ticketkeys: shared, rotated TLS session-ticket keys for a farm of web servers, kept in a distcache. Run on each
/// web host; see docs/ticket-keys.md.
/// </summary>
internal static class Program
{
    private const string DefaultState = "/var/lib/dc_ticketkeys/keys";

    private static readonly ValueOption<Address> ConnectOption = new("connect", "addr", "the cache: a dc_server, or the host's dc_client (UNIX:/path, IP:host:port)", AddressParsers.Connect);
    private static readonly ValueOption<string> NameOption = new("name", "farm", "the farm's name; farms sharing a cache keep their keys apart by it (1 to 32 of A-Z a-z 0-9 . _ -)", FarmName) { DefaultValue = "default" };
    private static readonly ValueOption<uint> PeriodOption = new("period", "secs", $"how long each key encrypts, {KeySchedule.MinPeriodSeconds}..{KeySchedule.MaxPeriodSeconds}; the same on every host of the farm", ValueParsers.UInt32InRange(KeySchedule.MinPeriodSeconds, KeySchedule.MaxPeriodSeconds)) { DefaultValue = 43200 };
    private static readonly ValueOption<string> NginxOption = new("nginx", "dir", "write current.key, next.key and previous.key (80 bytes each) in this directory for nginx's ssl_session_ticket_key", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> HAProxyOption = new("haproxy", "file", "write this file for HAProxy's tls-ticket-keys (three base64 lines)", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> ApacheOption = new("apache", "file", "write this file for Apache's SSLSessionTicketKeyFile (48 bytes, the current key only)", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> ReloadOption = new("reload", "command", "run this shell command after the files changed, e.g. 'systemctl reload nginx'", ValueParsers.NonEmptyText);
    private static readonly ValueOption<uint> ReloadTimeoutOption = new("reload-timeout", "secs", "kill the reload command after this long, 1..3600", ValueParsers.UInt32InRange(1, 3600)) { DefaultValue = 60 };
    private static readonly ValueOption<string> StateOption = new("state", "file", "where this host keeps the keys it holds, for when the cache is out of reach", ValueParsers.NonEmptyText) { DefaultValue = DefaultState };
    private static readonly FlagOption ReadOnlyFlag = new("readonly", "only read keys, never add them (hosts whose cache identity may only read)");
    private static readonly FlagOption OnceFlag = new("once", "one pass, then exit: 0 when the keys are current, 1 otherwise (for cron or a systemd timer)");
    private static readonly ValueOption<uint> RefreshOption = new("refresh", "secs", "between rotations, look at the cache this often, 1..86400", ValueParsers.UInt32InRange(1, 86_400)) { DefaultValue = 300 };
    private static readonly ValueOption<uint> RetryOption = new("retry", "secs", "while the cache is out of reach or something failed, try again this often, 1..3600", ValueParsers.UInt32InRange(1, 3600)) { DefaultValue = 30 };
    private static readonly ValueOption<uint> TimeoutOption = new("timeout", "msecs", "give up on one request to the cache after this long, 100..60000", ValueParsers.UInt32InRange(100, 60_000)) { DefaultValue = 5000 };
    private static readonly ValueOption<string> TlsCaOption = new("tls-ca", "file", "connect to the cache with TLS, verifying its certificate against the CAs in this PEM file", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> TlsCertOption = new("tls-cert", "file", "present this PEM client certificate to the cache (needs -tls-ca)", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> TlsKeyOption = new("tls-key", "file", "the PEM private key of -tls-cert", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> TlsNameOption = new("tls-name", "name", "the name the cache's certificate must carry (default: the host of -connect)", ValueParsers.NonEmptyText);
    private static readonly FlagOption InsecureFlag = new("insecure", "allow a link to the cache across the network without mutual TLS (keys would cross it readable or unauthenticated)");
    private static readonly FlagOption DaemonFlag = new("daemon", "detach and run in the background, best with -pidfile");
    private static readonly ValueOption<string> PidFileOption = new("pidfile", "path", "a file to store the process ID in", ValueParsers.NonEmptyText);

    private static readonly CommandLineSpec Spec = new("dc_ticketkeys",
    [
        ConnectOption, NameOption, PeriodOption, NginxOption, HAProxyOption, ApacheOption, ReloadOption, ReloadTimeoutOption, StateOption,
        ReadOnlyFlag, OnceFlag, RefreshOption, RetryOption, TimeoutOption, TlsCaOption, TlsCertOption, TlsKeyOption, TlsNameOption, InsecureFlag,
        DaemonFlag, PidFileOption, .. ToolLog.Options,
    ])
    {
        Epilogue = """
             Eg. dc_ticketkeys -connect UNIX:/run/distcache/dc_client.sock -nginx /etc/nginx/ticketkeys
                               -reload 'systemctl reload nginx'
             keeps the farm's ticket keys in the cache: each period's key is made by the first host that adds it
             and read by all the others. Servers encrypt with the current period's key and also decrypt with the
             previous and the next period's, so no ticket breaks at a rotation. Files are written mode 0600 by
             write-and-rename, only when they change, and the -reload command runs after each change.
             Without -once it runs as a service: again at every rotation, every -refresh seconds, and every -retry
             seconds while the cache is out of reach (the servers keep the keys they have meanwhile).
             A link to the cache across the network must be mutual TLS (-tls-ca, -tls-cert, -tls-key) unless
             -insecure is given. SIGHUP reopens -log and looks at the cache at once; SIGTERM or SIGINT stop it.
            """,
    };

    private static async Task<int> Main(string[] args)
    {
        if (!Spec.TryParse(args, out ParseResult options, out int exitCode))
        {
            return exitCode;
        }

        if (!options.TryGetValue(ConnectOption, out Address? cache))
        {
            return Spec.ReportError("must provide -connect, the cache");
        }

        var files = new KeyFiles(
            options.TryGetValue(NginxOption, out string? nginx) ? Path.GetFullPath(nginx) : null,
            options.TryGetValue(HAProxyOption, out string? haproxy) ? Path.GetFullPath(haproxy) : null,
            options.TryGetValue(ApacheOption, out string? apache) ? Path.GetFullPath(apache) : null);
        bool readOnly = options.IsSet(ReadOnlyFlag);
        if (!files.Any && readOnly)
        {
            return Spec.ReportError("nothing to do: with -readonly, give -nginx, -haproxy or -apache");
        }

        if (!files.Any && options.IsSet(ReloadOption))
        {
            return Spec.ReportError("-reload needs -nginx, -haproxy or -apache: it runs after their files change");
        }

        if (options.IsSet(OnceFlag) && options.IsSet(DaemonFlag))
        {
            return Spec.ReportError("-once and -daemon exclude each other");
        }

        string state = Path.GetFullPath(options.GetValue(StateOption)!);
        if (CheckPlaces(files, state) is { } placeProblem)
        {
            return Spec.ReportError(placeProblem);
        }

        TlsClientSettings? tls;
        try
        {
            tls = LoadTls(options, cache);
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

        // Ticket keys decrypt every session of the farm: a link that other hosts can see must be authenticated both
        // ways and encrypted, or the operator must say, with a flag of its own, that it need not be.
        if (SecurityParsers.IsReachableFromOtherHosts(cache) && (tls is null || tls.CertificateFile is null) && !options.IsSet(InsecureFlag))
        {
            return Spec.ReportError($"-connect {cache} crosses the network {(tls is null ? "without TLS" : "with TLS but no client certificate")}: ticket keys need mutual TLS (-tls-ca, -tls-cert and -tls-key), or -insecure to accept the risk");
        }

        if (options.IsSet(DaemonFlag) && !Daemon.IsDaemonChild)
        {
            return Daemon.RunDetached(args);
        }

        ToolLog log;
        try
        {
            // The client library's connect lines would make every -once pass print something, and cron mails what
            // a job prints: by default only its warnings show, and a pass that changed nothing is silent.
            log = ToolLog.Open("dc_ticketkeys", options, Daemon.IsDaemonChild, logging => logging.AddFilter("Distcache.Client", LogLevel.Warning));
        }
        catch (HostingException e)
        {
            await Console.Error.WriteLineAsync("Error, " + e.Message).ConfigureAwait(false);
            return 1;
        }

        using (log)
        {
            var settings = new KeyServiceSettings
            {
                Schedule = new KeySchedule(options.GetValue(NameOption)!, options.GetValue(PeriodOption)),
                Cache = cache.ToString(),
                Files = files,
                StatePath = state,
                Reload = options.TryGetValue(ReloadOption, out string? reload) ? new ReloadCommand(reload, TimeSpan.FromSeconds(options.GetValue(ReloadTimeoutOption))) : null,
                ReadOnly = readOnly,
                Refresh = TimeSpan.FromSeconds(options.GetValue(RefreshOption)),
                Retry = TimeSpan.FromSeconds(options.GetValue(RetryOption)),
            };

            var clientOptions = new DistcacheClientOptions
            {
                Address = cache,
                OperationTimeout = TimeSpan.FromMilliseconds(options.GetValue(TimeoutOption)),
                ConnectTimeout = TimeSpan.FromMilliseconds(options.GetValue(TimeoutOption)),
                Tls = tls,
                LoggerFactory = log.Factory,
            };

            DistcacheClient client = DistcacheClient.Connect(clientOptions);
            await using (client.ConfigureAwait(false))
            {
                using var service = new KeyService(settings, client, log);
                if (options.IsSet(OnceFlag))
                {
                    using var cancel = new CancellationTokenSource();
                    using SignalHandlers onceSignals = SignalHandlers.Register(cancel, killable: false);
                    try
                    {
                        return await service.PassAsync(cancel.Token).ConfigureAwait(false) ? 0 : 1;
                    }
                    catch (OperationCanceledException) when (cancel.IsCancellationRequested)
                    {
                        log.Warning("stopped by a signal before the pass was complete");
                        return 1;
                    }
                }

                return await RunServiceAsync(options, service, log).ConfigureAwait(false);
            }
        }
    }

    private static async Task<int> RunServiceAsync(ParseResult options, KeyService service, ToolLog log)
    {
        if (Daemon.IsDaemonChild)
        {
            Daemon.StartSession();
        }

        using var shutdown = new CancellationTokenSource();
        using SignalHandlers signals = SignalHandlers.Register(shutdown, killable: false);
        signals.Hangup += (_, _) =>
        {
            log.ReopenOnHangup();
            service.WakeUp();
        };

        PidFile? pidFile = null;
        if (options.TryGetValue(PidFileOption, out string? pidPath) && (pidFile = PidFile.TryCreate(pidPath, log)) is null)
        {
            return 1;
        }

        using (pidFile)
        {
            await service.RunAsync(() =>
            {
                Daemon.NotifyReady(log);
            }, shutdown.Token).ConfigureAwait(false);
        }

        return 0;
    }

    // Where files go must exist before the first rotation, not be found missing at it.
    private static string? CheckPlaces(KeyFiles files, string state)
    {
        if (files.NginxDirectory is { } nginx && !Directory.Exists(nginx))
        {
            return $"-nginx given an invalid argument: the directory {nginx} does not exist";
        }

        foreach ((string flag, string? path) in new[] { ("-haproxy", files.HAProxyFile), ("-apache", files.ApacheFile), ("-state", state) })
        {
            if (path is null)
            {
                continue;
            }

            if (Directory.Exists(path))
            {
                return $"{flag} given an invalid argument: {path} is a directory, not a file";
            }

            string directory = Path.GetDirectoryName(path) ?? "/";
            if (!Directory.Exists(directory))
            {
                return $"{flag} given an invalid argument: the directory {directory} does not exist";
            }
        }

        return null;
    }

    /// <summary>The link's TLS settings from the -tls-* flags, or null when TLS is not asked for.</summary>
    /// <exception cref="TlsConfigurationException">A file is unusable.</exception>
    /// <exception cref="ArgumentException">The flags do not fit together; the message names them.</exception>
    private static TlsClientSettings? LoadTls(ParseResult options, Address cache)
    {
        options.TryGetValue(TlsCaOption, out string? ca);
        options.TryGetValue(TlsCertOption, out string? cert);
        options.TryGetValue(TlsKeyOption, out string? key);
        options.TryGetValue(TlsNameOption, out string? name);
        return SecurityParsers.ClientTls(ca, cert, key, name, [cache], "cache");
    }

    private static bool FarmName(string text, [MaybeNullWhen(false)] out string value, [NotNullWhen(false)] out string? reason)
    {
        if (KeySchedule.IsValidName(text, out reason))
        {
            value = text;
            return true;
        }

        value = null;
        return false;
    }
}
