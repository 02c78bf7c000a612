using System.Numerics;
using System.Runtime.CompilerServices;

namespace Distcache.Storage;

/// <summary>
/// The hash index from session id to entry number: the table of <see cref="SessionEntry"/> with its free list, and
/// the bucket chains over it.
/// </summary>
/// <remarks>
/// <para>An entry is taken with <see cref="Allocate"/>, filled by its owner, made findable with <see cref="Link"/>
/// and given back with <see cref="Remove"/>. The index reads ids from their records (<see cref="SlabRecords"/>) only
/// to tell apart entries whose hashes are equal.</para>
/// <para>Not thread-safe: the store calls it under its lock.</para>
/// </remarks>
internal sealed class SessionIndex : IRecordOwners
{
    private readonly int _limit;

    // Free entries are chained through SessionEntry.Next and have HeapIndex == -1. Every table is chunked, so
    // growing never copies what is stored (see ChunkedArray).
    private ChunkedArray<SessionEntry> _entries;
    private int _entryHighWater;
    private int _freeEntry = -1;

    // _buckets holds the first entry of each chain (-1 for none), chained through SessionEntry.Next.
    // Linear hashing: the table has 2^_level + _split buckets. A hash addresses bucket h mod 2^_level, or
    // h mod 2^(_level+1) if that bucket has already been split this round. Each link that takes the count past
    // the bucket count splits one bucket (rehashing one short chain), so the table grows a bucket at a time
    // and never stops the world to rehash, as a doubling table must.
    private ChunkedArray<int> _buckets;
    private int _level;
    private int _split;
    private int _count;

    /// <summary>Creates an empty index.</summary>
    /// <param name="initialCapacity">The entries (and, rounded up to a power of two, buckets) to make room for at once.</param>
    /// <param name="limit">The most entries the owner will ever hold live (positive), so that the first chunk of
    /// the entries table does not double past it.</param>
    public SessionIndex(int initialCapacity, int limit)
    {
        _limit = limit;
        _entries = new ChunkedArray<SessionEntry>(initialCapacity, default);
        _level = BitOperations.Log2(BitOperations.RoundUpToPowerOf2((uint)initialCapacity));
        _buckets = new ChunkedArray<int>(1 << _level, -1);
    }

    /// <summary>The bytes of the table per entry: the entry and its share of the buckets (at most one bucket per
    /// entry, see <see cref="BucketCount"/>).</summary>
    public static int BytesPerEntry => Unsafe.SizeOf<SessionEntry>() + sizeof(int);

    /// <summary>The number of linked (findable) entries.</summary>
    public int Count => _count;

    /// <summary>The number of hash buckets (one per linked entry at most, grown a bucket at a time).</summary>
    public int BucketCount => (1 << _level) + _split;

    /// <summary>The bytes held by the entry and bucket tables.</summary>
    public long Bytes => _entries.Bytes + _buckets.Bytes;

    /// <summary>Entry <paramref name="index"/>, by reference.</summary>
    /// <param name="index">An entry number from <see cref="Allocate"/>.</param>
    public ref SessionEntry this[int index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _entries[index];
    }

    /// <summary>Takes a free entry, not yet findable; its fields hold whatever its last use left.</summary>
    /// <returns>The entry's number.</returns>
    public int Allocate()
    {
        if (_freeEntry >= 0)
        {
            int index = _freeEntry;
            _freeEntry = _entries[index].Next;
            return index;
        }

        if (_entryHighWater == _entries.Capacity)
        {
            // Only reached with every entry live, and the owner's eviction keeps the live count under its limit, so
            // a bounded store's first chunk never grows past that limit.
            _entries.Grow(_entryHighWater + 1, _limit, default);
        }

        return _entryHighWater++;
    }

    /// <summary>Makes an allocated entry findable under <paramref name="hash"/>; its record must already be written.</summary>
    /// <param name="index">The entry, from <see cref="Allocate"/>.</param>
    /// <param name="hash">The keyed hash of its id.</param>
    public void Link(int index, ulong hash)
    {
        ref SessionEntry entry = ref _entries[index];
        entry.Hash = hash;
        ref int bucket = ref _buckets[BucketOf(hash)];
        entry.Next = bucket;
        bucket = index;

        if (++_count > BucketCount)
        {
            SplitBucket();
        }
    }

    /// <summary>Finds the linked entry whose id is <paramref name="id"/>, expired or not.</summary>
    /// <param name="id">The id.</param>
    /// <param name="hash">The keyed hash of <paramref name="id"/>.</param>
    /// <param name="records">Where the entries' ids are.</param>
    /// <returns>The entry's number, or -1.</returns>
    public int Find(ReadOnlySpan<byte> id, ulong hash, SlabRecords records)
    {
        int index = _buckets[BucketOf(hash)];
        while (index >= 0)
        {
            ref SessionEntry entry = ref _entries[index];
            if (entry.Hash == hash && entry.IdLength == id.Length && records.Id(entry).SequenceEqual(id))
            {
                return index;
            }

            index = entry.Next;
        }

        return -1;
    }

    /// <summary>Unlinks an entry from its chain and frees it for <see cref="Allocate"/>.</summary>
    /// <param name="index">A linked entry.</param>
    public void Remove(int index)
    {
        ref SessionEntry entry = ref _entries[index];

        ref int link = ref _buckets[BucketOf(entry.Hash)];
        while (link != index)
        {
            link = ref _entries[link].Next;
        }

        link = entry.Next;
        _count--;

        entry.HeapIndex = -1;
        entry.Next = _freeEntry;
        _freeEntry = index;
    }

    /// <summary>The bucket <paramref name="hash"/> addresses now (a split moves half of a bucket's hashes on).</summary>
    /// <param name="hash">A keyed hash.</param>
    /// <returns>A bucket number below <see cref="BucketCount"/>.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int BucketOf(ulong hash)
    {
        int bucket = (int)hash & ((1 << _level) - 1);
        return bucket < _split ? (int)hash & ((2 << _level) - 1) : bucket;
    }

    /// <summary>The first entry of a bucket's chain (-1 for none), by reference, so that it can be prefetched.</summary>
    /// <param name="bucket">A bucket number from <see cref="BucketOf"/>.</param>
    /// <returns>The slot holding the chain's first entry.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref int ChainHead(int bucket) => ref _buckets[bucket];

    /// <summary>Drops every entry and both tables.</summary>
    public void Clear()
    {
        _entries.Clear();
        _buckets.Clear();
        _count = 0;
    }

    /// <summary>Adds one bucket: the chain of bucket <see cref="_split"/> is divided between it and its
    /// new partner 2^level higher, by the next bit of each entry's stored hash (ids are not read again).</summary>
    private void SplitBucket()
    {
        int low = _split;
        int high = low + (1 << _level);
        if (high < 0 || _level >= 30)
        {
            return; // 2^30 buckets is as far as an int index goes; chains simply get longer beyond that.
        }

        if (high >= _buckets.Capacity)
        {
            _buckets.Grow(high + 1, int.MaxValue, -1);
        }

        int mask = (2 << _level) - 1;
        int index = _buckets[low];
        int lowHead = -1;
        int highHead = -1;
        while (index >= 0)
        {
            ref SessionEntry entry = ref _entries[index];
            int next = entry.Next;
            if (((int)entry.Hash & mask) == low)
            {
                entry.Next = lowHead;
                lowHead = index;
            }
            else
            {
                entry.Next = highHead;
                highHead = index;
            }

            index = next;
        }

        _buckets[low] = lowHead;
        _buckets[high] = highHead;
        if (++_split == 1 << _level)
        {
            _level++;
            _split = 0;
        }
    }

    /// <summary>Records heap positions in the entries themselves, so that removing a session found by id can take it
    /// out of the expiry order directly.</summary>
    /// <param name="index">The index whose entries the heap orders.</param>
    internal readonly struct HeapPositions(SessionIndex index) : IHeapPositions
    {
        /// <inheritdoc/>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Placed(int item, int position) => index._entries[item].HeapIndex = position;
    }
}
