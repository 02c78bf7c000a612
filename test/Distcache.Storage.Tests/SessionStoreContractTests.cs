using CsCheck;
using static Distcache.Storage.Tests.TestData;

namespace Distcache.Storage.Tests;

/// <summary>
/// The behaviour every <see cref="ISessionStore"/> promises the server (the 1.5.1 protocol's session
/// semantics), independent of capacity bounds. Derive, implement <see cref="CreateStore"/>, and the
/// whole suite runs against your store; capacity behaviour is in <see cref="SessionStoreCapacityContractTests"/>.
/// </summary>
public abstract class SessionStoreContractTests
{
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);

    /// <summary>
    /// A new, empty store whose expiry follows <paramref name="clock"/>, with room for at least 20 000
    /// sessions and 64 MiB of data, so that no test here triggers eviction.
    /// </summary>
    protected abstract ISessionStore CreateStore(TimeProvider clock);

    private ISessionStore CreateStore() => CreateStore(new ManualTimeProvider());

    [Fact]
    public async Task Added_session_can_be_read_back()
    {
        using ISessionStore store = CreateStore();
        byte[] data = Data(1000, 1);

        Assert.Equal(AddResult.Stored, await store.AddAsync(Id("session-a"), data, Minute));

        Assert.Equal(data, await store.ReadAsync(Id("session-a")));
        Assert.True(await store.ContainsAsync(Id("session-a")));
        Assert.Equal(1, await store.CountAsync());
    }

    [Fact]
    public async Task Unknown_id_is_not_found_and_reader_is_not_called()
    {
        using ISessionStore store = CreateStore();
        await store.AddAsync(Id("present"), Data(10, 1), Minute);

        bool[] called = [false];
        bool found = await store.GetAsync(Id("absent"), static (_, flag) => flag[0] = true, called);

        Assert.False(found);
        Assert.False(called[0]);
        Assert.False(await store.ContainsAsync(Id("absent")));
        Assert.False(await store.RemoveAsync(Id("absent")));
        Assert.Equal(1, await store.CountAsync());
    }

    [Fact]
    public async Task Empty_store_counts_zero()
    {
        using ISessionStore store = CreateStore();
        Assert.Equal(0, await store.CountAsync());
    }

    [Fact]
    public async Task Remove_deletes_once_and_the_id_can_be_added_again()
    {
        using ISessionStore store = CreateStore();
        byte[] id = Id("session");
        await store.AddAsync(id, Data(100, 1), Minute);

        Assert.True(await store.RemoveAsync(id));
        Assert.False(await store.RemoveAsync(id));
        Assert.False(await store.ContainsAsync(id));
        Assert.Null(await store.ReadAsync(id));
        Assert.Equal(0, await store.CountAsync());

        Assert.Equal(AddResult.Stored, await store.AddAsync(id, Data(200, 2), Minute));
        Assert.Equal(Data(200, 2), await store.ReadAsync(id));
        Assert.Equal(1, await store.CountAsync());
    }

    [Fact]
    public async Task Duplicate_add_keeps_the_old_session()
    {
        using ISessionStore store = CreateStore();
        byte[] id = Id("dup");
        await store.AddAsync(id, Data(50, 1), Minute);

        Assert.Equal(AddResult.AlreadyExists, await store.AddAsync(id, Data(80, 2), TimeSpan.FromHours(1)));

        Assert.Equal(Data(50, 1), await store.ReadAsync(id));
        Assert.Equal(1, await store.CountAsync());
    }

    [Fact]
    public async Task Duplicate_add_does_not_extend_the_old_session()
    {
        var clock = new ManualTimeProvider();
        using ISessionStore store = CreateStore(clock);
        byte[] id = Id("dup");
        await store.AddAsync(id, Data(50, 1), TimeSpan.FromSeconds(1));
        clock.AdvanceMilliseconds(500);
        await store.AddAsync(id, Data(50, 2), TimeSpan.FromSeconds(10));

        clock.AdvanceMilliseconds(500);

        Assert.False(await store.ContainsAsync(id));
    }

    [Fact]
    public async Task Stored_data_is_a_copy_of_the_callers_buffer()
    {
        using ISessionStore store = CreateStore();
        byte[] id = Id("copy");
        byte[] data = Data(64, 3);
        await store.AddAsync(id, data, Minute);

        data[0] ^= 0xff;
        id[0] ^= 0xff;

        Assert.Equal(Data(64, 3), await store.ReadAsync(Id("copy")));
    }

    public static TheoryData<string> FirstOperations => ["get", "contains", "remove", "count", "add"];

    [Theory]
    [MemberData(nameof(FirstOperations))]
    public async Task Session_is_live_until_the_last_millisecond_and_gone_exactly_at_its_timeout(string firstOperation)
    {
        var clock = new ManualTimeProvider();
        using ISessionStore store = CreateStore(clock);
        byte[] id = Id("expiring");
        await store.AddAsync(id, Data(100, 1), TimeSpan.FromMilliseconds(5000));

        clock.AdvanceMilliseconds(4999);
        Assert.True(await store.ContainsAsync(id));
        Assert.Equal(Data(100, 1), await store.ReadAsync(id));
        Assert.Equal(1, await store.CountAsync());
        Assert.Equal(AddResult.AlreadyExists, await store.AddAsync(id, Data(100, 2), Minute));

        clock.AdvanceMilliseconds(1);

        // Whichever operation meets the expired session first must already treat it as gone.
        switch (firstOperation)
        {
            case "get":
                Assert.Null(await store.ReadAsync(id));
                break;
            case "contains":
                Assert.False(await store.ContainsAsync(id));
                break;
            case "remove":
                Assert.False(await store.RemoveAsync(id));
                break;
            case "count":
                Assert.Equal(0, await store.CountAsync());
                break;
            case "add":
                Assert.Equal(AddResult.Stored, await store.AddAsync(id, Data(100, 3), Minute));
                Assert.Equal(Data(100, 3), await store.ReadAsync(id));
                return;
        }

        Assert.Null(await store.ReadAsync(id));
        Assert.False(await store.ContainsAsync(id));
        Assert.False(await store.RemoveAsync(id));
        Assert.Equal(0, await store.CountAsync());
        Assert.Equal(AddResult.Stored, await store.AddAsync(id, Data(100, 3), Minute));
        Assert.Equal(Data(100, 3), await store.ReadAsync(id));
        Assert.Equal(1, await store.CountAsync());
    }

    [Fact]
    public async Task Sessions_expire_independently()
    {
        var clock = new ManualTimeProvider();
        using ISessionStore store = CreateStore(clock);
        for (int i = 1; i <= 10; i++)
        {
            await store.AddAsync(Id($"s{i}"), Data(10, i), TimeSpan.FromSeconds(i));
        }

        for (int elapsed = 1; elapsed <= 10; elapsed++)
        {
            clock.AdvanceMilliseconds(1000);
            Assert.Equal(10 - elapsed, await store.CountAsync());
            for (int i = 1; i <= 10; i++)
            {
                Assert.Equal(i > elapsed, await store.ContainsAsync(Id($"s{i}")));
            }
        }
    }

    [Fact]
    public async Task Zero_timeout_is_stored_but_never_visible()
    {
        using ISessionStore store = CreateStore();
        byte[] id = Id("zero");

        Assert.Equal(AddResult.Stored, await store.AddAsync(id, Data(10, 1), TimeSpan.Zero));

        Assert.False(await store.ContainsAsync(id));
        Assert.Null(await store.ReadAsync(id));
        Assert.False(await store.RemoveAsync(id));
        Assert.Equal(0, await store.CountAsync());
        Assert.Equal(AddResult.Stored, await store.AddAsync(id, Data(10, 2), TimeSpan.Zero));
        Assert.Equal(AddResult.Stored, await store.AddAsync(id, Data(10, 3), Minute));
        Assert.Equal(Data(10, 3), await store.ReadAsync(id));
    }

    [Fact]
    public async Task Zero_timeout_add_of_a_live_id_reports_it_exists()
    {
        using ISessionStore store = CreateStore();
        byte[] id = Id("live");
        await store.AddAsync(id, Data(10, 1), Minute);

        Assert.Equal(AddResult.AlreadyExists, await store.AddAsync(id, Data(10, 2), TimeSpan.Zero));
        Assert.Equal(Data(10, 1), await store.ReadAsync(id));
    }

    [Fact]
    public async Task Very_long_timeouts_do_not_overflow()
    {
        var clock = new ManualTimeProvider();
        using ISessionStore store = CreateStore(clock);
        await store.AddAsync(Id("forever"), Data(10, 1), TimeSpan.MaxValue);
        await store.AddAsync(Id("49 days"), Data(10, 2), TimeSpan.FromMilliseconds(uint.MaxValue));

        clock.Advance(TimeSpan.FromDays(40));

        Assert.True(await store.ContainsAsync(Id("forever")));
        Assert.True(await store.ContainsAsync(Id("49 days")));
    }

    [Fact]
    public async Task Ids_that_differ_in_one_byte_or_only_in_length_are_distinct_sessions()
    {
        using ISessionStore store = CreateStore();
        var ids = new List<byte[]>();
        byte[] baseId = Data(SessionStoreLimits.MaxIdLength, 99);
        for (int length = 1; length <= SessionStoreLimits.MaxIdLength; length++)
        {
            ids.Add(baseId[..length]);
            ids.Add(new byte[length]);
        }

        for (int position = 0; position < SessionStoreLimits.MaxIdLength; position++)
        {
            byte[] variant = (byte[])baseId.Clone();
            variant[position] ^= 0x01;
            ids.Add(variant);
        }

        for (int i = 0; i < ids.Count; i++)
        {
            Assert.Equal(AddResult.Stored, await store.AddAsync(ids[i], Data(20, i), Minute));
        }

        Assert.Equal(ids.Count, await store.CountAsync());
        for (int i = 0; i < ids.Count; i++)
        {
            Assert.Equal(Data(20, i), await store.ReadAsync(ids[i]));
        }

        for (int i = 0; i < ids.Count; i += 2)
        {
            Assert.True(await store.RemoveAsync(ids[i]));
        }

        for (int i = 0; i < ids.Count; i++)
        {
            Assert.Equal(i % 2 == 1, await store.ContainsAsync(ids[i]));
        }
    }

    [Fact]
    public async Task Maximum_size_id_and_data_round_trip()
    {
        using ISessionStore store = CreateStore();
        byte[] id = Data(SessionStoreLimits.MaxIdLength, 5);
        byte[] data = Data(SessionStoreLimits.MaxDataLength, 6);

        Assert.Equal(AddResult.Stored, await store.AddAsync(id, data, Minute));

        Assert.Equal(data, await store.ReadAsync(id));
        Assert.Equal(AddResult.Stored, await store.AddAsync(Id("x"), Data(1, 7), Minute));
        Assert.Equal(Data(1, 7), await store.ReadAsync(Id("x")));
    }

    [Fact]
    public async Task Ids_and_data_are_taken_from_memory_slices()
    {
        using ISessionStore store = CreateStore();
        byte[] buffer = Data(300, 8);

        await store.AddAsync(buffer.AsMemory(10, 32), buffer.AsMemory(100, 150), Minute);

        Assert.Equal(buffer[100..250], await store.ReadAsync(buffer[10..42]));
    }

    [Fact]
    public async Task Many_sessions_are_all_retrievable()
    {
        using ISessionStore store = CreateStore();
        const int Sessions = 20_000;
        for (int i = 0; i < Sessions; i++)
        {
            Assert.Equal(AddResult.Stored, await store.AddAsync(Id($"session-{i}"), Data(1 + (i % 200), i), Minute));
        }

        Assert.Equal(Sessions, await store.CountAsync());
        for (int i = 0; i < Sessions; i += 7)
        {
            Assert.Equal(Data(1 + (i % 200), i), await store.ReadAsync(Id($"session-{i}")));
        }

        for (int i = 0; i < Sessions; i += 2)
        {
            Assert.True(await store.RemoveAsync(Id($"session-{i}")));
        }

        Assert.Equal(Sessions / 2, await store.CountAsync());
        for (int i = 1; i < Sessions; i += 2)
        {
            Assert.True(await store.ContainsAsync(Id($"session-{i}")));
        }
    }

    [Fact]
    public async Task Out_of_contract_arguments_are_rejected()
    {
        using ISessionStore store = CreateStore();
        byte[] ok = Id("ok");

        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.AddAsync(Array.Empty<byte>(), ok, Minute));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.AddAsync(new byte[65], ok, Minute));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.AddAsync(ok, Array.Empty<byte>(), Minute));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.AddAsync(ok, new byte[32769], Minute));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.AddAsync(ok, ok, TimeSpan.FromTicks(-1)));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.ContainsAsync(Array.Empty<byte>()));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.RemoveAsync(new byte[65]));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.ReadAsync(new byte[65]));
        Assert.Equal(0, await store.CountAsync());
    }

    [Fact]
    public async Task Cancelled_token_cancels_the_call()
    {
        using ISessionStore store = CreateStore();
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await store.AddAsync(Id("a"), Id("b"), Minute, cts.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await store.ContainsAsync(Id("a"), cts.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await store.CountAsync(cts.Token));
        Assert.Equal(0, await store.CountAsync());
    }

    [Fact]
    public async Task Concurrent_clients_see_consistent_sessions()
    {
        using ISessionStore store = CreateStore();
        const int Workers = 4;
        const int Iterations = 4000;
        byte[][] shared = Enumerable.Range(0, 16).Select(i => Id($"shared-{i}")).ToArray();
        using var start = new Barrier(Workers);

        Task[] workers = Enumerable.Range(0, Workers).Select(worker => Task.Factory.StartNew(() =>
        {
            var random = new Random(worker);
            start.SignalAndWait();
            for (int i = 0; i < Iterations; i++)
            {
                // Disjoint ids: this worker is the only writer, so every answer is exact.
                byte[] own = Id($"worker-{worker}-{i % 50}");
                byte[] payload = Payload(own, i, 40 + random.Next(2000));
                Assert.Equal(AddResult.Stored, store.AddAsync(own, payload, Minute).AsTask().Result);
                Assert.Equal(payload, store.ReadAsync(own).Result);
                Assert.Equal(AddResult.AlreadyExists, store.AddAsync(own, payload, Minute).AsTask().Result);
                Assert.True(store.RemoveAsync(own).AsTask().Result);

                // Shared ids: any answer is possible, but data read must be a whole payload of that id.
                byte[] id = shared[random.Next(shared.Length)];
                switch (random.Next(4))
                {
                    case 0:
                        store.AddAsync(id, Payload(id, i, 30 + random.Next(3000)), Minute).AsTask().Wait();
                        break;
                    case 1:
                        store.RemoveAsync(id).AsTask().Wait();
                        break;
                    case 2:
                        _ = store.ContainsAsync(id).AsTask().Result;
                        break;
                    default:
                        byte[]? read = store.ReadAsync(id).Result;
                        Assert.True(read is null || IsPayloadOf(read, id));
                        break;
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();

        await Task.WhenAll(workers);

        int present = 0;
        foreach (byte[] id in shared)
        {
            byte[]? read = await store.ReadAsync(id);
            if (read is not null)
            {
                Assert.True(IsPayloadOf(read, id));
                present++;
            }
        }

        Assert.Equal(present, await store.CountAsync());
    }

    /// <summary>One randomised step against the store; ids are small indices so operations collide.</summary>
    public sealed record Step(int Kind, int Id, int Value);

    [Fact]
    public void Random_operations_agree_with_a_dictionary_model()
    {
        Gen<Step[]> steps = Gen.Select(Gen.Int[0, 6], Gen.Int[0, 15], Gen.Int[0, 40], (kind, id, value) => new Step(kind, id, value)).Array[1, 120];
        steps.Sample(RunAgainstModel, iter: 300, threads: 1);
    }

    private void RunAgainstModel(Step[] steps)
    {
        var clock = new ManualTimeProvider();
        using ISessionStore store = CreateStore(clock);
        var model = new Dictionary<int, (byte[] Data, long ExpiresAt)>();
        long now = 0;

        bool Live(int id, out byte[] data)
        {
            if (model.TryGetValue(id, out var session) && session.ExpiresAt > now)
            {
                data = session.Data;
                return true;
            }

            data = [];
            return false;
        }

        for (int i = 0; i < steps.Length; i++)
        {
            Step step = steps[i];
            byte[] id = ModelId(step.Id);
            string where = $"step {i} {step}";
            switch (step.Kind)
            {
                case 0:
                case 1:
                    {
                        byte[] data = Data(1 + (step.Value * 97), i);
                        int timeout = step.Value % 25;
                        AddResult expected = Live(step.Id, out _) ? AddResult.AlreadyExists : AddResult.Stored;
                        AddResult actual = store.AddAsync(id, data, TimeSpan.FromMilliseconds(timeout)).AsTask().Result;
                        Assert.True(expected == actual, where);
                        if (expected == AddResult.Stored)
                        {
                            model[step.Id] = (data, now + timeout);
                        }

                        break;
                    }

                case 2:
                    {
                        bool live = Live(step.Id, out byte[] data);
                        byte[]? read = store.ReadAsync(id).Result;
                        Assert.True(live ? read is not null && read.AsSpan().SequenceEqual(data) : read is null, where);
                        break;
                    }

                case 3:
                    {
                        bool live = Live(step.Id, out _);
                        Assert.True(live == store.RemoveAsync(id).AsTask().Result, where);
                        model.Remove(step.Id);
                        break;
                    }

                case 4:
                    Assert.True(Live(step.Id, out _) == store.ContainsAsync(id).AsTask().Result, where);
                    break;

                case 5:
                    Assert.True(model.Values.Count(s => s.ExpiresAt > now) == store.CountAsync().AsTask().Result, where);
                    break;

                default:
                    now += step.Value % 12;
                    clock.AdvanceMilliseconds(step.Value % 12);
                    break;
            }
        }
    }

    /// <summary>Sixteen ids in four families, each family's ids prefixes of one another.</summary>
    private static byte[] ModelId(int index)
    {
        byte[] id = new byte[1 + (index & 3)];
        id.AsSpan().Fill((byte)(index >> 2));
        return id;
    }
}
