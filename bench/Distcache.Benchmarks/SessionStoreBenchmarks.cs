using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using Distcache.Storage;

namespace Distcache.Benchmarks;

/// <summary>
/// The in-memory store at 1 000 and 1 000 000 stored sessions of 32-byte ids and 1000-byte data
/// (a typical TLS session). Each invocation runs <see cref="Batch"/> operations. Sessions are stored
/// in random order and looked up in id-array order, so the store's table, entries and slab records
/// are touched at random (the 1M case pays the cache and TLB misses a real server would) while the
/// id itself is read sequentially, like an id that has just arrived in a network buffer.
/// </summary>
[MemoryDiagnoser]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "The store is disposed in [GlobalCleanup], BenchmarkDotNet's lifecycle.")]
public class SessionStoreBenchmarks
{
    private const int Batch = 1024;
    private const int IdLength = 32;
    private const int DataLength = 1000;
    private static readonly TimeSpan Timeout = TimeSpan.FromHours(1);
    private static readonly SessionDataReader<byte[]> CopyInto = static (data, target) => data.CopyTo(target);

    private readonly byte[] _data = new byte[DataLength];
    private readonly byte[] _buffer = new byte[DataLength];
    private readonly byte[] _freshIds = new byte[Batch * IdLength];
    private readonly byte[] _counterId = new byte[IdLength];
    private MemorySessionStore _store = null!;
    private byte[] _ids = [];
    private int[] _order = [];
    private int _cursor;
    private long _counter;
    private long _sink;

    [Params(1_000, 1_000_000)]
    public int Sessions { get; set; }

    [GlobalSetup(Targets = [nameof(Get), nameof(Contains), nameof(AddThenRemove)])]
    public void SetupWithRoom() => Setup(maxSessions: Sessions + Batch);

    [GlobalSetup(Target = nameof(AddIntoFullStore))]
    public void SetupFull() => Setup(maxSessions: Sessions);

    [GlobalCleanup]
    public void Cleanup() => _store.Dispose();

    [Benchmark(OperationsPerInvoke = Batch)]
    public long Get()
    {
        long hits = 0;
        for (int i = 0; i < Batch; i++)
        {
            hits += Done(_store.GetAsync(NextId(), CopyInto, _buffer)) ? 1 : 0;
        }

        return hits;
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public long Contains()
    {
        long hits = 0;
        for (int i = 0; i < Batch; i++)
        {
            hits += Done(_store.ContainsAsync(NextId())) ? 1 : 0;
        }

        return hits;
    }

    /// <summary>One op = an add of a new session plus its removal.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public long AddThenRemove()
    {
        long stored = 0;
        for (int i = 0; i < Batch; i++)
        {
            ReadOnlyMemory<byte> id = _freshIds.AsMemory(i * IdLength, IdLength);
            stored += Done(_store.AddAsync(id, _data, Timeout)) == AddResult.Stored ? 1 : 0;
            stored += Done(_store.RemoveAsync(id)) ? 1 : 0;
        }

        return stored;
    }

    /// <summary>One op = an add of a new session into a full store: evictions come in batches of
    /// MaxSessions/30 (capped at 2000), so this is the amortised cost of 1.5.1's policy.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public long AddIntoFullStore()
    {
        long stored = 0;
        for (int i = 0; i < Batch; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(_counterId, ++_counter);
            stored += Done(_store.AddAsync(_counterId, _data, Timeout)) == AddResult.Stored ? 1 : 0;
        }

        _sink += stored;
        return stored;
    }

    private void Setup(int maxSessions)
    {
        var random = new Random(1);
        random.NextBytes(_data);
        random.NextBytes(_freshIds);
        _freshIds[0] = 0xFF; // fresh ids never collide with the stored ones, whose first byte is 0
        _counterId.AsSpan().Fill(0xEE);
        _ids = new byte[(long)Sessions * IdLength];
        random.NextBytes(_ids);
        _order = new int[Sessions];
        for (int i = 0; i < Sessions; i++)
        {
            _ids[i * IdLength] = 0;
            BinaryPrimitives.WriteInt32LittleEndian(_ids.AsSpan((i * IdLength) + 1), i);
            _order[i] = i;
        }

        for (int i = 0; i < Batch; i++)
        {
            _freshIds[i * IdLength] = 0xFF;
        }

        random.Shuffle(_order);
        long perSession = IdLength + DataLength + MemorySessionStore.PerSessionOverhead;
        _store = new MemorySessionStore(new MemorySessionStoreOptions
        {
            MaxSessions = maxSessions,
            MaxBytes = (maxSessions + Batch) * perSession,
        });

        foreach (int i in _order)
        {
            Done(_store.AddAsync(_ids.AsMemory(i * IdLength, IdLength), _data, Timeout));
        }
    }

    private ReadOnlyMemory<byte> NextId()
    {
        int index = _cursor;
        _cursor = _cursor + 1 == Sessions ? 0 : _cursor + 1;
        return _ids.AsMemory(index * IdLength, IdLength);
    }

    private static T Done<T>(ValueTask<T> operation) =>
        operation.IsCompletedSuccessfully ? operation.Result : throw new InvalidOperationException("The memory store completes synchronously.");
}
