using Microsoft.Extensions.Logging;

namespace Distcache.Storage.Redis;

/// <summary>Where a <see cref="RedisSessionStore"/> keeps its sessions and how it talks to Redis.</summary>
/// <remarks>The store copies these values when it is constructed; later changes have no effect on it.</remarks>
public sealed class RedisSessionStoreOptions
{
    /// <summary>The default <see cref="KeyPrefix"/>.</summary>
    public const string DefaultKeyPrefix = "distcache:";

    /// <summary>The Redis servers, as <c>host:port</c>; for a cluster any of its nodes (the rest are discovered).
    /// At least one is required.</summary>
    public IList<string> Endpoints { get; } = [];

    /// <summary>Prepended to every session id to form its key, so that several caches (or other data) can share
    /// one Redis. Default <see cref="DefaultKeyPrefix"/>.</summary>
    public string KeyPrefix { get; set; } = DefaultKeyPrefix;

    /// <summary>The database number (SELECT); Redis Cluster has only database 0. Default 0.</summary>
    public int Database { get; set; }

    /// <summary>The ACL user name, or null for the default user.</summary>
    public string? User { get; set; }

    /// <summary>The password (AUTH), or null for none.</summary>
    public string? Password { get; set; }

    /// <summary>Whether to connect with TLS, validating the server's certificate against the system's trust store.</summary>
    public bool UseTls { get; set; }

    /// <summary>A PEM file with the certificate of the authority that issued Redis's TLS certificate, trusted in place
    /// of the system's authorities (for a private CA); null to use the system's. Requires <see cref="UseTls"/>.</summary>
    public string? TlsCertificateAuthorityFile { get; set; }

    /// <summary>How long one connection attempt may take (the first one holds up the store's construction at most
    /// this long). Default 5 seconds.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long one command may take before the store gives up on it and answers as a failure (a miss,
    /// or a failed ADD). Short, because a TLS handshake waits on the answer. Default 1 second.</summary>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How much longer than a session's timeout Redis keeps its key. Expiry is decided by the deadline stored
    /// with the session (the adding server's clock); Redis's own TTL only collects the key afterwards, so this
    /// margin keeps a key whose deadline a server with a slightly late clock still honours. Default 1 second.
    /// </summary>
    public TimeSpan ExpiryGrace { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How long a session count is reused before <see cref="RedisSessionStore.CountAsync"/> scans the keys again.
    /// Counting reads every key under the prefix, on every primary, so it is not done on every call. Zero counts
    /// on every call. Default 30 seconds.
    /// </summary>
    public TimeSpan CountRefreshInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The clock that stamps and judges deadlines (its wall-clock time, which all servers sharing the
    /// Redis must agree on). Defaults to <see cref="TimeProvider.System"/>; tests pass a manual clock.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Where the store reports Redis failures (rate-limited); null for nowhere.</summary>
    public ILogger? Logger { get; set; }
}
