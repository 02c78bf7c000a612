using Distcache.Storage.Tests;

namespace Distcache.Storage.Redis.Tests;

/// <summary>The contract suite against the Redis store on one redis-server.</summary>
public sealed class RedisSessionStoreContractTests(RedisFixture redis) : SessionStoreContractTests, IClassFixture<RedisFixture>
{
    protected override ISessionStore CreateStore(TimeProvider clock) => redis.CreateStore(clock);
}

/// <summary>The contract suite against the Redis store on a three-node Redis Cluster: every key lands on the node
/// of its slot, and counting visits every primary.</summary>
public sealed class RedisClusterSessionStoreContractTests(RedisClusterFixture redis) : SessionStoreContractTests, IClassFixture<RedisClusterFixture>
{
    protected override ISessionStore CreateStore(TimeProvider clock) => redis.CreateStore(clock);
}

/// <summary>
/// The capacity suite against the Redis store. The store enforces neither bound: Redis's maxmemory with
/// volatile-ttl governs capacity (docs/operations.md), so every test here is skipped by the Supports flags.
/// </summary>
public sealed class RedisSessionStoreCapacityContractTests(RedisFixture redis) : SessionStoreCapacityContractTests, IClassFixture<RedisFixture>
{
    protected override bool SupportsMaxSessions => false;

    protected override bool SupportsMaxBytes => false;

    protected override long MinMaxBytes => throw new NotSupportedException("The Redis store has no byte bound.");

    protected override ISessionStore CreateStore(TimeProvider clock, int maxSessions, long maxBytes) => redis.CreateStore(clock);

    protected override long SessionCost(int idLength, int dataLength) => throw new NotSupportedException("The Redis store has no byte bound.");

    protected override long BytesUsed(ISessionStore store) => throw new NotSupportedException("The Redis store has no byte bound.");
}
