using CsCheck;
using static Distcache.Storage.Tests.TestData;

namespace Distcache.Storage.Tests;

/// <summary>
/// The capacity behaviour of a bounded store: 1.5.1's eviction of the soonest-expiring sessions in
/// batches of MaxSessions/30 when full, and the byte bound. A store that supports only some bounds
/// says so through <see cref="SupportsMaxSessions"/> and <see cref="SupportsMaxBytes"/>, and the tests
/// for the other are skipped.
/// </summary>
public abstract class SessionStoreCapacityContractTests
{
    /// <summary>A byte bound large enough never to matter in the count tests.</summary>
    protected const long Unbounded = 1L << 32;

    /// <summary>A new, empty store following <paramref name="clock"/> with the given bounds
    /// (<paramref name="maxSessions"/> 0 means no count bound).</summary>
    protected abstract ISessionStore CreateStore(TimeProvider clock, int maxSessions, long maxBytes);

    /// <summary>Whether the store enforces a session count bound with 1.5.1's eviction policy.</summary>
    protected virtual bool SupportsMaxSessions => true;

    /// <summary>Whether the store enforces a byte bound by evicting the soonest-expiring sessions.</summary>
    protected virtual bool SupportsMaxBytes => true;

    /// <summary>What one session counts against the byte bound.</summary>
    protected abstract long SessionCost(int idLength, int dataLength);

    /// <summary>The bytes the store's live sessions currently count against the byte bound.</summary>
    protected abstract long BytesUsed(ISessionStore store);

    /// <summary>The smallest byte bound the store accepts.</summary>
    protected abstract long MinMaxBytes { get; }

    private static int BatchFor(int maxSessions) => Math.Clamp(maxSessions / 30, 1, 2000);

    private static int[] Shuffled(int count, int seed)
    {
        int[] order = Enumerable.Range(0, count).ToArray();
        new Random(seed).Shuffle(order);
        return order;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(64)]
    [InlineData(300)]
    [InlineData(1000)]
    public async Task Full_store_evicts_the_soonest_expiring_batch_and_stores_the_new_session(int maxSessions)
    {
        Assert.SkipUnless(SupportsMaxSessions, "The store has no session count bound.");
        using ISessionStore store = CreateStore(new ManualTimeProvider(), maxSessions, Unbounded);

        // Insertion order is shuffled so that "soonest to expire" cannot be confused with "oldest".
        int[] rank = Shuffled(maxSessions, maxSessions);
        foreach (int r in rank)
        {
            Assert.Equal(AddResult.Stored, await store.AddAsync(Id($"s{r}"), Data(16, r), TimeSpan.FromSeconds(10 + r)));
        }

        Assert.Equal(maxSessions, await store.CountAsync());

        Assert.Equal(AddResult.Stored, await store.AddAsync(Id("new"), Data(16, -1), TimeSpan.FromSeconds(5)));

        int batch = BatchFor(maxSessions);
        Assert.Equal(maxSessions - batch + 1, await store.CountAsync());
        Assert.Equal(Data(16, -1), await store.ReadAsync(Id("new")));
        for (int r = 0; r < maxSessions; r++)
        {
            Assert.Equal(r >= batch, await store.ContainsAsync(Id($"s{r}")));
        }
    }

    [Theory]
    [InlineData(60_000)]
    [InlineData(90_000)]
    public async Task Eviction_batch_is_capped_at_2000(int maxSessions)
    {
        Assert.SkipUnless(SupportsMaxSessions, "The store has no session count bound.");
        using ISessionStore store = CreateStore(new ManualTimeProvider(), maxSessions, Unbounded);
        byte[] data = Data(8, 1);
        for (int i = 0; i < maxSessions; i++)
        {
            await store.AddAsync(Id($"s{i}"), data, TimeSpan.FromMilliseconds(1000 + i));
        }

        await store.AddAsync(Id("new"), data, TimeSpan.FromHours(1));

        Assert.Equal(maxSessions - 2000 + 1, await store.CountAsync());
        Assert.False(await store.ContainsAsync(Id("s1999")));
        Assert.True(await store.ContainsAsync(Id("s2000")));
    }

    [Fact]
    public async Task Expired_sessions_make_room_before_any_live_one_is_evicted()
    {
        Assert.SkipUnless(SupportsMaxSessions, "The store has no session count bound.");
        var clock = new ManualTimeProvider();
        using ISessionStore store = CreateStore(clock, 64, Unbounded);
        for (int i = 0; i < 64; i++)
        {
            await store.AddAsync(Id($"s{i}"), Data(8, i), TimeSpan.FromSeconds(i < 10 ? 1 : 100));
        }

        clock.AdvanceMilliseconds(1000);
        Assert.Equal(AddResult.Stored, await store.AddAsync(Id("new"), Data(8, -1), TimeSpan.FromSeconds(50)));

        Assert.Equal(55, await store.CountAsync());
        for (int i = 10; i < 64; i++)
        {
            Assert.True(await store.ContainsAsync(Id($"s{i}")));
        }

        // Once it is full of live sessions again, the batch goes, soonest first: "new" expires first.
        for (int i = 0; i < 9; i++)
        {
            await store.AddAsync(Id($"t{i}"), Data(8, i), TimeSpan.FromSeconds(200 + i));
        }

        Assert.Equal(64, await store.CountAsync());
        await store.AddAsync(Id("last"), Data(8, -2), TimeSpan.FromSeconds(300));
        Assert.Equal(63, await store.CountAsync());
        Assert.False(await store.ContainsAsync(Id("new")));
        Assert.True(await store.ContainsAsync(Id("last")));
    }

    [Fact]
    public async Task Full_store_never_refuses_an_add()
    {
        Assert.SkipUnless(SupportsMaxSessions, "The store has no session count bound.");
        using ISessionStore store = CreateStore(new ManualTimeProvider(), 100, Unbounded);
        for (int i = 0; i < 1000; i++)
        {
            byte[] id = Id($"s{i}");
            Assert.Equal(AddResult.Stored, await store.AddAsync(id, Data(8, i), TimeSpan.FromSeconds(1000 - (i % 17))));
            Assert.True(await store.ContainsAsync(id));
            Assert.InRange(await store.CountAsync(), 1, 100);
        }
    }

    [Fact]
    public async Task Byte_bound_evicts_the_soonest_expiring_sessions_until_the_new_one_fits()
    {
        Assert.SkipUnless(SupportsMaxBytes, "The store has no byte bound.");
        const int Size = 30_000;
        long cost = SessionCost(4, Size);
        long maxBytes = Math.Max(MinMaxBytes, 10 * cost);
        int fits = (int)(maxBytes / cost);
        using ISessionStore store = CreateStore(new ManualTimeProvider(), 0, maxBytes);

        int[] rank = Shuffled(fits, 7);
        foreach (int r in rank)
        {
            Assert.Equal(AddResult.Stored, await store.AddAsync(Id($"s{r:000}"), Data(Size, r), TimeSpan.FromSeconds(10 + r)));
            Assert.InRange(BytesUsed(store), 0, maxBytes);
        }

        Assert.Equal(fits, await store.CountAsync());
        Assert.Equal(fits * cost, BytesUsed(store));

        // One more of the same size pushes out exactly the soonest-expiring one.
        Assert.Equal(AddResult.Stored, await store.AddAsync(Id("n001"), Data(Size, -1), TimeSpan.FromHours(1)));
        Assert.InRange(BytesUsed(store), 0, maxBytes);
        Assert.False(await store.ContainsAsync(Id("s000")));
        Assert.True(await store.ContainsAsync(Id("s001")));

        // A maximum-size session needs more than one slot: the next soonest go until it fits.
        byte[] big = Data(SessionStoreLimits.MaxDataLength, -2);
        Assert.Equal(AddResult.Stored, await store.AddAsync(Id("n002"), big, TimeSpan.FromHours(2)));
        Assert.InRange(BytesUsed(store), 0, maxBytes);
        Assert.Equal(big, await store.ReadAsync(Id("n002")));
        int kept = 0;
        for (int r = 1; r < fits; r++)
        {
            // The evicted ones must be the soonest-expiring: once one is kept, all later ones are.
            bool present = await store.ContainsAsync(Id($"s{r:000}"));
            Assert.True(present || kept == 0, $"s{r:000} was evicted although a sooner-expiring session was kept");
            kept += present ? 1 : 0;
        }

        Assert.True(kept < fits - 1, "the maximum-size session should have needed an eviction");

        Assert.Equal(kept + 2, await store.CountAsync());
        Assert.Equal(((kept + 1) * cost) + SessionCost(4, SessionStoreLimits.MaxDataLength), BytesUsed(store));
    }

    [Fact]
    public async Task Byte_bound_holds_for_any_mix_of_sizes()
    {
        Assert.SkipUnless(SupportsMaxBytes, "The store has no byte bound.");
        long maxBytes = Math.Max(MinMaxBytes, 1L << 20);
        using ISessionStore store = CreateStore(new ManualTimeProvider(), 0, maxBytes);
        var random = new Random(11);
        var ids = new List<byte[]>();
        for (int i = 0; i < 3000; i++)
        {
            byte[] id = Id($"session-{i}");
            int size = random.Next(4) == 0 ? random.Next(20_000, SessionStoreLimits.MaxDataLength + 1) : random.Next(1, 2000);
            Assert.Equal(AddResult.Stored, await store.AddAsync(id, Payload(id, i, Math.Max(size, id.Length + 12)), TimeSpan.FromSeconds(random.Next(1, 10_000))));
            Assert.InRange(BytesUsed(store), 0, maxBytes);
            ids.Add(id);
        }

        int present = 0;
        foreach (byte[] id in ids)
        {
            byte[]? read = await store.ReadAsync(id);
            if (read is not null)
            {
                Assert.True(IsPayloadOf(read, id));
                present++;
            }
        }

        Assert.Equal(present, await store.CountAsync());
        Assert.True(present > 10);
    }

    /// <summary>One randomised step; ids are small indices so operations collide.</summary>
    public sealed record Step(int Kind, int Id, int Value);

    [Theory]
    [InlineData(8, 0)]
    [InlineData(64, 0)]
    [InlineData(0, 3)]
    [InlineData(40, 3)]
    public void Random_operations_agree_with_a_bounded_model(int maxSessions, int maxSizeSessionsOfBytes)
    {
        Assert.SkipUnless(maxSessions == 0 || SupportsMaxSessions, "The store has no session count bound.");
        Assert.SkipUnless(maxSizeSessionsOfBytes == 0 || SupportsMaxBytes, "The store has no byte bound.");
        long maxBytes = maxSizeSessionsOfBytes == 0
            ? Unbounded
            : Math.Max(MinMaxBytes, maxSizeSessionsOfBytes * SessionCost(SessionStoreLimits.MaxIdLength, SessionStoreLimits.MaxDataLength));
        Gen<Step[]> steps = Gen.Frequency(
                (6, Gen.Select(Gen.Int[0, 99], Gen.Int[0, 1000], (id, value) => new Step(0, id, value))),
                (2, Gen.Select(Gen.Int[1, 4], Gen.Int[0, 99], Gen.Int[0, 1000], (kind, id, value) => new Step(kind, id, value))),
                (1, Gen.Int[0, 30].Select(ms => new Step(5, 0, ms))))
            .Array[1, 250];
        steps.Sample(s => RunAgainstModel(s, maxSessions, maxBytes), iter: 150, threads: 1);
    }

    private void RunAgainstModel(Step[] steps, int maxSessions, long maxBytes)
    {
        var clock = new ManualTimeProvider();
        using ISessionStore store = CreateStore(clock, maxSessions, maxBytes);
        var model = new Dictionary<int, (byte[] Data, long ExpiresAt)>();
        var usedExpiries = new HashSet<long>();
        long now = 0;

        void DropExpired()
        {
            foreach (int key in model.Where(s => s.Value.ExpiresAt <= now).Select(s => s.Key).ToList())
            {
                model.Remove(key);
            }
        }

        void EvictSoonest()
        {
            int soonest = model.MinBy(s => s.Value.ExpiresAt).Key;
            model.Remove(soonest);
        }

        long ModelBytes() => model.Sum(s => SessionCost(ModelId(s.Key).Length, s.Value.Data.Length));

        for (int i = 0; i < steps.Length; i++)
        {
            Step step = steps[i];
            byte[] id = ModelId(step.Id);
            string where = $"step {i} {step}";
            DropExpired();
            switch (step.Kind)
            {
                case 0:
                    {
                        // Large sessions now and then so the byte bound is reached with few sessions.
                        int length = step.Value % 10 == 0 ? 16_000 + (step.Value * 16) : 1 + (step.Value * 3);
                        byte[] data = Data(length, i);

                        // Distinct expiry times make "soonest to expire" a single answer.
                        long timeout = 1 + (step.Value % 200);
                        while (!usedExpiries.Add(now + timeout))
                        {
                            timeout++;
                        }

                        AddResult expected = model.ContainsKey(step.Id) ? AddResult.AlreadyExists : AddResult.Stored;
                        if (expected == AddResult.Stored)
                        {
                            if (maxSessions > 0 && model.Count >= maxSessions)
                            {
                                for (int e = 0; e < BatchFor(maxSessions) && model.Count > 0; e++)
                                {
                                    EvictSoonest();
                                }
                            }

                            long cost = SessionCost(id.Length, data.Length);
                            while (ModelBytes() + cost > maxBytes)
                            {
                                EvictSoonest();
                            }

                            model[step.Id] = (data, now + timeout);
                        }

                        Assert.True(expected == store.AddAsync(id, data, TimeSpan.FromMilliseconds(timeout)).AsTask().Result, where);
                        break;
                    }

                case 1:
                    {
                        byte[]? read = store.ReadAsync(id).Result;
                        Assert.True(model.TryGetValue(step.Id, out var s) ? read is not null && read.AsSpan().SequenceEqual(s.Data) : read is null, where);
                        break;
                    }

                case 2:
                    Assert.True(model.Remove(step.Id) == store.RemoveAsync(id).AsTask().Result, where);
                    break;

                case 3:
                    Assert.True(model.ContainsKey(step.Id) == store.ContainsAsync(id).AsTask().Result, where);
                    break;

                case 4:
                    Assert.True(model.Count == store.CountAsync().AsTask().Result, where);
                    if (SupportsMaxBytes)
                    {
                        Assert.True(ModelBytes() == BytesUsed(store), where);
                    }

                    break;

                default:
                    now += step.Value;
                    clock.AdvanceMilliseconds(step.Value);
                    break;
            }
        }

        DropExpired();
        Assert.Equal(model.Count, store.CountAsync().AsTask().Result);
        foreach ((int key, (byte[] data, _)) in model)
        {
            Assert.Equal(data, store.ReadAsync(ModelId(key)).Result);
        }
    }

    /// <summary>A hundred ids of assorted lengths up to the maximum.</summary>
    private static byte[] ModelId(int index)
    {
        byte[] id = new byte[1 + (index * 7 % SessionStoreLimits.MaxIdLength)];
        id.AsSpan().Fill((byte)index);
        return id;
    }
}
