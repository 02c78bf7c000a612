using Distcache.Client;
using Distcache.Networking;

namespace Distcache.TicketKeys.Tests;

/// <summary>One pass over a real (in-process) dc_server, as the hosts of a farm make them.</summary>
public class KeySyncTests
{
    private const uint Period = 60;
    private static readonly KeySchedule Schedule = new("farm", Period);
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly long Current = Schedule.PeriodAt(Now);

    private static DistcacheClient Client(InProcessServer server) =>
        DistcacheClient.Connect(new DistcacheClientOptions { Address = server.Address, OperationTimeout = TimeSpan.FromSeconds(5) });

    [Fact]
    public async Task The_first_host_makes_the_current_and_next_keys_and_the_others_take_them()
    {
        await using var server = InProcessServer.Start();
        await using DistcacheClient client = Client(server);
        var first = new KeyRing();
        SyncReport made = await new KeySync(client, Schedule, readOnly: false).RunAsync(first, Now, CancellationToken.None);
        Assert.True(made.Complete, string.Join("; ", made.Problems));
        Assert.Equal(2, made.Events.Count(e => e.StartsWith("made the key of period ", StringComparison.Ordinal)));
        Assert.NotNull(first.Find(Current));
        Assert.NotNull(first.Find(Current + 1));

        // No previous key was made: nobody can have issued tickets with one.
        Assert.Null(first.Find(Current - 1));

        var second = new KeyRing();
        SyncReport taken = await new KeySync(client, Schedule, readOnly: true).RunAsync(second, Now, CancellationToken.None);
        Assert.True(taken.Complete, string.Join("; ", taken.Problems));
        Assert.Equal(first.Find(Current), second.Find(Current));
        Assert.Equal(first.Find(Current + 1), second.Find(Current + 1));
    }

    [Fact]
    public async Task Hosts_racing_for_new_keys_all_end_with_the_same_ones()
    {
        await using var server = InProcessServer.Start();
        for (int round = 0; round < 20; round++)
        {
            // Each round is a period no host has seen: eight hosts start it at once, each on its own connection.
            DateTimeOffset at = Schedule.StartOf(Current + 10 + (2 * round));
            DistcacheClient[] clients = [.. Enumerable.Range(0, 8).Select(_ => Client(server))];
            KeyRing[] rings = [.. clients.Select(_ => new KeyRing())];
            SyncReport[] reports = await Task.WhenAll(clients.Select((c, i) => new KeySync(c, Schedule, readOnly: false).RunAsync(rings[i], at, CancellationToken.None)));
            foreach (DistcacheClient c in clients)
            {
                await c.DisposeAsync();
            }

            Assert.All(reports, r => Assert.True(r.Complete, string.Join("; ", r.Problems)));
            long period = Schedule.PeriodAt(at);
            Assert.All(rings, r => Assert.Equal(rings[0].Find(period), r.Find(period)));
            Assert.All(rings, r => Assert.Equal(rings[0].Find(period + 1), r.Find(period + 1)));

            // Exactly one host made each key.
            Assert.Equal(2, reports.Sum(r => r.Events.Count(e => e.StartsWith("made ", StringComparison.Ordinal))));
        }
    }

    [Fact]
    public async Task A_cache_that_lost_its_keys_gets_this_hosts_copies_back_not_new_ones()
    {
        var ring = new KeyRing();
        await using (var before = InProcessServer.Start())
        await using (DistcacheClient client = Client(before))
        {
            await new KeySync(client, Schedule, readOnly: false).RunAsync(ring, Now, CancellationToken.None);
        }

        // A fresh, empty server, as after a restart of a memory store; the period has moved on meanwhile.
        DateTimeOffset later = Schedule.StartOf(Current + 1);
        await using var after = InProcessServer.Start();
        await using DistcacheClient again = Client(after);
        SyncReport report = await new KeySync(again, Schedule, readOnly: false).RunAsync(ring, later, CancellationToken.None);
        Assert.True(report.Complete, string.Join("; ", report.Problems));
        Assert.Contains(report.Events, e => e.Contains($"the cache had lost the key of period {Current} ", StringComparison.Ordinal));
        Assert.Contains(report.Events, e => e.Contains($"the cache had lost the key of period {Current + 1} ", StringComparison.Ordinal));
        Assert.Contains(report.Events, e => e.StartsWith($"made the key of period {Current + 2} ", StringComparison.Ordinal));

        // Another host now finds the keys the first one held.
        var other = new KeyRing();
        await new KeySync(again, Schedule, readOnly: true).RunAsync(other, later, CancellationToken.None);
        Assert.Equal(ring.Find(Current), other.Find(Current));
        Assert.Equal(ring.Find(Current + 1), other.Find(Current + 1));
    }

    [Fact]
    public async Task A_malformed_key_in_the_cache_is_refused_never_taken_and_the_saved_one_stays()
    {
        await using var server = InProcessServer.Start();
        await using DistcacheClient client = Client(server);
        byte[] damaged = TicketKey.Create(Current, Period).ToRecord();
        damaged[30] ^= 0xFF;
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(Schedule.CacheId(Current), damaged, TimeSpan.FromMinutes(5)));
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(Schedule.CacheId(Current + 1), "not a key at all"u8.ToArray(), TimeSpan.FromMinutes(5)));

        var ring = new KeyRing();
        TicketKey saved = TicketKey.Create(Current, Period);
        ring.Set(saved);
        SyncReport report = await new KeySync(client, Schedule, readOnly: false).RunAsync(ring, Now, CancellationToken.None);
        Assert.False(report.Complete);
        Assert.Contains($"the cache holds a malformed key for period {Current} ('dctk1:farm:60:{Current}'), which is not used: its checksum does not match: the record was altered or damaged", report.Problems);
        Assert.Contains($"the cache holds a malformed key for period {Current + 1} ('dctk1:farm:60:{Current + 1}'), which is not used: it is 16 bytes, not {TicketKey.RecordSize}", report.Problems);
        Assert.Same(saved, ring.Find(Current));
        Assert.Null(ring.Find(Current + 1));
    }

    [Fact]
    public async Task The_caches_key_wins_over_a_different_saved_one_with_a_warning()
    {
        await using var server = InProcessServer.Start();
        await using DistcacheClient client = Client(server);
        TicketKey agreed = TicketKey.Create(Current, Period);
        await client.AddAsync(Schedule.CacheId(Current), agreed.ToRecord(), TimeSpan.FromMinutes(5));
        var ring = new KeyRing();
        TicketKey mine = TicketKey.Create(Current, Period);
        ring.Set(mine);
        SyncReport report = await new KeySync(client, Schedule, readOnly: false).RunAsync(ring, Now, CancellationToken.None);
        Assert.Contains($"the cache's key for period {Current} ({agreed.Label}) differs from the one this host saved ({mine.Label}): taking the cache's", report.Problems);
        Assert.Equal(agreed, ring.Find(Current));
    }

    [Fact]
    public async Task A_reading_host_adds_nothing_and_says_what_is_missing()
    {
        await using var server = InProcessServer.Start();
        await using DistcacheClient client = Client(server);
        var ring = new KeyRing();
        SyncReport report = await new KeySync(client, Schedule, readOnly: true).RunAsync(ring, Now, CancellationToken.None);
        Assert.Equal(0, ring.Count);
        Assert.Contains($"the cache has no key for period {Current} ('dctk1:farm:60:{Current}') yet, and this host only reads keys: is the host that makes them running?", report.Problems);
        Assert.False(await client.ContainsAsync(Schedule.CacheId(Current)));
    }

    [Fact]
    public async Task A_reading_host_does_not_miss_the_next_key_before_half_the_period_has_passed()
    {
        await using var server = InProcessServer.Start();
        await using DistcacheClient client = Client(server);
        long period = Current + 100;
        await client.AddAsync(Schedule.CacheId(period), TicketKey.Create(period, Period).ToRecord(), TimeSpan.FromMinutes(5));

        // The writer makes keys every few minutes: early in the period the next one may not be there yet.
        var ring = new KeyRing();
        SyncReport early = await new KeySync(client, Schedule, readOnly: true).RunAsync(ring, Schedule.StartOf(period).AddSeconds(5), CancellationToken.None);
        Assert.True(early.Complete, string.Join("; ", early.Problems));
        Assert.NotNull(ring.Find(period));

        SyncReport late = await new KeySync(client, Schedule, readOnly: true).RunAsync(ring, Schedule.StartOf(period).AddSeconds(31), CancellationToken.None);
        Assert.Equal([$"the cache has no key for period {period + 1} ('dctk1:farm:60:{period + 1}') yet, and this host only reads keys: is the host that makes them running?"], late.Problems);
    }

    [Fact]
    public async Task An_unreachable_cache_ends_the_pass_and_keeps_the_ring()
    {
        await using var server = InProcessServer.Start();
        Address address = server.Address;
        await server.DisposeAsync();
        await using DistcacheClient client = DistcacheClient.Connect(new DistcacheClientOptions { Address = address, OperationTimeout = TimeSpan.FromMilliseconds(500), ConnectTimeout = TimeSpan.FromMilliseconds(500) });
        var ring = new KeyRing();
        TicketKey saved = TicketKey.Create(Current, Period);
        ring.Set(saved);
        SyncReport report = await new KeySync(client, Schedule, readOnly: false).RunAsync(ring, Now, CancellationToken.None);
        Assert.NotNull(report.Unreachable);
        Assert.False(report.Complete);
        Assert.Same(saved, ring.Find(Current));
        Assert.Equal(1, ring.Count);
    }
}
