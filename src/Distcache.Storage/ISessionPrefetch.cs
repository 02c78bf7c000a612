namespace Distcache.Storage;

/// <summary>
/// Implemented by a store whose lookups are bound by memory latency, so that a caller holding several requests at
/// once can have their sessions brought towards the CPU together before it looks them up one by one.
/// </summary>
/// <remarks>
/// A lookup in a large in-memory store is a few dependent cache misses (bucket, entry, record), each of them the
/// full latency of main memory. A connection that pipelines requests delivers many lookups in one read; touching
/// them all first lets those misses overlap instead of following one another. A hint only: it changes no state,
/// may be skipped, and ids it does not find (or that are invalid) are simply ignored.
/// </remarks>
public interface ISessionPrefetch
{
    /// <summary>Starts bringing the sessions with these ids into the CPU cache; the lookups should follow at once.</summary>
    /// <param name="ids">The ids about to be looked up, in the order they will be.</param>
    void Prefetch(ReadOnlySpan<ReadOnlyMemory<byte>> ids);
}
