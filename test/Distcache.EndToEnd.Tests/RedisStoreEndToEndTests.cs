using System.Diagnostics;
using System.Globalization;
using System.Text;
using Distcache.EndToEnd.Tests.Support;
using Distcache.Protocol;

namespace Distcache.EndToEnd.Tests;

/// <summary>One redis-server for the whole class.</summary>
public sealed class RedisServerFixture : IAsyncLifetime
{
    public RedisServers Servers { get; private set; } = null!;

    public string StoreArgument => "redis:" + string.Join(',', Servers.Endpoints);

    public async ValueTask InitializeAsync() => Servers = await RedisServers.StartAsync();

    public async ValueTask DisposeAsync() => await Servers.DisposeAsync();
}

/// <summary>A three-node Redis Cluster for the whole class.</summary>
public sealed class RedisClusterFixture : IAsyncLifetime
{
    public RedisServers Servers { get; private set; } = null!;

    public string StoreArgument => "redis:" + string.Join(',', Servers.Endpoints);

    public async ValueTask InitializeAsync() => Servers = await RedisServers.StartClusterAsync();

    public async ValueTask DisposeAsync() => await Servers.DisposeAsync();
}

internal static class Sessions
{
    public static byte[] Id(string test, int i) => Encoding.ASCII.GetBytes($"{test}-{i:D5}");

    public static byte[] Data(int i) => Encoding.ASCII.GetBytes($"session {i} " + new string((char)('a' + (i % 26)), 20 + (i % 500)));
}

/// <summary>The scale-out tests start several servers each and put load on them: they run one class at a time,
/// after the others, so that they do not starve the timing-sensitive tests of other classes of CPU.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ScaleOutCollection
{
    public const string Name = "Scale-out (alone)";
}

/// <summary>Several dc_server processes on one real redis-server: one set of sessions, whichever server is asked.</summary>
[Collection(ScaleOutCollection.Name)]
public sealed class RedisStoreEndToEndTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>
{
    [Fact(Timeout = 120_000)]
    public async Task Two_servers_share_sessions_and_one_serves_them_all_after_the_other_is_killed()
    {
        string prefix = "-redisprefix";
        await using RunningServer first = await RunningServer.StartOnRedisAsync("-store", redis.StoreArgument, prefix, "shared:", "-redistimeout", "5000");
        await using RunningServer second = await RunningServer.StartOnRedisAsync("-store", redis.StoreArgument, prefix, "shared:", "-redistimeout", "5000");
        using var viaFirst = Wire.Open(first.Address);
        using var viaSecond = Wire.Open(second.Address);
        const int Count = 300;

        for (int i = 0; i < Count; i++)
        {
            Assert.Equal([0], Wire.Add(i % 2 == 0 ? viaFirst : viaSecond, Sessions.Id("shared", i), Sessions.Data(i)));
        }

        // Whichever server added it, both see it, and neither may add it again.
        for (int i = 0; i < Count; i++)
        {
            Assert.Equal(Sessions.Data(i), Wire.Get(i % 2 == 0 ? viaSecond : viaFirst, Sessions.Id("shared", i)));
        }

        Assert.Equal([(byte)StatusCode.AddErrMatchingSession], Wire.Add(viaSecond, Sessions.Id("shared", 0), Sessions.Data(1)));
        Assert.Equal([0], Wire.Ask(viaSecond, w => Requests.WriteIdRequest(w, 1, Operation.Remove, Sessions.Id("shared", 1))));
        Assert.False(Wire.Have(viaFirst, Sessions.Id("shared", 1)));

        first.Tool.Kill();

        for (int i = 0; i < Count; i++)
        {
            byte[] read = Wire.Get(viaSecond, Sessions.Id("shared", i));
            Assert.Equal(i == 1 ? [(byte)StatusCode.NotOk] : Sessions.Data(i), read);
        }
    }

    [Fact(Timeout = 60_000)]
    public async Task Servers_with_different_prefixes_do_not_see_each_others_sessions()
    {
        await using RunningServer a = await RunningServer.StartOnRedisAsync("-store", redis.StoreArgument, "-redisprefix", "tenant-a:", "-redistimeout", "5000");
        await using RunningServer b = await RunningServer.StartOnRedisAsync("-store", redis.StoreArgument, "-redisprefix", "tenant-b:", "-redistimeout", "5000");
        using var toA = Wire.Open(a.Address);
        using var toB = Wire.Open(b.Address);

        Assert.Equal([0], Wire.Add(toA, Sessions.Id("tenant", 1), Sessions.Data(1)));

        Assert.True(Wire.Have(toA, Sessions.Id("tenant", 1)));
        Assert.False(Wire.Have(toB, Sessions.Id("tenant", 1)));
    }

    [Theory(Timeout = 30_000)]
    [InlineData("Error, -memory does not apply", "-store", "redis:127.0.0.1:6379", "-memory", "100M")]
    [InlineData("Error, -sessions does not apply", "-store", "redis:127.0.0.1:6379", "-sessions", "1000")]
    [InlineData("Error, -store given an invalid argument: '127.0.0.1' is not HOST:PORT", "-store", "redis:127.0.0.1")]
    [InlineData("Error, -store given an invalid argument: 'x:0' is not HOST:PORT", "-store", "redis:127.0.0.1:6379,x:0")]
    [InlineData("Error, -store given an invalid argument: 'mem' is neither", "-store", "mem")]
    [InlineData("Error, -redisprefix applies only to -store redis:", "-redisprefix", "x:")]
    [InlineData("Error, -redistls applies only to -store redis:", "-redistls")]
    [InlineData("Error, -redisdb given an invalid argument", "-store", "redis:127.0.0.1:6379", "-redisdb", "x")]
    [InlineData("Error, -redistlsca could not read '/nonexistent/ca.pem'", "-store", "redis:127.0.0.1:6379", "-redistlsca", "/nonexistent/ca.pem")]
    [InlineData("Error, -redispassfile could not read '/nonexistent/pass'", "-store", "redis:127.0.0.1:6379", "-redispassfile", "/nonexistent/pass")]
    public async Task Bad_store_flags_are_refused_naming_the_flag(string expected, params string[] args)
    {
        await using Tool tool = await Tool.RunAsync(TimeSpan.FromSeconds(20), "dc_server", ["-listen", "IP:127.0.0.1:0", .. args]);
        Assert.Equal(1, tool.ExitCode);
        Assert.Contains(expected, tool.Stderr, StringComparison.Ordinal);
    }
}

/// <summary>dc_server while its Redis goes away and comes back (own redis-server: this class kills it).</summary>
[Collection(ScaleOutCollection.Name)]
public sealed class RedisOutageEndToEndTests
{
    [Fact(Timeout = 120_000)]
    public async Task Server_answers_failures_promptly_while_redis_is_down_and_recovers_by_itself()
    {
        await using RedisServers redis = await RedisServers.StartAsync();
        int port = redis.Ports[0];
        await using RunningServer server = await RunningServer.StartOnRedisAsync("-store", $"redis:127.0.0.1:{port}", "-redistimeout", "500");
        using var socket = Wire.Open(server.Address, timeoutMs: 15_000);
        Assert.Equal([0], Wire.Add(socket, Sessions.Id("outage", 1), Sessions.Data(1)));

        redis.Kill(port);
        var outage = Stopwatch.StartNew();
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal([(byte)StatusCode.NotOk], Wire.Get(socket, Sessions.Id("outage", 1)));
            Assert.NotEqual([0], Wire.Add(socket, Sessions.Id("outage", 100 + i), Sessions.Data(i)));
        }

        // Forty answers in a few seconds at most: failures, not hangs (one-sided, generous bound).
        Assert.True(outage.Elapsed < TimeSpan.FromSeconds(30), $"took {outage.Elapsed}");
        await server.Tool.WaitUntilAsync(() => server.Tool.Stderr.Contains("Lost the connection to Redis", StringComparison.Ordinal), TimeSpan.FromSeconds(20), "the outage to be logged");

        await redis.RestartAsync(port);
        var waited = Stopwatch.StartNew();
        byte[] answer;
        do
        {
            await Task.Delay(100);
            answer = Wire.Add(socket, Sessions.Id("outage", 2), Sessions.Data(2));
        }
        while (answer[0] != 0 && waited.Elapsed < TimeSpan.FromSeconds(30));

        Assert.Equal([0], answer);
        Assert.Equal(Sessions.Data(2), Wire.Get(socket, Sessions.Id("outage", 2)));
    }
}

/// <summary>dc_server on a three-node Redis Cluster: sessions land on every node and all read back.</summary>
[Collection(ScaleOutCollection.Name)]
public sealed class RedisClusterEndToEndTests(RedisClusterFixture cluster) : IClassFixture<RedisClusterFixture>
{
    [Fact(Timeout = 120_000)]
    public async Task Sessions_spread_over_the_cluster_nodes_and_read_back_through_another_server()
    {
        await using RunningServer first = await RunningServer.StartOnRedisAsync("-store", cluster.StoreArgument, "-redistimeout", "5000");
        await using RunningServer second = await RunningServer.StartOnRedisAsync("-store", $"redis:{cluster.Servers.Endpoints.Last()}", "-redistimeout", "5000");
        using var viaFirst = Wire.Open(first.Address);
        using var viaSecond = Wire.Open(second.Address);
        const int Count = 300;
        for (int i = 0; i < Count; i++)
        {
            Assert.Equal([0], Wire.Add(viaFirst, Sessions.Id("cluster", i), Sessions.Data(i)));
        }

        for (int i = 0; i < Count; i++)
        {
            Assert.Equal(Sessions.Data(i), Wire.Get(viaSecond, Sessions.Id("cluster", i)));
        }

        long total = 0;
        foreach (int port in cluster.Servers.Ports)
        {
            // Only this test's sessions: the servers' start-up probes are keys too, and short-lived.
            (_, string listed) = await RedisServers.RunCliAsync(["-p", port.ToString(CultureInfo.InvariantCulture), "--scan", "--pattern", "distcache:cluster-*"]);
            long keys = listed.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Length;
            Assert.True(keys > Count / 10, $"node {port} holds only {keys} keys");
            total += keys;
        }

        Assert.Equal(Count, total);
    }
}
