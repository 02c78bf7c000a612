using System.Diagnostics.CodeAnalysis;
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

    public static readonly ValueOption<string> StoreOption = new("store", "kind", "where sessions live: memory, or redis:HOST:PORT[,HOST:PORT...] (one Redis, or any nodes of a Redis Cluster)", ParseStore) { DefaultValue = "memory" };
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
    /// Store flags that do not fit together (a Redis flag with the memory store, a memory bound with Redis), as the
    /// problem to report after "Error, "; null when they fit. <paramref name="memoryOnlyOptions"/> are
    /// <c>-sessions</c>/<c>-memory</c>.
    /// </summary>
    public static string? Problem(ParseResult options, IReadOnlyList<CommandLineOption> memoryOnlyOptions)
    {
        if (options.GetValue(StoreOption) == "memory")
        {
            return RedisOnlyOptions.FirstOrDefault(options.IsSet) is { } redisOnly
                ? $"-{redisOnly.Name} applies only to -store {RedisScheme}HOST:PORT"
                : null;
        }

        // Silently ignoring a bound the operator asked for would be worse than refusing to start.
        return memoryOnlyOptions.FirstOrDefault(options.IsSet) is { } memoryOnly
            ? $"-{memoryOnly.Name} does not apply to -store {RedisScheme}...: Redis's maxmemory bounds the sessions there"
            : null;
    }

    /// <summary>
    /// The store the command line asks for (checked by <see cref="Problem"/> first), or why it cannot be had: a
    /// message to follow "Error, ", naming the flag at fault. <paramref name="memoryStore"/> builds the in-memory
    /// store from <c>-sessions</c>/<c>-memory</c>.
    /// </summary>
    public static ISessionStore? Create(ParseResult options, Func<ISessionStore> memoryStore, ILoggerFactory loggerFactory, out string? error)
    {
        string kind = options.GetValue(StoreOption)!;
        if (kind == "memory")
        {
            error = null;
            return memoryStore();
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
            redis.Endpoints.Add(endpoint);
        }

        if (options.TryGetValue(TlsCaOption, out string? authority))
        {
            if (!File.Exists(authority))
            {
                error = $"-redistlsca could not read '{authority}': no such file";
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
                error = $"-redispassfile could not read '{passwordFile}': {e.Message}";
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

    /// <summary>-store's value: <c>memory</c>, or <c>redis:</c> and one or more HOST:PORT separated by commas.</summary>
    private static bool ParseStore(string text, [MaybeNullWhen(false)] out string value, [NotNullWhen(false)] out string? reason)
    {
        value = null;
        if (text != "memory" && !text.StartsWith(RedisScheme, StringComparison.Ordinal))
        {
            reason = $"'{text}' is neither 'memory' nor '{RedisScheme}HOST:PORT[,HOST:PORT...]'";
            return false;
        }

        if (text != "memory" && text[RedisScheme.Length..].Split(',').FirstOrDefault(endpoint => !IsHostAndPort(endpoint)) is { } bad)
        {
            reason = $"'{bad}' is not HOST:PORT (port 1-65535)";
            return false;
        }

        value = text;
        reason = null;
        return true;
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
