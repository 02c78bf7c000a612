using Distcache.Protocol;
using Distcache.Storage;

namespace Distcache.Server.Tests;

/// <summary>
/// The connection loop over a store whose calls complete later (as a remote store's do): pipelined requests are
/// still answered one for one, in the order they were sent, with the right data.
/// </summary>
public sealed class AsynchronousStoreTests
{
    /// <summary>The in-memory store behind a random delay per call, so completions arrive out of step with requests.</summary>
    private sealed class DelayedStore(ISessionStore inner) : ISessionStore
    {
        private readonly Random _random = new(42);

        private async Task PauseAsync()
        {
            int delay;
            lock (_random)
            {
                delay = _random.Next(3);
            }

            if (delay == 0)
            {
                await Task.Yield();
            }
            else
            {
                await Task.Delay(delay);
            }
        }

        public async ValueTask<AddResult> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default)
        {
            await PauseAsync();
            return await inner.AddAsync(id, data, timeout, cancellationToken);
        }

        public async ValueTask<bool> GetAsync<TState>(ReadOnlyMemory<byte> id, SessionDataReader<TState> reader, TState state, CancellationToken cancellationToken = default)
        {
            await PauseAsync();
            return await inner.GetAsync(id, reader, state, cancellationToken);
        }

        public async ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
        {
            await PauseAsync();
            return await inner.RemoveAsync(id, cancellationToken);
        }

        public async ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
        {
            await PauseAsync();
            return await inner.ContainsAsync(id, cancellationToken);
        }

        public ValueTask<long> CountAsync(CancellationToken cancellationToken = default) => inner.CountAsync(cancellationToken);

        public void Dispose() => inner.Dispose();
    }

    [Fact]
    public async Task Pipelined_requests_to_an_asynchronous_store_are_answered_in_order()
    {
        var store = new DelayedStore(new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 0 }));
        await using var server = new InProcess(new DistcacheServer(store));
        const int count = 200;
        await server.SendAsync(w =>
        {
            for (uint i = 0; i < count; i++)
            {
                byte[] id = BitConverter.GetBytes(i);
                Requests.WriteAdd(w, (i * 4) + 1, 60_000, id, [(byte)i, 7, 7]);
                Requests.WriteIdRequest(w, (i * 4) + 2, Operation.Get, id);
                Requests.WriteIdRequest(w, (i * 4) + 3, Operation.Remove, id);
                Requests.WriteIdRequest(w, (i * 4) + 4, Operation.Have, id);
            }
        });

        for (uint i = 0; i < count; i++)
        {
            var add = await server.ReceiveMessageAsync();
            var get = await server.ReceiveMessageAsync();
            var remove = await server.ReceiveMessageAsync();
            var have = await server.ReceiveMessageAsync();
            Assert.Equal(((i * 4) + 1, Operation.Add), (add.Uid, add.Op));
            Assert.Equal([0], add.Payload);
            Assert.Equal(((i * 4) + 2, Operation.Get), (get.Uid, get.Op));
            Assert.Equal([(byte)i, 7, 7], get.Payload);
            Assert.Equal(((i * 4) + 3, Operation.Remove), (remove.Uid, remove.Op));
            Assert.Equal([0], remove.Payload);
            Assert.Equal(((i * 4) + 4, Operation.Have), (have.Uid, have.Op));
            Assert.NotEqual(new byte[] { 0 }, have.Payload);
        }
    }
}
