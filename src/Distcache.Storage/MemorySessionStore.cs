using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Distcache.Storage;

/// <summary>
/// The in-memory session store: a keyed hash table over struct arrays (<see cref="SessionIndex"/>), an expiry heap
/// (<see cref="ExpiryHeap{TPositions}"/>), and session bytes kept in 2 MiB slab segments of native memory on huge
/// pages (<see cref="SlabRecords"/> over <see cref="SlabMemory"/>), so that a million sessions cost the garbage
/// collector a few hundred objects, not a million, and a lookup among them does not also miss the TLB.
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
/// stored sessions), which is the price of 1.5.1's amortised eviction. The structures themselves are
/// unsynchronised: this class takes the lock and keeps them in step.</para>
/// </remarks>
public sealed class MemorySessionStore : ISessionStore, ISessionPrefetch
{
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

    private readonly SessionIndex _index;

    // Every stored entry is in the expiry order exactly once, so its size is the stored count.
    private readonly ExpiryHeap<SessionIndex.HeapPositions> _heap;
    private readonly SlabRecords _records;
    private long _bytesUsed;

    private long _evictedByCount;
    private long _evictedByBytes;
    private long _expired;
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

        Span<byte> key = stackalloc byte[16];
        RandomNumberGenerator.Fill(key);
        _key0 = BinaryPrimitives.ReadUInt64LittleEndian(key);
        _key1 = BinaryPrimitives.ReadUInt64LittleEndian(key[8..]);

        int capacity = _maxSessions > 0 ? Math.Min(_maxSessions, InitialCapacity) : InitialCapacity;
        int limit = _maxSessions > 0 ? _maxSessions : int.MaxValue;
        _index = new SessionIndex(capacity, limit);
        _heap = new ExpiryHeap<SessionIndex.HeapPositions>(capacity, limit, new SessionIndex.HeapPositions(_index));
        _records = new SlabRecords(_maxBytes, _index);
    }

    /// <summary>Bytes counted against <see cref="MaxBytes"/> for each session on top of its id and data:
    /// its table entry, heap node, bucket slot and record header.</summary>
    public static int PerSessionOverhead { get; } =
        SessionIndex.BytesPerEntry + ExpiryHeap<SessionIndex.HeapPositions>.NodeSize + SlabRecords.HeaderSize;

    /// <summary>The session count bound this store was created with (0 = none).</summary>
    public int MaxSessions => _maxSessions;

    /// <summary>The byte bound this store was created with.</summary>
    public long MaxBytes => _maxBytes;

    /// <summary>The number of live sessions. Reclaims any expired sessions still held, so the first read
    /// after a long idle period costs time proportional to what expired meanwhile.</summary>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public int Count => ReadAfterReclaiming(static store => store._heap.Count);

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
                return _records.Bytes;
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
    public long Compactions => _records.Compactions;

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
        if (_records.NeedsReserve)
        {
            // Outside the lock: faulting a new segment in can take milliseconds (see SlabMemory).
            _records.PrepareReserve();
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
        return WithLiveSession(id, new ReadData<TState>(reader, state), cancellationToken);
    }

    /// <inheritdoc/>
    /// <remarks>Passes over the ids, each issuing one independent memory access per id: the buckets, then the
    /// entries the buckets name, then the records of the entries whose id matches and, for the others, the next
    /// entry of their chain. Each pass waits for about one memory latency instead of one per id. Ids beyond the
    /// first <see cref="MaxPrefetch"/> are left alone. Does nothing on processors without a prefetch instruction
    /// .NET exposes (only x86 is used here).</remarks>
    public void Prefetch(ReadOnlySpan<ReadOnlyMemory<byte>> ids)
    {
        if (!SessionPrefetcher.IsSupported || ids.Length == 0)
        {
            return;
        }

        int count = Math.Min(ids.Length, MaxPrefetch);
        Span<ulong> hashes = stackalloc ulong[count];
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

            SessionPrefetcher.Prefetch(_index, _records, hashes);
        }
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The id is outside <see cref="SessionStoreLimits"/>.</exception>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) =>
        WithLiveSession(id, default(RemoveSession), cancellationToken);

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The id is outside <see cref="SessionStoreLimits"/>.</exception>
    /// <exception cref="ObjectDisposedException">The store has been disposed.</exception>
    public ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) =>
        WithLiveSession(id, default(LeaveSession), cancellationToken);

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
            _records.Dispose();
            _index.Clear();
            _heap.Clear();
            _bytesUsed = 0;
        }
    }

    /// <summary>The most ids one <see cref="Prefetch"/> call brings in: 32 sessions of 1 KB already fill a
    /// level-1 data cache, and more would evict the first ones before they are used.</summary>
    internal const int MaxPrefetch = 32;

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
                return _index.Bytes + _heap.Bytes;
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
                return _index.BucketCount;
            }
        }
    }

    // Get, Remove and Contains differ only in what they do with the live session they find. The action is a struct
    // so that passing it allocates nothing and calling it needs no delegate.
    private ValueTask<bool> WithLiveSession<TAction>(ReadOnlyMemory<byte> id, TAction action, CancellationToken cancellationToken)
        where TAction : struct, ILiveSessionAction
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

            action.Apply(this, index);
        }

        return new ValueTask<bool>(true);
    }

    private AddResult AddLocked(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, ulong hash, long delta)
    {
        long now = _time.GetTimestamp();
        int existing = _index.Find(id, hash, _records);
        if (existing >= 0)
        {
            if (_index[existing].ExpiresAt > now)
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

        if (_maxSessions > 0 && _heap.Count >= _maxSessions)
        {
            // Expired sessions are not counted, so dropping one of them is enough to make room; only a
            // store full of live sessions evicts.
            while (_heap.Count >= _maxSessions && _heap.SoonestExpiry <= now)
            {
                RemoveEntry(_heap.Soonest);
                Interlocked.Increment(ref _expired);
            }

            if (_heap.Count >= _maxSessions)
            {
                for (int i = 0; i < _evictionBatch && _heap.Count > 0; i++)
                {
                    RemoveEntry(_heap.Soonest);
                    Interlocked.Increment(ref _evictedByCount);
                }
            }
        }

        long cost = SessionCost(id.Length, data.Length);
        while (_bytesUsed + cost > _maxBytes && _heap.Count > 0)
        {
            bool expired = _heap.SoonestExpiry <= now;
            RemoveEntry(_heap.Soonest);
            Interlocked.Increment(ref expired ? ref _expired : ref _evictedByBytes);
        }

        Insert(id, data, hash, expiresAt, cost);
        return AddResult.Stored;
    }

    private void Insert(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, ulong hash, long expiresAt, long cost)
    {
        int index = _index.Allocate();
        ref SessionEntry entry = ref _index[index];
        _records.Write(index, ref entry, id, data);
        entry.ExpiresAt = expiresAt;

        // Findable last: should a table fail to grow on the way, the entry is merely lost, never found by id
        // while missing from the expiry order or the byte count.
        _heap.Push(index, expiresAt);
        _bytesUsed += cost;
        _index.Link(index, hash);
    }

    /// <summary>Finds a live session; an expired one met on the way is reclaimed and not returned.</summary>
    private int FindLive(ReadOnlySpan<byte> id, ulong hash, long now)
    {
        int index = _index.Find(id, hash, _records);
        if (index >= 0 && _index[index].ExpiresAt <= now)
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
        while (reclaimed < limit && _heap.Count > 0 && _heap.SoonestExpiry <= now)
        {
            RemoveEntry(_heap.Soonest);
            reclaimed++;
        }

        if (reclaimed > 0)
        {
            Interlocked.Add(ref _expired, reclaimed);
        }

        return reclaimed;
    }

    /// <summary>Takes a session out of the expiry order, the record memory and the index, and stops counting it.</summary>
    private void RemoveEntry(int index)
    {
        ref SessionEntry entry = ref _index[index];
        _heap.RemoveAt(entry.HeapIndex);
        _records.Free(entry);
        _bytesUsed -= SessionCost(entry.IdLength, entry.DataLength);
        _index.Remove(index);
    }

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

    /// <summary>What a lookup does, under the lock, with the live session it found.</summary>
    private interface ILiveSessionAction
    {
        void Apply(MemorySessionStore store, int index);
    }

    private readonly struct ReadData<TState>(SessionDataReader<TState> reader, TState state) : ILiveSessionAction
    {
        public void Apply(MemorySessionStore store, int index) => reader(store._records.Data(store._index[index]), state);
    }

    private readonly struct RemoveSession : ILiveSessionAction
    {
        public void Apply(MemorySessionStore store, int index) => store.RemoveEntry(index);
    }

    private readonly struct LeaveSession : ILiveSessionAction
    {
        public void Apply(MemorySessionStore store, int index)
        {
        }
    }
}
