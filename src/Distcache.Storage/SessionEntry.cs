namespace Distcache.Storage;

/// <summary>
/// What <see cref="MemorySessionStore"/> keeps per session outside its record: one element of the entries table of
/// <see cref="SessionIndex"/>, through which the index, the expiry order and the record memory find each other.
/// </summary>
/// <remarks>
/// Each structure owns its own fields: <see cref="SessionIndex"/> the hash and the chain, <see cref="ExpiryHeap{TPositions}"/>
/// the heap position, <see cref="SlabRecords"/> where the record is. 40 bytes, a size the store's memory accounting
/// (<see cref="MemorySessionStore.PerSessionOverhead"/>) and its prefetching depend on.
/// </remarks>
internal struct SessionEntry
{
    /// <summary>The keyed hash of the id, compared before the id bytes and reused on rehash.</summary>
    public ulong Hash;

    /// <summary>Timestamp from which the session is invisible.</summary>
    public long ExpiresAt;

    /// <summary>Next entry in the bucket chain (or in the free list); -1 ends it.</summary>
    public int Next;

    /// <summary>Position in the heap; -1 while the entry is free.</summary>
    public int HeapIndex;

    /// <summary>The slab segment holding the record.</summary>
    public int Segment;

    /// <summary>Where the record starts in its segment (at its header).</summary>
    public int Offset;

    /// <summary>The length of the session data.</summary>
    public int DataLength;

    /// <summary>The length of the id (at most <see cref="SessionStoreLimits.MaxIdLength"/>, so a byte).</summary>
    public byte IdLength;
}
