using Distcache.Client.Tests.Support;
using Distcache.Networking;
using Distcache.Protocol;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>The sharded client against three in-process servers: spreading, failover of ADDs, misses and no
/// wrong answers while a server is down, and return to the owner when it is back.</summary>
public sealed class ShardedClientTests
{
    private static byte[] Id(int i) => Bytes($"session-{i:D6}");

    private static byte[] Data(int i) => Bytes($"data of session {i} " + new string('x', i % 300));

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(20);
        }
    }

    [Fact(Timeout = 60_000)]
    public async Task Sessions_spread_over_servers_and_survive_one_going_down()
    {
        await using InProcessServer a = InProcessServer.Start("IP:127.0.0.1:0");
        await using InProcessServer b = InProcessServer.Start("IP:127.0.0.1:0");
        await using InProcessServer c = InProcessServer.Start("IP:127.0.0.1:0");
        InProcessServer[] servers = [a, b, c];
        DistcacheClientOptions options = Options(a.Address);
        options.ReconnectMinDelay = TimeSpan.FromMilliseconds(20);
        options.ReconnectMaxDelay = TimeSpan.FromMilliseconds(100);
        await using var client = new ShardedDistcacheClient(servers.Select(s => s.Address), options);
        Assert.Equal(3, await client.WaitForFirstAttemptsAsync());

        const int Sessions = 3000;
        for (int i = 0; i < Sessions; i++)
        {
            Assert.Equal(AddOutcome.Stored, await client.AddAsync(Id(i), Data(i), TimeSpan.FromMinutes(5)));
        }

        // Each server holds exactly the sessions the ring gives it.
        long[] held = await Task.WhenAll(servers.Select(s => s.Store.CountAsync().AsTask()));
        Assert.Equal(Sessions, held.Sum());
        Assert.All(held, h => Assert.InRange(h, Sessions / 5, Sessions / 2));

        // The first server dies.
        a.Kill();
        await WaitUntilAsync(() => !client.Servers[0].IsConnected);

        int hits = 0;
        for (int i = 0; i < Sessions; i++)
        {
            byte[]? read = await client.GetAsync(Id(i));
            if (client.Ring.Owner(Id(i)) == 0)
            {
                Assert.Null(read);
            }
            else
            {
                Assert.Equal(Data(i), read);
                hits++;
            }
        }

        Assert.Equal(held[1] + held[2], hits);

        // New sessions of the dead server's share go to the survivors and can be read back.
        int redirected = 0;
        for (int i = Sessions; i < Sessions + 600; i++)
        {
            Assert.Equal(AddOutcome.Stored, await client.AddAsync(Id(i), Data(i), TimeSpan.FromMinutes(5)));
            Assert.Equal(Data(i), await client.GetAsync(Id(i)));
            redirected += client.Ring.Owner(Id(i)) == 0 ? 1 : 0;
        }

        Assert.True(redirected > 50);

        // It comes back (empty, as a restarted process would): its ids route to it again and miss, nothing is wrong.
        var store = new Distcache.Storage.MemorySessionStore(new Distcache.Storage.MemorySessionStoreOptions { MaxSessions = 0 });
        await using InProcessServer back = InProcessServer.Start(a.Address.ToString(), store);
        await WaitUntilAsync(() => client.Servers[0].IsConnected);
        for (int i = 0; i < Sessions + 600; i++)
        {
            byte[]? read = await client.GetAsync(Id(i));
            Assert.True(read is null || read.AsSpan().SequenceEqual(Data(i)));

            // Owned by the restarted server: lost with it, or left on a survivor during the outage; either way a miss.
            Assert.Equal(client.Ring.Owner(Id(i)) != 0, read is not null);
        }
    }

    [Fact(Timeout = 30_000)]
    public async Task An_add_whose_link_breaks_under_it_is_stored_on_the_next_server()
    {
        // The first connection to the fake server is reset as soon as a request arrives; later ones are served.
        await using var failing = new FakeServer(async connection =>
        {
            if (connection.Index == 0)
            {
                await connection.ReceiveAsync();
                connection.Reset();
            }
            else
            {
                await connection.ServeWellAsync();
            }
        });
        await using InProcessServer healthy = InProcessServer.Start("IP:127.0.0.1:0");
        await using var client = new ShardedDistcacheClient([failing.Address, healthy.Address], Options(healthy.Address));
        Assert.Equal(2, await client.WaitForFirstAttemptsAsync());
        byte[] id = Enumerable.Range(0, 1000).Select(Id).First(candidate => client.Ring.Owner(candidate) == 0);

        Assert.Equal(AddOutcome.Stored, await client.AddAsync(id, Data(1), TimeSpan.FromMinutes(1)));

        Assert.True(await healthy.Store.ContainsAsync(id));
    }

    [Fact(Timeout = 30_000)]
    public async Task With_no_server_reachable_requests_fail_as_a_single_clients_do()
    {
        Address nowhere1 = Address.Parse("IP:127.0.0.1:1");
        Address nowhere2 = Address.Parse("IP:127.0.0.1:2");
        await using var client = new ShardedDistcacheClient([nowhere1, nowhere2], Options(nowhere1, timeoutMs: 2000));
        Assert.Equal(0, await client.WaitForFirstAttemptsAsync());

        await Assert.ThrowsAsync<DistcacheConnectionException>(async () => await client.GetAsync(Id(1)));
        await Assert.ThrowsAsync<DistcacheConnectionException>(async () => await client.AddAsync(Id(1), Data(1), TimeSpan.FromMinutes(1)));
    }

    [Fact]
    public void Options_reach_every_link_with_its_own_address()
    {
        Address first = Address.Parse("IP:127.0.0.1:1");
        Address second = Address.Parse("IP:127.0.0.1:2");
        DistcacheClientOptions options = Options(first, timeoutMs: 1234);
        options.Connection = new ConnectionOptions();
        using var client = new ShardedDistcacheClient([first, second], options);

        Assert.Equal([first, second], client.Servers.Select(s => s.Address));
        DistcacheClientOptions copy = options.ForServer(second);
        Assert.Equal(second, copy.Address);
        Assert.Same(options.Connection, copy.Connection);
        Assert.Equal(TimeSpan.FromMilliseconds(1234), copy.OperationTimeout);
        Assert.Equal(first, options.Address);
    }

    [Fact]
    public void Duplicate_or_missing_servers_are_refused()
    {
        Address one = Address.Parse("IP:127.0.0.1:1");
        Assert.Throws<ArgumentException>(() => new ShardedDistcacheClient([]));
        Assert.Throws<ArgumentException>(() => new ShardedDistcacheClient([one, one]));
    }
}
