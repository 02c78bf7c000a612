using System.Diagnostics;
using Distcache.EndToEnd.Tests.Support;
using Distcache.Protocol;

namespace Distcache.EndToEnd.Tests;

/// <summary>dc_client with three dc_servers: sessions spread over them, and one killed under load takes only its
/// own share with it.</summary>
[Collection(ScaleOutCollection.Name)]
public sealed class ShardedDcClientTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static byte[] Id(int i) => Sessions.Id("spread", i);

    [Fact(Timeout = 60_000)]
    public async Task With_no_server_reachable_every_request_is_answered_disconnected()
    {
        string proxyAddress = $"UNIX:{_dir.File("unreachable.sock")}";
        await using Tool proxy = Tool.Start("dc_client", "-listen", proxyAddress, "-server", $"IP:127.0.0.1:{Tool.FreePort()}", "-server", $"IP:127.0.0.1:{Tool.FreePort()}", "-timeout", "1000");
        await proxy.WaitForListenerAsync(proxyAddress);
        using var socket = Wire.Open(proxyAddress);

        Assert.Equal([(byte)StatusCode.Disconnected], Wire.Add(socket, Id(1), Sessions.Data(1)));
        Assert.Equal([(byte)StatusCode.Disconnected], Wire.Get(socket, Id(1)));
        Assert.Equal([(byte)StatusCode.Disconnected], Wire.Ask(socket, w => Requests.WriteIdRequest(w, 7, Operation.Have, Id(1))));
    }

    [Fact(Timeout = 60_000)]
    public async Task A_malformed_add_closes_only_that_local_connection()
    {
        await using RunningServer a = await RunningServer.StartServerAsync();
        await using RunningServer b = await RunningServer.StartServerAsync();
        string proxyAddress = $"UNIX:{_dir.File("malformed.sock")}";
        await using Tool proxy = Tool.Start("dc_client", "-listen", proxyAddress, "-server", a.Address, "-server", b.Address);
        await proxy.WaitForListenerAsync(proxyAddress);
        using var good = Wire.Open(proxyAddress);
        using var bad = Wire.Open(proxyAddress);

        // An ADD payload shorter than its 8-byte prefix: the server would drop the connection, and so does the proxy.
        Wire.Send(bad, w =>
        {
            var writer = new MessageWriter(w, false, 1, Operation.Add, 3);
            writer.Write([1, 2, 3]);
            writer.Complete();
        });
        Assert.True(Wire.IsClosedByPeer(bad));

        // ADDs outside the limits get the server's codes, from the proxy itself.
        Assert.Equal([102], Wire.Add(good, [1], [1], timeoutMs: 604_800_001));
        Assert.Equal([103], Wire.Add(good, new byte[65], [1]));
        Assert.Equal([100], Wire.Ask(good, w =>
        {
            var writer = new MessageWriter(w, false, 1, Operation.Add, 12);
            writer.WriteUInt32BigEndian(1000);
            writer.WriteUInt32BigEndian(0x8000_0000);
            writer.Write([1, 2, 3, 4]);
            writer.Complete();
        }));
        Assert.Equal([0], Wire.Add(good, Id(2), Sessions.Data(2)));
        Assert.Equal(Sessions.Data(2), Wire.Get(good, Id(2)));
    }

    [Fact(Timeout = 180_000)]
    public async Task Sessions_spread_over_three_servers_and_killing_one_under_load_leaves_the_others_answers_intact()
    {
        await using RunningServer a = await RunningServer.StartServerAsync("-sessions", "0");
        await using RunningServer b = await RunningServer.StartServerAsync("-sessions", "0");
        await using RunningServer c = await RunningServer.StartServerAsync("-sessions", "0");
        RunningServer[] servers = [a, b, c];
        string proxyAddress = $"UNIX:{_dir.File("dc_client.sock")}";

        // The killed server's link fails at once (the kernel closes its sockets), so the timeout only has to be long
        // enough that a busy machine's stall never makes a surviving server's answer count as lost.
        await using Tool proxy = Tool.Start("dc_client", "-listen", proxyAddress, "-server", a.Address, "-server", b.Address, "-server", c.Address, "-retry", "200", "-timeout", "10000");
        await proxy.WaitForListenerAsync(proxyAddress);
        await proxy.WaitUntilAsync(() => proxy.Stderr.Contains("spreading sessions over 3 servers", StringComparison.Ordinal), TimeSpan.FromSeconds(20), "the start-up line");

        const int Count = 1500;
        using (var socket = Wire.Open(proxyAddress))
        {
            for (int i = 0; i < Count; i++)
            {
                Assert.Equal([0], Wire.Add(socket, Id(i), Sessions.Data(i), 600_000));
            }
        }

        // Ask each server directly which sessions it holds: each session is on exactly one.
        int[] holder = new int[Count];
        int[] spread = new int[servers.Length];
        for (int s = 0; s < servers.Length; s++)
        {
            using var direct = Wire.Open(servers[s].Address);
            for (int i = 0; i < Count; i++)
            {
                if (Wire.Have(direct, Id(i)))
                {
                    Assert.Equal(0, holder[i]);
                    holder[i] = s + 1;
                    spread[s]++;
                }
            }
        }

        output.WriteLine($"spread of {Count} sessions over three dc_servers: {string.Join(", ", spread.Select((n, s) => $"{servers[s].Address} {n} ({100.0 * n / Count:F1}%)"))}");
        Assert.Equal(Count, spread.Sum());
        Assert.All(spread, n => Assert.InRange(n, Count / 6, Count * 2 / 3));

        // Load: readers go through dc_client over every session while the first server is killed.
        using var stop = new CancellationTokenSource();
        long killedAt = 0;
        var problems = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long[] hits = new long[2];
        long[] lostOrDisconnected = new long[2];
        Task[] readers = [.. Enumerable.Range(0, 3).Select(r => Task.Run(() =>
        {
            using var socket = Wire.Open(proxyAddress);
            var random = new Random(r);
            int requests = 0;
            while (!stop.IsCancellationRequested && requests++ < 200_000)
            {
                int i = random.Next(Count);
                byte[] answer = Wire.Get(socket, Id(i));
                bool afterKill = Interlocked.Read(ref killedAt) != 0;
                int phase = afterKill ? 1 : 0;
                if (answer.Length > 1)
                {
                    if (!answer.AsSpan().SequenceEqual(Sessions.Data(i)))
                    {
                        problems.Enqueue($"wrong data for session {i}");
                    }

                    Interlocked.Increment(ref hits[phase]);
                }
                else if (holder[i] != 1)
                {
                    // A session of a surviving server must never miss.
                    problems.Enqueue($"session {i} on server {holder[i]} answered {answer[0]} {(afterKill ? "after" : "before")} the kill");
                }
                else if (answer[0] != (byte)StatusCode.NotOk && answer[0] != (byte)StatusCode.Disconnected)
                {
                    problems.Enqueue($"session {i} answered status {answer[0]}");
                }
                else
                {
                    Interlocked.Increment(ref lostOrDisconnected[phase]);
                }
            }
        }))];

        await Task.Delay(1000);
        a.Tool.Kill();
        Interlocked.Exchange(ref killedAt, Stopwatch.GetTimestamp());
        await Task.Delay(2500);
        await stop.CancelAsync();
        await Task.WhenAll(readers).WaitAsync(TimeSpan.FromSeconds(60));

        output.WriteLine($"before the kill: {hits[0]} hits, {lostOrDisconnected[0]} misses; after: {hits[1]} hits, {lostOrDisconnected[1]} misses of the killed server's sessions");
        Assert.Empty(problems);
        Assert.True(hits[1] > 0 && lostOrDisconnected[1] > 0, "the load did not run on after the kill");

        // New sessions of the killed server's share go to the survivors and read back.
        using (var socket = Wire.Open(proxyAddress))
        {
            for (int i = Count; i < Count + 300; i++)
            {
                Assert.Equal([0], Wire.Add(socket, Id(i), Sessions.Data(i), 600_000));
                Assert.Equal(Sessions.Data(i), Wire.Get(socket, Id(i)));
            }
        }
    }
}
