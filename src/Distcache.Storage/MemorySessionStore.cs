using System.Buffers.Binary;
using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using System.Security.Cryptography;

namespace Distcache.Storage;

/// <summary>
/// The in-memory session store: a keyed hash table over struct arrays, an expiry heap, and session
/// bytes kept in 2 MiB slab segments of native memory on huge pages (<see cref="SlabMemory"/>), so that a
/// million sessions cost the garbage collector a few hundred objects, not a million, and a lookup among
/// them does not also miss the TLB.
/// </summary>
/// <remarks>
/// <para>Every operation completes synchronously, is O(1) expected (O(log n) where the expiry heap
/// moves) and allocates nothing once the store has grown to its working size.</para>
/// <para>Expired sessions are invisible at once and reclaimed lazily: when a lookup meets one, and a
/// few per <see cref="AddAsync"/>; nothing ever scans the whole store.</para>
/// <para>Capacity: when an add finds <see cref="MaxSessions"/> live sessions it evicts a batch of the
/// sessions due to expire soonest (1.5.1's policy); when it would take <see cref="BytesUsed"/> over
/// <see cref="MaxBytes"/> it evicts soonest-expiring sessions until the new one fits. A valid add is
/// never refused for lack of room.</para>
/// <para>Thread-safe: one lock guards the store, because eviction must be globally
/// soonest-expiry-first. A lookup holds it for well under a microsecond; the add that finds the store
/// full holds it while it evicts its batch (up to 2000 sessions, about a millisecond at a million
/// stored sessions), which is the price of 1.5.1's amortised eviction.</para>
/// </remarks>
public sealed class MemorySessionStore : ISessionStore, ISessionPrefetch
{
    /// <summary>Slab segment size: one huge page of <see cref="SlabMemory"/>. Large enough that a maximum-size
    /// record is under a ninth of it (the compaction bound below relies on that) and that a million sessions
    /// need about five hundred.</summary>
    internal const int SegmentSize = SlabMemory.BlockSize;

    // Each record in a segment is [int32 header][id][data]. A live record's header is the index of its
    // entry, which lets compaction find and update the owner; a dead record's header is minus its
    // length, which lets compaction skip it.
    private const int RecordHeaderSize = sizeof(int);
    private const int MaxRecordSize = RecordHeaderSize + SessionStoreLimits.MaxIdLength + SessionStoreLimits.MaxDataLength;

    // 1.5.1 evicts MaxSessions/30 sessions at a time; its MaxSessions is at most 60000, so 2000 is the
    // largest batch it ever evicts, and capping there keeps a huge cache from stalling on one add.
    private const int MaxEvictionBatch = 2000;

    // Reclaiming two expired sessions per add means reclamation keeps pace with insertion, so the
    // backlog of expired-but-held sessions only grows while nobody adds.
    private const int ReclaimPerAdd = 2;

    // Count and BytesUsed reclaim the whole backlog; they release the lock after this many so a large
    // backlog does not stall the connections.
    private const int ReclaimChunk = 4096;

    private const int InitialCapacity = 1024;

    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly long _frequency;
    private readonly ulong _key0;
    private readonly ulong _key1;
    private readonly int _maxSessions;
    private readonly long _maxBytes;
    private readonly int _evictionBatch;
    private readonly int _segmentBudget;

    // Hash table: _buckets holds the first entry of each chain (-1 for none), chained through
    // Entry.Next. Free entries are chained through Entry.Next too and have HeapIndex == -1.
    // Every table is chunked, so growing never copies what is stored (see ChunkedArray).
    private ChunkedArray<Entry> _entries;
    private int _entryHighWater;
    private int _freeEntry = -1;

    // Linear hashing: the table has 2^_level + _split buckets. A hash addresses bucket h mod 2^_level, or
    // h mod 2^(_level+1) if that bucket has already been split this round. Each add that takes the count past
    // the bucket count splits one bucket (rehashing one short chain), so the table grows a bucket at a time
    // and never stops the world to rehash, as a doubling table must.
    private ChunkedArray<int> _buckets;
    private int _level;
    private int _split;

    // Expiry order: a 4-ary min-heap on ExpiresAt whose nodes carry the key, so sifting reads
    // contiguous memory; every stored entry is in it exactly once, so its size is the stored count.
    private ChunkedArray<HeapNode> _heap;
    private int _count;
    private long _bytesUsed;

    // Slab segments, filled log-style at _head. _spare is kept empty as the compaction target.
    private readonly SlabMemory _segments = new();
    private int[] _segmentLive = new int[4];
    private int[] _segmentEnd = new int[4];
    private int[] _freeSegments = new int[4];
    private int _freeSegmentCount;
    private int _head = -1;
    private int _headOffset;
    private int _spare = -1;

    private long _evictedByCount;
    private long _evictedByBytes;
    private long _expired;
    private long _compactions;
    private bool _disposed;

    /// <summary>Creates an empty store.</summary>
    /// <param name="options">Capacity bounds and clock; null means the defaults (512 sessions, 64 MiB, the system clock).</param>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="MemorySessionStoreOptions.MaxSessions"/> is negative,
    /// <see cref="MemorySessionStoreOptions.MaxBytes"/> is below <see cref="MemorySessionStoreOptions.MinMaxBytes"/>,
    /// or the clock's timestamp frequency is not positive.</exception>
    /// <exception cref="ArgumentException"><see cref="MemorySessionStoreOptions.TimeProvider"/> is null.</exception>
    public MemorySessionStore(MemorySessionStoreOptions? options = null)
    {
        options ??= new MemorySessionStoreOptions();
        if (options.MaxSessions < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxSessions, "MaxSessions must be 0 (no limit) or positive.");
        }

        if (options.MaxBytes < MemorySessionStoreOptions.MinMaxBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxBytes,
                $"MaxBytes must be at least {MemorySessionStoreOptions.MinMaxBytes}, the cost of one maximum-size session.");
        }

        _time = options.TimeProvider ?? throw new ArgumentException("TimeProvider must not be null.", nameof(options));
        _frequency = _time.TimestampFrequency;
        if (_frequency <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), _frequency, "The TimeProvider's TimestampFrequency must be positive.");
        }

        _maxSessions = options.MaxSessions;
        _maxBytes = options.MaxBytes;
        _evictionBatch = Math.Clamp(_maxSessions / 30, 1, MaxEvictionBatch);

        // Compaction copies the emptiest segment into the spare. With this many segments in use and at
        // most MaxBytes of live records, the emptiest holds at most 8/9 of a segment, so compacting it
        // frees at least a ninth (233 KiB), more than the largest record: an add always finds room.
        _segmentBudget = (int)Math.Min(int.MaxValue / 2, (_maxBytes / SegmentSize) + (_maxBytes / (8L * SegmentSize)) + 2);
        Debug.Assert(MaxRecordSize <= SegmentSize / 9, "The segment budget argument needs a record to fit in a ninth of a segment.");

        Span<byte> key = stackalloc byte[16];
        RandomNumberGenerator.Fill(key);
        _key0 = BinaryPrimitives.ReadUInt64LittleEndian(key);
        _key1 = BinaryPrimitives.ReadUInt64LittleEndian(key[8..]);

        int capacity = _maxSessions > 0 ? Math.Min(_maxSessions, InitialCapacity) : InitialCapacity;
        _entries = new ChunkedArray<Entry>(capacity, default);
        _heap = new ChunkedArray<HeapNode>(capacity, default);
        _level = BitOperations.Log2(BitOperations.RoundUpToPowerOf2((uint)capacity));
        _buckets = new ChunkedArray<int>(1 << _level, -1);
    }

    /// <summary>Bytes counted against <see cref="MaxBytes"/> for each session on top of its id and data:
    /// its table entry, heap node, bucket slot and record header.</summary>
    public static int PerSessionOverhead { get; } = Unsafe.SizeOf<Entry>() + Unsafe.SizeOf<HeapNode>() + sizeof(int) + RecordHeaderSize;

    /// <summary>The session count bound this store was created with (0 = none).</summary>
    public int MaxSessions => _maxSessions;

    /// <summary>The byte bound this store was created with.</summary>
    public long MaxBytes => _maxBytes;

    /// <summary>The number of live sessions. Reclaims any expired sessions still held, so the first read
    /// after a long idle period costs time proportional to what expired meanwhile.</summary>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public int Count => ReadAfterReclaiming(static store => store._count);

    /// <summary>The bytes the live sessions account for (ids, data and <see cref="PerSessionOverhead"/> each);
    /// never more than <see cref="MaxBytes"/>. Reclaims expired sessions first, like <see cref="Count"/>.</summary>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public long BytesUsed => ReadAfterReclaiming(static store => store._bytesUsed);

    // Reclaims expired sessions in chunks, releasing the lock between chunks so that a reader after a long idle
    // period does not stall the server's connections, then reads under the lock once nothing expired is left.
    private T ReadAfterReclaiming<T>(Func<MemorySessionStore, T> read)
    {
        while (true)
        {
            lock (_lock)
            {
                ThrowIfDisposed();
                if (ReclaimExpired(_time.GetTimestamp(), ReclaimChunk) < ReclaimChunk)
                {
                    return read(this);
                }
            }
        }
    }

    /// <summary>The bytes of slab memory allocated for session records (live, dead and free space);
    /// at most about 1.125 × <see cref="MaxBytes"/> plus three segments.</summary>
    public long SlabBytes
    {
        get
        {
            lock (_lock)
            {
                return (long)_segments.Count * SegmentSize;
            }
        }
    }

    /// <summary>Live sessions evicted because an add found the store at <see cref="MaxSessions"/>.</summary>
    public long EvictedByCount => Interlocked.Read(ref _evictedByCount);

    /// <summary>Live sessions evicted because an add would have exceeded <see cref="MaxBytes"/>.</summary>
    public long EvictedByBytes => Interlocked.Read(ref _evictedByBytes);

    /// <summary>Expired sessions reclaimed (sessions added with a zero timeout are never stored and not counted).</summary>
    public long Expired => Interlocked.Read(ref _expired);

    /// <summary>Slab segments compacted to keep fragmented slab memory within its bound.</summary>
    public long Compactions => Interlocked.Read(ref _compactions);

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The id or data is outside <see cref="SessionStoreLimits"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative.</exception>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public ValueTask<AddResult> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ReadOnlySpan<byte> idSpan = id.Span;
        ReadOnlySpan<byte> dataSpan = data.Span;
        SessionStoreLimits.ValidateId(idSpan, nameof(id));
        SessionStoreLimits.ValidateData(dataSpan, nameof(data));
        SessionStoreLimits.ValidateTimeout(timeout, nameof(timeout));
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<AddResult>(cancellationToken);
        }

        ulong hash = HashId(idSpan);
        long delta = ToTimestampDelta(timeout);
        if (_segments.NeedsReserve)
        {
            // Outside the lock: faulting a new segment in can take milliseconds (see SlabMemory).
            _segments.PrepareReserve();
        }

        AddResult result;
        lock (_lock)
        {
            ThrowIfDisposed();
            result = AddLocked(idSpan, dataSpan, hash, delta);
        }

        return new ValueTask<AddResult>(result);
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The id is outside <see cref="SessionStoreLimits"/>.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="reader"/> is null.</exception>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public ValueTask<bool> GetAsync<TState>(ReadOnlyMemory<byte> id, SessionDataReader<TState> reader, TState state, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ReadOnlySpan<byte> idSpan = id.Span;
        SessionStoreLimits.ValidateId(idSpan, nameof(id));
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<bool>(cancellationToken);
        }

        ulong hash = HashId(idSpan);
        lock (_lock)
        {
            ThrowIfDisposed();
            int index = FindLive(idSpan, hash, _time.GetTimestamp());
            if (index < 0)
            {
                return new ValueTask<bool>(false);
            }

            ref Entry entry = ref _entries[index];
            reader(_segments[entry.Segment].Slice(entry.Offset + RecordHeaderSize + entry.IdLength, entry.DataLength), state);
        }

        return new ValueTask<bool>(true);
    }

    /// <inheritdoc/>
    /// <remarks>Passes over the ids, each issuing one independent memory access per id: the buckets, then the
    /// entries the buckets name, then the records of the entries whose id matches and, for the others, the next
    /// entry of their chain. Each pass waits for about one memory latency instead of one per id. Ids beyond the
    /// first <see cref="MaxPrefetch"/> are left alone. Does nothing on processors without a prefetch instruction
    /// .NET exposes (only x86 is used here).</remarks>
    public void Prefetch(ReadOnlySpan<ReadOnlyMemory<byte>> ids)
    {
        if (!Sse.IsSupported || ids.Length == 0)
        {
            return;
        }

        int count = Math.Min(ids.Length, MaxPrefetch);
        Span<ulong> hashes = stackalloc ulong[count];
        Span<int> found = stackalloc int[count];
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> id = ids[i].Span;
            hashes[i] = id.Length is >= 1 and <= SessionStoreLimits.MaxIdLength ? HashId(id) : 0;
        }

        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            // 'found' holds each id's bucket after the first pass, then the chain entry to look at next (-1 once
            // there is nothing more to fetch for that id).
            for (int i = 0; i < count; i++)
            {
                found[i] = BucketOf(hashes[i]);
                PrefetchLine(ref _buckets[found[i]]);
            }

            for (int i = 0; i < count; i++)
            {
                int index = _buckets[found[i]];
                found[i] = index;
                if (index >= 0)
                {
                    PrefetchEntry(index);
                }
            }

            // Then down the chains, one step per pass for every id at once. With one session per bucket on
            // average only 1 - 1/e (63%) of the sessions are first in their chain, and following only the head
            // left the other 37% to two misses in a row during the GET itself.
            for (int step = 0; step < MaxPrefetchChainSteps; step++)
            {
                bool more = false;
                for (int i = 0; i < count; i++)
                {
                    int index = found[i];
                    if (index < 0)
                    {
                        continue;
                    }

                    ref Entry entry = ref _entries[index];
                    if (entry.Hash == hashes[i] && entry.HeapIndex >= 0)
                    {
                        // The whole record, not only its header and id: the GET copies all of it out, and fetching
                        // it here beat leaving the data to the hardware prefetcher by 13% at a million sessions
                        // (docs/performance.md), at no cost measurable when everything is cached.
                        ref byte record = ref _segments[entry.Segment][entry.Offset];
                        int length = RecordHeaderSize + entry.IdLength + entry.DataLength;
                        for (int line = 0; line < length; line += 64)
                        {
                            PrefetchLine(ref Unsafe.Add(ref record, line));
                        }

                        PrefetchLine(ref Unsafe.Add(ref record, length - 1));
                        found[i] = -1;
                    }
                    else
                    {
                        index = entry.Next;
                        found[i] = index;
                        if (index >= 0)
                        {
                            PrefetchEntry(index);
                            more = true;
                        }
                    }
                }

                if (!more)
                {
                    break;
                }
            }
        }
    }

    /// <summary>How far down a chain <see cref="Prefetch"/> follows an id before giving up on it: at one session
    /// per bucket, about one session in 200 sits deeper than the fourth entry of its chain.</summary>
    private const int MaxPrefetchChainSteps = 4;

    /// <summary>Prefetches an entry's first and last bytes: a 40-byte entry straddles two cache lines three times
    /// in eight, and the fields read last (where its record is) are at its end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PrefetchEntry(int index)
    {
        ref Entry entry = ref _entries[index];
        PrefetchLine(ref entry);
        PrefetchLine(ref Unsafe.Add(ref Unsafe.As<Entry, byte>(ref entry), Unsafe.SizeOf<Entry>() - 1));
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The id is outside <see cref="SessionStoreLimits"/>.</exception>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        ReadOnlySpan<byte> idSpan = id.Span;
        SessionStoreLimits.ValidateId(idSpan, nameof(id));
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<bool>(cancellationToken);
        }

        ulong hash = HashId(idSpan);
        lock (_lock)
        {
            ThrowIfDisposed();
            int index = FindLive(idSpan, hash, _time.GetTimestamp());
            if (index < 0)
            {
                return new ValueTask<bool>(false);
            }

            RemoveEntry(index);
        }

        return new ValueTask<bool>(true);
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The id is outside <see cref="SessionStoreLimits"/>.</exception>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        ReadOnlySpan<byte> idSpan = id.Span;
        SessionStoreLimits.ValidateId(idSpan, nameof(id));
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<bool>(cancellationToken);
        }

        ulong hash = HashId(idSpan);
        bool found;
        lock (_lock)
        {
            ThrowIfDisposed();
            found = FindLive(idSpan, hash, _time.GetTimestamp()) >= 0;
        }

        return new ValueTask<bool>(found);
    }

    /// <inheritdoc/>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public ValueTask<long> CountAsync(CancellationToken cancellationToken = default) =>
        cancellationToken.IsCancellationRequested ? ValueTask.FromCanceled<long>(cancellationToken) : new ValueTask<long>(Count);

    /// <summary>Drops every session and the slab memory; later calls throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _segments.Dispose();
            _entries.Clear();
            _heap.Clear();
            _buckets.Clear();
            _count = 0;
            _bytesUsed = 0;
        }
    }

    /// <summary>The most ids one <see cref="Prefetch"/> call brings in: 32 sessions of 1 KB already fill a
    /// level-1 data cache, and more would evict the first ones before they are used.</summary>
    internal const int MaxPrefetch = 32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PrefetchLine<T>(ref T location)
    {
        // A hint: it never faults, and if the GC moves a table between taking the address and the prefetch, the
        // only cost is a useless fetch.
        Sse.Prefetch0(Unsafe.AsPointer(ref location));
    }

    /// <summary>What a session counts against <see cref="MaxBytes"/>.</summary>
    internal static long SessionCost(int idLength, int dataLength) => (long)idLength + dataLength + PerSessionOverhead;

    /// <summary>The keyed hash of an id; differs between stores because each has its own random key.</summary>
    internal ulong HashId(ReadOnlySpan<byte> id) => SipHash.Hash13(_key0, _key1, id);

    /// <summary>The bytes held by the entry, heap and bucket tables.</summary>
    internal long TableBytes
    {
        get
        {
            lock (_lock)
            {
                return _entries.Bytes + _heap.Bytes + _buckets.Bytes;
            }
        }
    }

    /// <summary>The number of hash buckets (one per stored session at most, grown a bucket at a time).</summary>
    internal int BucketCount
    {
        get
        {
            lock (_lock)
            {
                return (1 << _level) + _split;
            }
        }
    }

    private AddResult AddLocked(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, ulong hash, long delta)
    {
        long now = _time.GetTimestamp();
        int existing = Find(id, hash);
        if (existing >= 0)
        {
            if (_entries[existing].ExpiresAt > now)
            {
                return AddResult.AlreadyExists;
            }

            RemoveEntry(existing);
            Interlocked.Increment(ref _expired);
        }

        long expiresAt = now + delta;
        if (expiresAt < now)
        {
            // The delta is never negative, so a wrap means a timeout beyond the timestamp range: never expires.
            expiresAt = long.MaxValue;
        }

        if (expiresAt <= now)
        {
            // A zero timeout: 1.5.1 reports success, and a session nobody can ever see need not be kept.
            return AddResult.Stored;
        }

        ReclaimExpired(now, ReclaimPerAdd);

        if (_maxSessions > 0 && _count >= _maxSessions)
        {
            // Expired sessions are not counted, so dropping one of them is enough to make room; only a
            // store full of live sessions evicts.
            while (_count >= _maxSessions && _heap[0].ExpiresAt <= now)
            {
                RemoveEntry(_heap[0].Entry);
                Interlocked.Increment(ref _expired);
            }

            if (_count >= _maxSessions)
            {
                for (int i = 0; i < _evictionBatch && _count > 0; i++)
                {
                    RemoveEntry(_heap[0].Entry);
                    Interlocked.Increment(ref _evictedByCount);
                }
            }
        }

        long cost = SessionCost(id.Length, data.Length);
        while (_bytesUsed + cost > _maxBytes && _count > 0)
        {
            bool expired = _heap[0].ExpiresAt <= now;
            RemoveEntry(_heap[0].Entry);
            Interlocked.Increment(ref expired ? ref _expired : ref _evictedByBytes);
        }

        Insert(id, data, hash, expiresAt, cost);
        return AddResult.Stored;
    }

    private void Insert(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, ulong hash, long expiresAt, long cost)
    {
        int index = AllocateEntry();
        int length = RecordHeaderSize + id.Length + data.Length;
        int segment = AllocateRecord(length, out int offset);

        Span<byte> record = _segments[segment].Slice(offset, length);
        BinaryPrimitives.WriteInt32LittleEndian(record, index);
        id.CopyTo(record[RecordHeaderSize..]);
        data.CopyTo(record[(RecordHeaderSize + id.Length)..]);

        ref Entry entry = ref _entries[index];
        entry.Hash = hash;
        entry.ExpiresAt = expiresAt;
        entry.Segment = segment;
        entry.Offset = offset;
        entry.IdLength = (byte)id.Length;
        entry.DataLength = data.Length;

        ref int bucket = ref _buckets[BucketOf(hash)];
        entry.Next = bucket;
        bucket = index;

        if (_count == _heap.Capacity)
        {
            _heap.Grow(_count + 1, _maxSessions > 0 ? _maxSessions : int.MaxValue, default);
        }

        SiftUp(_count++, new HeapNode { ExpiresAt = expiresAt, Entry = index });
        _bytesUsed += cost;

        if (_count > (1 << _level) + _split)
        {
            SplitBucket();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int BucketOf(ulong hash)
    {
        int bucket = (int)hash & ((1 << _level) - 1);
        return bucket < _split ? (int)hash & ((2 << _level) - 1) : bucket;
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
            ref Entry entry = ref _entries[index];
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

    private int Find(ReadOnlySpan<byte> id, ulong hash)
    {
        int index = _buckets[BucketOf(hash)];
        while (index >= 0)
        {
            ref Entry entry = ref _entries[index];
            if (entry.Hash == hash && entry.IdLength == id.Length
                && _segments[entry.Segment].Slice(entry.Offset + RecordHeaderSize, entry.IdLength).SequenceEqual(id))
            {
                return index;
            }

            index = entry.Next;
        }

        return -1;
    }

    /// <summary>Finds a live session; an expired one met on the way is reclaimed and not returned.</summary>
    private int FindLive(ReadOnlySpan<byte> id, ulong hash, long now)
    {
        int index = Find(id, hash);
        if (index >= 0 && _entries[index].ExpiresAt <= now)
        {
            RemoveEntry(index);
            Interlocked.Increment(ref _expired);
            return -1;
        }

        return index;
    }

    /// <summary>Pops expired sessions off the heap top, at most <paramref name="limit"/>; returns how many.</summary>
    private int ReclaimExpired(long now, int limit)
    {
        int reclaimed = 0;
        while (reclaimed < limit && _count > 0 && _heap[0].ExpiresAt <= now)
        {
            RemoveEntry(_heap[0].Entry);
            reclaimed++;
        }

        if (reclaimed > 0)
        {
            Interlocked.Add(ref _expired, reclaimed);
        }

        return reclaimed;
    }

    /// <summary>Unlinks an entry from its chain and the heap, frees its record and recycles it.</summary>
    private void RemoveEntry(int index)
    {
        ref Entry entry = ref _entries[index];

        ref int link = ref _buckets[BucketOf(entry.Hash)];
        while (link != index)
        {
            link = ref _entries[link].Next;
        }

        link = entry.Next;

        HeapRemoveAt(entry.HeapIndex);
        FreeRecord(entry.Segment, entry.Offset, RecordHeaderSize + entry.IdLength + entry.DataLength);
        _bytesUsed -= SessionCost(entry.IdLength, entry.DataLength);

        entry.HeapIndex = -1;
        entry.Next = _freeEntry;
        _freeEntry = index;
    }

    private int AllocateEntry()
    {
        if (_freeEntry >= 0)
        {
            int index = _freeEntry;
            _freeEntry = _entries[index].Next;
            return index;
        }

        if (_entryHighWater == _entries.Capacity)
        {
            // Only reached with every entry live, and eviction keeps the live count under MaxSessions, so a
            // bounded store's first chunk never grows past MaxSessions.
            _entries.Grow(_entryHighWater + 1, _maxSessions > 0 ? _maxSessions : int.MaxValue, default);
        }

        return _entryHighWater++;
    }

    // ---- Expiry heap (4-ary: half the depth of a binary heap, and a node's children are adjacent) ----

    private void SiftUp(int position, HeapNode node)
    {
        while (position > 0)
        {
            int parent = (position - 1) >> 2;
            HeapNode above = _heap[parent];
            if (above.ExpiresAt <= node.ExpiresAt)
            {
                break;
            }

            _heap[position] = above;
            _entries[above.Entry].HeapIndex = position;
            position = parent;
        }

        _heap[position] = node;
        _entries[node.Entry].HeapIndex = position;
    }

    private void SiftDown(int position, HeapNode node)
    {
        int count = _count;
        while (true)
        {
            long first = (4L * position) + 1;
            if (first >= count)
            {
                break;
            }

            int best = (int)first;
            long bestKey = _heap[best].ExpiresAt;
            int end = (int)Math.Min(first + 4, count);
            for (int child = best + 1; child < end; child++)
            {
                long key = _heap[child].ExpiresAt;
                if (key < bestKey)
                {
                    best = child;
                    bestKey = key;
                }
            }

            if (bestKey >= node.ExpiresAt)
            {
                break;
            }

            HeapNode moved = _heap[best];
            _heap[position] = moved;
            _entries[moved.Entry].HeapIndex = position;
            position = best;
        }

        _heap[position] = node;
        _entries[node.Entry].HeapIndex = position;
    }

    private void HeapRemoveAt(int position)
    {
        int last = --_count;
        if (position == last)
        {
            return;
        }

        HeapNode moved = _heap[last];
        if (position > 0 && _heap[(position - 1) >> 2].ExpiresAt > moved.ExpiresAt)
        {
            SiftUp(position, moved);
        }
        else
        {
            SiftDown(position, moved);
        }
    }

    // ---- Slab segments ----

    /// <summary>Reserves <paramref name="length"/> bytes at the log head; returns the segment.</summary>
    private int AllocateRecord(int length, out int offset)
    {
        if (_head < 0 || SegmentSize - _headOffset < length)
        {
            OpenHead(length);
        }

        offset = _headOffset;
        _headOffset += length;
        _segmentLive[_head] += length;
        return _head;
    }

    private void FreeRecord(int segment, int offset, int length)
    {
        BinaryPrimitives.WriteInt32LittleEndian(_segments[segment][offset..], -length);
        if ((_segmentLive[segment] -= length) == 0 && segment != _head)
        {
            PushFreeSegment(segment);
        }
    }

    private void OpenHead(int length)
    {
        if (_head >= 0)
        {
            int closed = _head;
            _segmentEnd[closed] = _headOffset;
            _head = -1;
            if (_segmentLive[closed] == 0)
            {
                PushFreeSegment(closed);
            }
        }

        _headOffset = 0;
        if (_freeSegmentCount > 0)
        {
            _head = _freeSegments[--_freeSegmentCount];
            return;
        }

        int inUse = _segments.Count - (_spare >= 0 ? 1 : 0);
        if (inUse < _segmentBudget)
        {
            _head = NewSegment();
            return;
        }

        Compact();
        if (SegmentSize - _headOffset < length)
        {
            // The segment budget makes this unreachable (see the constructor); should that argument
            // ever fail, going over the memory bound beats corrupting a session.
            Debug.Fail("Compaction freed less than a record.");
            _segmentEnd[_head] = _headOffset;
            _head = NewSegment();
            _headOffset = 0;
        }
    }

    /// <summary>Copies the live records of the emptiest segment into the spare, which becomes the head;
    /// the emptied segment becomes the spare.</summary>
    private void Compact()
    {
        // A linear pass over the segments is a few thousand ints at most, and it happens once per
        // segment filled (two megabytes of records), so it costs nothing per add.
        int victim = -1;
        int least = int.MaxValue;
        for (int s = 0; s < _segments.Count; s++)
        {
            if (s != _spare && _segmentLive[s] < least)
            {
                victim = s;
                least = _segmentLive[s];
            }
        }

        if (_spare < 0)
        {
            _spare = NewSegment();
        }

        Span<byte> source = _segments[victim];
        Span<byte> target = _segments[_spare];
        int end = _segmentEnd[victim];
        int written = 0;
        for (int position = 0; position < end;)
        {
            int header = BinaryPrimitives.ReadInt32LittleEndian(source[position..]);
            if (header < 0)
            {
                position -= header;
                continue;
            }

            ref Entry entry = ref _entries[header];
            int length = RecordHeaderSize + entry.IdLength + entry.DataLength;
            source.Slice(position, length).CopyTo(target[written..]);
            entry.Segment = _spare;
            entry.Offset = written;
            position += length;
            written += length;
        }

        Debug.Assert(written == _segmentLive[victim], "Compaction must move exactly the live bytes.");
        _segmentLive[_spare] = written;
        _segmentLive[victim] = 0;
        _segmentEnd[victim] = 0;
        _head = _spare;
        _headOffset = written;
        _spare = victim;
        Interlocked.Increment(ref _compactions);
    }

    private int NewSegment()
    {
        if (_segments.Count == _segmentLive.Length)
        {
            int size = _segmentLive.Length * 2;
            Array.Resize(ref _segmentLive, size);
            Array.Resize(ref _segmentEnd, size);
            Array.Resize(ref _freeSegments, size);
        }

        int segment = _segments.Allocate();
        _segmentLive[segment] = 0;
        _segmentEnd[segment] = 0;
        return segment;
    }

    private void PushFreeSegment(int segment)
    {
        _segmentEnd[segment] = 0;
        _freeSegments[_freeSegmentCount++] = segment;
    }

    // ---- Time ----

    /// <summary>Converts a timeout to timestamp ticks, rounding up so a session never expires early;
    /// saturates instead of overflowing for absurdly long timeouts.</summary>
    private long ToTimestampDelta(TimeSpan timeout)
    {
        long ticks = timeout.Ticks;
        if (_frequency == TimeSpan.TicksPerSecond)
        {
            return ticks;
        }

        Int128 scaled = ((Int128)ticks * _frequency) + (TimeSpan.TicksPerSecond - 1);
        Int128 delta = scaled / TimeSpan.TicksPerSecond;
        return delta > long.MaxValue ? long.MaxValue : (long)delta;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private struct Entry
    {
        /// <summary>The keyed hash of the id, compared before the id bytes and reused on rehash.</summary>
        public ulong Hash;

        /// <summary>Timestamp from which the session is invisible.</summary>
        public long ExpiresAt;

        /// <summary>Next entry in the bucket chain (or in the free list); -1 ends it.</summary>
        public int Next;

        /// <summary>Position in the heap; -1 while the entry is free.</summary>
        public int HeapIndex;

        public int Segment;
        public int Offset;
        public int DataLength;
        public byte IdLength;
    }

    private struct HeapNode
    {
        public long ExpiresAt;
        public int Entry;
    }
}
