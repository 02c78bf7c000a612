namespace Distcache.Storage.Tests;

/// <summary>The contract suite against the in-memory store.</summary>
public sealed class MemorySessionStoreContractTests : SessionStoreContractTests
{
    protected override ISessionStore CreateStore(TimeProvider clock) =>
        new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 100_000, MaxBytes = 256L << 20, TimeProvider = clock });
}

/// <summary>The capacity suite against the in-memory store.</summary>
public sealed class MemorySessionStoreCapacityContractTests : SessionStoreCapacityContractTests
{
    protected override long MinMaxBytes => MemorySessionStoreOptions.MinMaxBytes;

    protected override ISessionStore CreateStore(TimeProvider clock, int maxSessions, long maxBytes) =>
        new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = maxSessions, MaxBytes = maxBytes, TimeProvider = clock });

    protected override long SessionCost(int idLength, int dataLength) => idLength + dataLength + MemorySessionStore.PerSessionOverhead;

    protected override long BytesUsed(ISessionStore store) => ((MemorySessionStore)store).BytesUsed;
}
