using Distcache.Storage;

namespace Distcache.Client.Tests.Support;

/// <summary>A memory store whose GETs can be held back, so that a test can keep requests in flight on purpose.</summary>
internal sealed class GatedStore : ISessionStore
{
    private readonly MemorySessionStore _inner = new(new MemorySessionStoreOptions { MaxSessions = 0 });
    private TaskCompletionSource? _gate;
    private int _waiting;

    /// <summary>GETs that are currently held back.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    public void Close() => Volatile.Write(ref _gate, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    public void Open() => Interlocked.Exchange(ref _gate, null)?.TrySetResult();

    public ValueTask<AddResult> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        _inner.AddAsync(id, data, timeout, cancellationToken);

    public async ValueTask<bool> GetAsync<TState>(ReadOnlyMemory<byte> id, SessionDataReader<TState> reader, TState state, CancellationToken cancellationToken = default)
    {
        if (Volatile.Read(ref _gate) is { } gate)
        {
            Interlocked.Increment(ref _waiting);
            try
            {
                await gate.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
            }
            finally
            {
                Interlocked.Decrement(ref _waiting);
            }
        }

        return await _inner.GetAsync(id, reader, state, cancellationToken);
    }

    public ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) => _inner.RemoveAsync(id, cancellationToken);

    public ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) => _inner.ContainsAsync(id, cancellationToken);

    public ValueTask<long> CountAsync(CancellationToken cancellationToken = default) => _inner.CountAsync(cancellationToken);

    public void Dispose()
    {
        Open();
        _inner.Dispose();
    }
}
