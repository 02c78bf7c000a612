using System.Diagnostics;
using Distcache.Networking;
using Distcache.Protocol;
using Distcache.Proxy.Tests.Support;
using Distcache.Testing;

namespace Distcache.Proxy.Tests;

/// <summary>
/// One proxy, several servers: each request goes to its session's server, requests for different servers are in
/// flight together, and each local connection still gets its answers in the order of its requests.
/// </summary>
public sealed class SpreadTests
{
    private const int Requests = 150;

    private static string Id(int i) => $"spread-session-{i:D4}";

    private static byte[] Data(int i) => [.. System.Text.Encoding.ASCII.GetBytes($"data of {i}"), (byte)i];

    // The servers' own count of what they hold, to see where the sessions went.
    private static int Held(InProcessServer server) => ((Distcache.Storage.MemorySessionStore)server.Store).Count;

    private static DistcacheProxyOptions Options(IEnumerable<string> servers, int timeoutMilliseconds = 10_000) => new()
    {
        Servers = [.. servers.Select(Address.Parse)],
        RetryInterval = TimeSpan.FromMilliseconds(100),
        OperationTimeout = TimeSpan.FromMilliseconds(timeoutMilliseconds),
        NativeTransport = true,
    };

    [Fact(Timeout = 60_000)]
    public async Task Pipelined_requests_over_three_servers_are_in_flight_together_and_answered_in_order()
    {
        // Each server answers after its own delay, so answers reach the proxy out of the order of the requests. One
        // request in flight at a time would take Requests x the delay (45 s and more); all in flight, one delay.
        await using var a = InProcessServer.Start();
        await using var b = InProcessServer.Start();
        await using var c = InProcessServer.Start();
        await using var slowA = FaultProxy.Start(a.Address.ToString());
        await using var slowB = FaultProxy.Start(b.Address.ToString());
        await using var slowC = FaultProxy.Start(c.Address.ToString());
        slowA.ToClient.Delay = TimeSpan.FromMilliseconds(300);
        slowB.ToClient.Delay = TimeSpan.FromMilliseconds(600);
        slowC.ToClient.Delay = TimeSpan.FromMilliseconds(100);
        await using ProxyHarness proxy = await ProxyHarness.StartAsync(Options([slowA.Address, slowB.Address, slowC.Address]));
        await proxy.WaitUntilAsync(() => proxy.Proxy.ConnectedServers == 3, "all three links up");
        using TestClient client = await proxy.ConnectAsync();

        var adds = Stopwatch.StartNew();
        await client.SendAsync(Frames.Concat([.. Enumerable.Range(0, Requests).Select(i => Frames.Add((uint)i + 1, Id(i), Data(i)))]));
        for (int i = 0; i < Requests; i++)
        {
            Received answer = await client.ReceiveAsync();
            Assert.Equal(((uint)i + 1, Operation.Add), (answer.Uid, answer.Operation));
            Assert.Equal([(byte)StatusCode.Ok], answer.Payload);
        }

        adds.Stop();

        // Every server took a share: the requests really were spread.
        int[] shares = [Held(a), Held(b), Held(c)];
        Assert.Equal(Requests, shares.Sum());
        Assert.All(shares, share => Assert.InRange(share, Requests / 10, Requests * 2 / 3));

        var gets = Stopwatch.StartNew();
        await client.SendAsync(Frames.Concat([.. Enumerable.Range(0, Requests).Select(i => Frames.Get((uint)(1000 + i), Id(i)))]));
        for (int i = 0; i < Requests; i++)
        {
            Received answer = await client.ReceiveAsync();
            Assert.Equal(((uint)(1000 + i), Operation.Get), (answer.Uid, answer.Operation));
            Assert.Equal(Data(i), answer.Payload);
        }

        gets.Stop();

        // In flight together: a few times the slowest server's delay, nowhere near one delay per request.
        Assert.True(adds.Elapsed < TimeSpan.FromSeconds(8), $"{Requests} pipelined ADDs took {adds.Elapsed}");
        Assert.True(gets.Elapsed < TimeSpan.FromSeconds(8), $"{Requests} pipelined GETs took {gets.Elapsed}");
        Assert.Equal(0, proxy.Statistics.ServerLinkLosses);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_server_that_is_down_leaves_its_sessions_to_the_next_one_on_the_ring()
    {
        await using var a = InProcessServer.Start();
        await using var b = InProcessServer.Start();
        await using ProxyHarness proxy = await ProxyHarness.StartAsync(Options([a.Address.ToString(), b.Address.ToString()]));
        await proxy.WaitUntilAsync(() => proxy.Proxy.ConnectedServers == 2, "both links up");
        await a.StopAsync();
        await proxy.WaitUntilAsync(() => proxy.Proxy.ConnectedServers == 1, "the link to the stopped server is lost");

        using TestClient client = await proxy.ConnectAsync();
        for (int i = 0; i < 40; i++)
        {
            Received added = await client.CallAsync(Frames.Add(1, Id(i), Data(i)));
            Received read = await client.CallAsync(Frames.Get(2, Id(i)));
            Assert.Equal([(byte)StatusCode.Ok], added.Payload);
            Assert.Equal(Data(i), read.Payload);
        }

        Assert.Equal(40, Held(b));

        // No server at all: every request is answered DISCONNECTED at once, as with one server.
        await b.StopAsync();
        await proxy.WaitForLinkAsync(up: false);
        Received refused = await client.CallAsync(Frames.Get(3, Id(0)));
        Assert.Equal(Frames.Disconnected(3, Operation.Get), refused.Raw);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_lost_server_answers_its_requests_disconnected_without_reordering_the_others()
    {
        // The first server holds its answers; the second answers at once. The first one's link is then lost: its
        // requests are answered DISCONNECTED, and every answer still comes in the order of the requests.
        await using var a = InProcessServer.Start();
        await using var b = InProcessServer.Start();
        await using var heldA = FaultProxy.Start(a.Address.ToString());
        await using ProxyHarness proxy = await ProxyHarness.StartAsync(Options([heldA.Address, b.Address.ToString()]));
        await proxy.WaitUntilAsync(() => proxy.Proxy.ConnectedServers == 2, "both links up");
        using TestClient client = await proxy.ConnectAsync();

        // The first request is one of the held server's (the ring is public: any dc_client computes the same).
        var ring = new ConsistentHashRing([heldA.Address, b.Address.ToString()]);
        int first = Enumerable.Range(0, 1000).First(i => ring.Owner(System.Text.Encoding.ASCII.GetBytes(Id(i))) == 0);
        int[] order = [first, .. Enumerable.Range(0, 60).Where(i => i != first).Take(59)];

        heldA.ToClient.Silent = true;
        await client.SendAsync(Frames.Concat([.. order.Select((id, i) => Frames.Add((uint)i + 1, Id(id), Data(id)))]));
        await proxy.WaitUntilAsync(() => Held(b) > 0, "the second server stores its share");
        Assert.True(await client.StaysSilentAsync(TimeSpan.FromMilliseconds(300)), "answers went out before the answer to the first request");
        heldA.ResetAll();

        int disconnected = 0;
        for (int i = 0; i < 60; i++)
        {
            Received answer = await client.ReceiveAsync();
            Assert.Equal((uint)i + 1, answer.Uid);
            byte status = Assert.Single(answer.Payload);
            Assert.True(status is (byte)StatusCode.Ok or (byte)StatusCode.Disconnected, $"answer {i}: {status}");
            disconnected += status == (byte)StatusCode.Disconnected ? 1 : 0;
        }

        Assert.Equal(60 - Held(b), disconnected);
    }

    [Fact(Timeout = 120_000)]
    public async Task In_flight_counts_stay_exact_while_several_links_answer_as_the_reader_forwards()
    {
        // The reader raises a connection's count of requests in flight while the links' readers lower it on other
        // threads. A lost update there would leave the count off for good: a connection stalled by flow control, or
        // one that never finishes closing because it still waits for an answer.
        await using var a = InProcessServer.Start();
        await using var b = InProcessServer.Start();
        await using var c = InProcessServer.Start();
        DistcacheProxyOptions options = Options([a.Address.ToString(), b.Address.ToString(), c.Address.ToString()]);
        await using ProxyHarness proxy = await ProxyHarness.StartAsync(new DistcacheProxyOptions
        {
            Servers = options.Servers,
            RetryInterval = options.RetryInterval,
            OperationTimeout = options.OperationTimeout,
            NativeTransport = true,
            MaxRequestsInFlightPerConnection = 16,
        });
        await proxy.WaitUntilAsync(() => proxy.Proxy.ConnectedServers == 3, "all three links up");

        for (int round = 0; round < 4; round++)
        {
            using TestClient client = await proxy.ConnectAsync();
            const int Count = 4000;
            Task sending = Task.Run(async () =>
            {
                for (int i = 0; i < Count; i += 50)
                {
                    await client.SendAsync(Frames.Concat([.. Enumerable.Range(i, 50).Select(k => Frames.Have((uint)k, Id(k)))]));
                }
            });
            for (int i = 0; i < Count; i++)
            {
                Received answer = await client.ReceiveAsync();
                Assert.Equal((uint)i, answer.Uid);
            }

            await sending;
            client.ShutdownSend();
            Assert.True(await client.ClosesWithinAsync(TimeSpan.FromSeconds(10)), $"round {round}: the connection did not close after its last answer");
        }

        await proxy.WaitUntilAsync(() => proxy.Statistics.OpenConnections == 0, "every connection closed");
    }
}
