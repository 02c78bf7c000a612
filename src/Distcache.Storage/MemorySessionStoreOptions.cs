namespace Distcache.Storage;

/// <summary>Capacity bounds and clock for a <see cref="MemorySessionStore"/>.</summary>
/// <remarks>The store validates and copies these values when it is constructed; changing the options
/// object afterwards has no effect on an existing store.</remarks>
public sealed class MemorySessionStoreOptions
{
    /// <summary>The default <see cref="MaxSessions"/>: 512, 1.5.1's default cache size.</summary>
    public const int DefaultMaxSessions = 512;

    /// <summary>The default <see cref="MaxBytes"/>: 64 MiB.</summary>
    public const long DefaultMaxBytes = 64L * 1024 * 1024;

    /// <summary>The smallest accepted <see cref="MaxBytes"/>: what one session with a maximum-size id and
    /// maximum-size data costs, so that any valid session fits in an empty store.</summary>
    public static long MinMaxBytes => MemorySessionStore.SessionCost(SessionStoreLimits.MaxIdLength, SessionStoreLimits.MaxDataLength);

    /// <summary>
    /// The most live sessions kept; 0 means no count limit. When an add finds the store full it evicts
    /// the sessions due to expire soonest, in a batch of <c>MaxSessions / 30</c> (at least 1, at most 2000),
    /// as 1.5.1 does. 1.5.1 accepts 64 to 60000; any non-negative value is accepted here.
    /// </summary>
    public int MaxSessions { get; set; } = DefaultMaxSessions;

    /// <summary>
    /// The most bytes the live sessions may account for: for each session its id, its data and
    /// <see cref="MemorySessionStore.PerSessionOverhead"/>. An add that would exceed it evicts the
    /// sessions due to expire soonest until it fits. Must be at least <see cref="MinMaxBytes"/>.
    /// The store's slab memory is bounded by about 1.125 times this plus a few MiB.
    /// </summary>
    public long MaxBytes { get; set; } = DefaultMaxBytes;

    /// <summary>The clock that decides expiry (its timestamp is used, so wall-clock jumps do not expire
    /// sessions early). Defaults to <see cref="TimeProvider.System"/>; tests pass a manual clock.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;
}
