using System.Globalization;
using Distcache.Hosting;
using Distcache.Storage;
using Distcache.Storage.Redis;
using Microsoft.Extensions.Logging;

namespace Distcache.Apps.Server;

/// <summary>
/// dc_server's <c>-store</c> and <c>-redis*</c> options: where sessions live. <c>memory</c> (the default) is 1.5.1's
/// in-process cache, bounded by <c>-sessions</c> and <c>-memory</c>; <c>redis:HOST:PORT[,HOST:PORT...]</c> keeps
/// them in Redis or a Redis Cluster, whose <c>maxmemory</c> bounds them instead.
/// </summary>
internal static class StoreSelection
{
    private const string RedisScheme = "redis:";

    public static readonly ValueOption<string> StoreOption = new("store", "kind", "where sessions live: memory, or redis:HOST:PORT[,HOST:PORT...] (one Redis, or any nodes of a Redis Cluster)", ValueParsers.NonEmptyText) { DefaultValue = "memory" };
    public static readonly ValueOption<string> PrefixOption = new("redisprefix", "text", "prefix of every session key in Redis", ValueParsers.Text) { DefaultValue = RedisSessionStoreOptions.DefaultKeyPrefix };
    public static readonly ValueOption<uint> DatabaseOption = new("redisdb", "num", "Redis database number (a cluster has only 0)", ValueParsers.UInt32InRange(0, 1_000_000)) { DefaultValue = 0 };
    public static readonly ValueOption<string> UserOption = new("redisuser", "user", "Redis ACL user name", ValueParsers.NonEmptyText);
    public static readonly ValueOption<string> PasswordFileOption = new("redispassfile", "path", "read the Redis password from the first line of this file (kept off the command line)", ValueParsers.NonEmptyText);
    public static readonly FlagOption TlsFlag = new("redistls", "connect to Redis with TLS, checking its certificate against the system's trusted authorities");
    public static readonly ValueOption<string> TlsCaOption = new("redistlsca", "path", "with TLS to Redis (implied), trust the certificate authority in this PEM file instead of the system's", ValueParsers.NonEmptyText);
    public static readonly ValueOption<uint> TimeoutOption = new("redistimeout", "msecs", "longest wait for one Redis command; past it the request is answered as a miss or failed ADD", ValueParsers.UInt32InRange(1, 60_000)) { DefaultValue = 1000 };

    public static IEnumerable<CommandLineOption> Options => [StoreOption, PrefixOption, DatabaseOption, UserOption, PasswordFileOption, TlsFlag, TlsCaOption, TimeoutOption];

    private static IEnumerable<CommandLineOption> RedisOnlyOptions => [PrefixOption, DatabaseOption, UserOption, PasswordFileOption, TlsFlag, TlsCaOption, TimeoutOption];

    /// <summary>
    /// The store the command line asks for, or an error message naming the flag at fault.
    /// <paramref name="memoryStore"/> builds the in-memory store from <c>-sessions</c>/<c>-memory</c>.
    /// </summary>
    public static ISessionStore? Create(ParseResult options, IReadOnlyList<CommandLineOption> memoryOnlyOptions, Func<ISessionStore> memoryStore, ILoggerFactory loggerFactory, out string? error)
    {
        string kind = options.GetValue(StoreOption)!;
        if (kind == "memory")
        {
            foreach (CommandLineOption option in RedisOnlyOptions)
            {
                if (options.IsSet(option))
                {
                    error = $"Error, -{option.Name} applies only to -store {RedisScheme}HOST:PORT";
                    return null;
                }
            }

            error = null;
            return memoryStore();
        }

        if (!kind.StartsWith(RedisScheme, StringComparison.Ordinal))
        {
            error = $"Error, -store given an invalid argument: '{kind}' is neither 'memory' nor '{RedisScheme}HOST:PORT[,HOST:PORT...]'";
            return null;
        }

        // Silently ignoring a bound the operator asked for would be worse than refusing to start.
        foreach (CommandLineOption option in memoryOnlyOptions)
        {
            if (options.IsSet(option))
            {
                error = $"Error, -{option.Name} does not apply to -store {RedisScheme}...: Redis's maxmemory bounds the sessions there";
                return null;
            }
        }

        var redis = new RedisSessionStoreOptions
        {
            KeyPrefix = options.GetValue(PrefixOption)!,
            Database = (int)options.GetValue(DatabaseOption),
            UseTls = options.IsSet(TlsFlag),
            OperationTimeout = TimeSpan.FromMilliseconds(options.GetValue(TimeoutOption)),
            Logger = loggerFactory.CreateLogger("Distcache.Storage.Redis"),
        };
        foreach (string endpoint in kind[RedisScheme.Length..].Split(','))
        {
            if (!IsHostAndPort(endpoint))
            {
                error = $"Error, -store given an invalid argument: '{endpoint}' is not HOST:PORT (port 1-65535)";
                return null;
            }

            redis.Endpoints.Add(endpoint);
        }

        if (options.TryGetValue(TlsCaOption, out string? authority))
        {
            if (!File.Exists(authority))
            {
                error = $"Error, -redistlsca could not read '{authority}': no such file";
                return null;
            }

            redis.UseTls = true;
            redis.TlsCertificateAuthorityFile = authority;
        }

        if (options.TryGetValue(UserOption, out string? user))
        {
            redis.User = user;
        }

        if (options.TryGetValue(PasswordFileOption, out string? passwordFile))
        {
            try
            {
                redis.Password = File.ReadLines(passwordFile).FirstOrDefault()?.TrimEnd('\r') ?? string.Empty;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                error = $"Error, -redispassfile could not read '{passwordFile}': {e.Message}";
                return null;
            }
        }

        error = null;
        var store = new RedisSessionStore(redis);

        // Not fatal: the store answers misses and failed ADDs until Redis is reachable, and connects by itself.
        Console.Error.WriteLine(store.IsConnected
            ? $"Info, sessions in Redis at {string.Join(',', redis.Endpoints)}"
            : $"Warning, Redis at {string.Join(',', redis.Endpoints)} is not reachable yet; answering misses and failed ADDs until it is");
        return store;
    }

    private static bool IsHostAndPort(string endpoint)
    {
        int colon = endpoint.LastIndexOf(':');
        if (colon <= 0)
        {
            return false;
        }

        string host = endpoint[..colon];
        bool bracketed = host.StartsWith('[') && host.EndsWith(']');
        return (bracketed ? host.Length > 2 : !host.Contains(':', StringComparison.Ordinal))
            && ushort.TryParse(endpoint[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out ushort port)
            && port > 0;
    }
}
