using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Distcache.Storage.Tests;

namespace Distcache.Storage.Redis.Tests;

/// <summary>What the Redis store adds to the contract: its key layout, sharing between stores, and behaviour
/// while Redis is away.</summary>
public sealed class RedisSessionStoreTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);

    private RedisSessionStore NewStore(string prefix, TimeSpan? operationTimeout = null)
    {
        var options = new RedisSessionStoreOptions { KeyPrefix = prefix, CountRefreshInterval = TimeSpan.Zero, OperationTimeout = operationTimeout ?? TimeSpan.FromSeconds(5) };
        options.Endpoints.Add(redis.Servers.Endpoints.First());
        return new RedisSessionStore(options);
    }

    private Task<(int Code, string Output)> Cli(params string[] args) =>
        RedisServers.RunCliAsync(["-p", redis.Servers.Ports[0].ToString(CultureInfo.InvariantCulture), .. args]);

    [Fact]
    public async Task Session_is_one_key_under_the_prefix_with_a_millisecond_ttl()
    {
        using RedisSessionStore store = NewStore("layout:");
        Assert.Equal(AddResult.Stored, await store.AddAsync(Encoding.ASCII.GetBytes("abc"), TestData.Data(20, 1), TimeSpan.FromMilliseconds(90_500)));

        (_, string pttl) = await Cli("pttl", "layout:abc");
        long ttl = long.Parse(pttl.Trim(), CultureInfo.InvariantCulture);

        // The timeout plus the default one-second grace, less the moments since the SET; the value is a 16-digit
        // deadline and the data.
        Assert.InRange(ttl, 80_000, 91_500);
        (_, string strlen) = await Cli("strlen", "layout:abc");
        Assert.Equal(16 + 20, int.Parse(strlen.Trim(), CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Stores_with_one_prefix_share_sessions_and_other_prefixes_do_not_see_them()
    {
        using RedisSessionStore first = NewStore("shared:");
        using RedisSessionStore second = NewStore("shared:");
        using RedisSessionStore other = NewStore("other:");
        byte[] id = TestData.Id("one");

        Assert.Equal(AddResult.Stored, await first.AddAsync(id, TestData.Data(100, 5), Minute));

        Assert.Equal(TestData.Data(100, 5), await second.ReadAsync(id));
        Assert.Equal(AddResult.AlreadyExists, await second.AddAsync(id, TestData.Data(100, 6), Minute));
        Assert.False(await other.ContainsAsync(id));
        Assert.Equal(0, await other.CountAsync());
        Assert.True(await second.RemoveAsync(id));
        Assert.False(await first.ContainsAsync(id));
    }

    [Fact]
    public async Task Prefix_with_glob_characters_counts_only_its_own_keys()
    {
        using RedisSessionStore star = NewStore("g*:");
        using RedisSessionStore plain = NewStore("gx:");
        await plain.AddAsync(TestData.Id("a"), TestData.Data(10, 1), Minute);
        await star.AddAsync(TestData.Id("b"), TestData.Data(10, 2), Minute);

        Assert.Equal(1, await star.CountAsync());
        Assert.Equal(1, await plain.CountAsync());
    }

    [Fact]
    public async Task Count_is_reused_within_the_refresh_interval()
    {
        var options = new RedisSessionStoreOptions { KeyPrefix = "counted:", CountRefreshInterval = TimeSpan.FromHours(1) };
        options.Endpoints.Add(redis.Servers.Endpoints.First());
        using var store = new RedisSessionStore(options);
        Assert.Equal(0, await store.CountAsync());

        await store.AddAsync(TestData.Id("x"), TestData.Data(10, 1), Minute);

        Assert.Equal(0, await store.CountAsync());
    }
}

/// <summary>The store while its Redis is unreachable, and after it comes back. Each test has its own server.</summary>
public sealed class RedisSessionStoreOutageTests
{
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);

    private static RedisSessionStore StoreFor(int port) => StoreFor($"127.0.0.1:{port}");

    private static RedisSessionStore StoreFor(string endpoint)
    {
        var options = new RedisSessionStoreOptions
        {
            KeyPrefix = "outage:",
            OperationTimeout = TimeSpan.FromMilliseconds(500),
            ConnectTimeout = TimeSpan.FromMilliseconds(500),
        };
        options.Endpoints.Add(endpoint);
        return new RedisSessionStore(options);
    }

    private static int UnusedPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    [Fact]
    public async Task Unreachable_redis_answers_promptly_as_failed_add_and_misses()
    {
        var started = Stopwatch.StartNew();
        using RedisSessionStore store = StoreFor(UnusedPort());
        byte[] id = TestData.Id("nowhere");

        Assert.Equal(AddResult.Failed, await store.AddAsync(id, TestData.Data(10, 1), Minute));
        Assert.Null(await store.ReadAsync(id));
        Assert.False(await store.ContainsAsync(id));
        Assert.False(await store.RemoveAsync(id));
        Assert.Equal(0, await store.CountAsync());

        // One-sided and generous: the point is "seconds, not a hang".
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(20), $"took {started.Elapsed}");
        Assert.True(store.Failures >= 4);
    }

    [Fact]
    public async Task Store_recovers_by_itself_when_redis_comes_back()
    {
        await using RedisServers servers = await RedisServers.StartAsync();
        int port = servers.Ports[0];
        using RedisSessionStore store = StoreFor(port);
        Assert.Equal(AddResult.Stored, await AddWhenReachableAsync(store, TestData.Id("before")));

        servers.Kill(port);
        var outage = Stopwatch.StartNew();
        Assert.Equal(AddResult.Failed, await store.AddAsync(TestData.Id("during"), TestData.Data(10, 2), Minute));
        Assert.Null(await store.ReadAsync(TestData.Id("before")));
        Assert.True(outage.Elapsed < TimeSpan.FromSeconds(10), $"took {outage.Elapsed}");

        await servers.RestartAsync(port);

        // The restarted Redis is empty (no persistence); what matters is that operations succeed again unaided.
        Assert.Equal(AddResult.Stored, await AddWhenReachableAsync(store, TestData.Id("after")));
        Assert.Equal(TestData.Data(10, 3), await store.ReadAsync(TestData.Id("after")));
    }

    /// <summary>Retries an ADD for up to 30 seconds while it fails (the connection is made in the background, and a
    /// loaded machine may need more than the 500 ms connect timeout).</summary>
    private static async Task<AddResult> AddWhenReachableAsync(RedisSessionStore store, byte[] id)
    {
        var waited = Stopwatch.StartNew();
        AddResult result;
        while ((result = await store.AddAsync(id, TestData.Data(10, 3), Minute)) == AddResult.Failed && waited.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(100);
        }

        return result;
    }
}
