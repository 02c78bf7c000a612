using StackExchange.Redis;

namespace Distcache.Storage.Redis.Tests;

/// <summary>One redis-server (or one cluster) per test class, and an administrative connection to it.</summary>
public abstract class RedisFixtureBase : IAsyncLifetime
{
    private RedisServers? _servers;
    private ConnectionMultiplexer? _connection;

    /// <summary>The running servers.</summary>
    public RedisServers Servers => _servers ?? throw new InvalidOperationException("Not started.");

    /// <summary>A connection shared by the stores of the tests (admin commands allowed, for flushing).</summary>
    public ConnectionMultiplexer Connection => _connection ?? throw new InvalidOperationException("Not started.");

    protected abstract Task<RedisServers> StartServersAsync();

    public async ValueTask InitializeAsync()
    {
        _servers = await StartServersAsync();
        var options = new RedisSessionStoreOptions { OperationTimeout = TimeSpan.FromSeconds(10), ConnectTimeout = TimeSpan.FromSeconds(10) };
        foreach (string endpoint in _servers.Endpoints)
        {
            options.Endpoints.Add(endpoint);
        }

        ConfigurationOptions configuration = RedisSessionStore.CreateConfiguration(options);
        configuration.AllowAdmin = true;
        _connection = await ConnectionMultiplexer.ConnectAsync(configuration);
    }

    /// <summary>Empties every primary, so that each store of a test starts alone (tests of a class run one at a time).</summary>
    public void Flush()
    {
        foreach (IServer server in Connection.GetServers().Where(s => !s.IsReplica))
        {
            server.FlushDatabase();
        }
    }

    /// <summary>A store on the shared connection, following <paramref name="clock"/>, on an emptied database.</summary>
    public RedisSessionStore CreateStore(TimeProvider clock)
    {
        Flush();
        return new RedisSessionStore(Connection, new RedisSessionStoreOptions
        {
            KeyPrefix = "test:",
            TimeProvider = clock,
            // The tests move a manual clock far ahead of real time; Redis's own TTL must not collect a session
            // the manual clock still considers live.
            ExpiryGrace = TimeSpan.FromMinutes(10),
            CountRefreshInterval = TimeSpan.Zero,
        });
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }

        if (_servers is not null)
        {
            await _servers.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }
}

/// <summary>One standalone redis-server.</summary>
public sealed class RedisFixture : RedisFixtureBase
{
    protected override Task<RedisServers> StartServersAsync() => RedisServers.StartAsync();
}

/// <summary>A three-node Redis Cluster without replicas.</summary>
public sealed class RedisClusterFixture : RedisFixtureBase
{
    protected override Task<RedisServers> StartServersAsync() => RedisServers.StartClusterAsync();
}
