using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Distcache.Storage;

namespace Distcache.Server;

/// <summary>
/// One client's view of the shared store: its session ids are mapped into its partition, and a read-only client's
/// writes are refused. Made per connection; it does not own the store.
/// </summary>
/// <remarks>
/// <para>The partition is kept out of the id's length budget: the store key is SHA-256 over the partition name
/// (length-prefixed, so no two partition/id pairs encode alike) and the id, 32 bytes whatever the id's length. A
/// 64-byte id, the protocol's maximum, therefore works in every partition, and no store needs a wider id limit.
/// Finding another partition's key means finding a SHA-256 preimage.</para>
/// <para>ADD by a read-only client answers <see cref="AddResult.Failed"/>, REMOVE answers false: on the wire
/// both are the failure byte 1 (NOTOK), which every 1.5.1 client treats as "not done".</para>
/// </remarks>
internal sealed class PartitionedSessionStore : ISessionStore
{
    private readonly ISessionStore _store;
    private readonly byte[] _prefix;
    private readonly bool _readOnly;

    public PartitionedSessionStore(ISessionStore store, ClientAccess access)
    {
        _store = store;
        _readOnly = access.ReadOnly;
        byte[] name = Encoding.UTF8.GetBytes(access.Partition);
        _prefix = new byte[4 + name.Length];
        BinaryPrimitives.WriteInt32BigEndian(_prefix, name.Length);
        name.CopyTo(_prefix, 4);
    }

    public ValueTask<AddResult> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (_readOnly)
        {
            return new ValueTask<AddResult>(AddResult.Failed);
        }

        return _store.AddAsync(KeyOf(id.Span), data, timeout, cancellationToken);
    }

    public ValueTask<bool> GetAsync<TState>(ReadOnlyMemory<byte> id, SessionDataReader<TState> reader, TState state, CancellationToken cancellationToken = default) =>
        _store.GetAsync(KeyOf(id.Span), reader, state, cancellationToken);

    public ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        if (_readOnly)
        {
            return new ValueTask<bool>(false);
        }

        return _store.RemoveAsync(KeyOf(id.Span), cancellationToken);
    }

    public ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) =>
        _store.ContainsAsync(KeyOf(id.Span), cancellationToken);

    /// <summary>All partitions together: the store has no per-partition count.</summary>
    public ValueTask<long> CountAsync(CancellationToken cancellationToken = default) => _store.CountAsync(cancellationToken);

    /// <summary>Nothing to release: the shared store belongs to the server.</summary>
    public void Dispose()
    {
    }

    internal byte[] KeyOf(ReadOnlySpan<byte> id)
    {
        // A fresh array per request: the store may hold on to the key across an asynchronous call.
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(_prefix);
        hash.AppendData(id);
        return hash.GetHashAndReset();
    }
}
