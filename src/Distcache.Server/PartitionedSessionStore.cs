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
/// <para>No allocation per request: the key is hashed into a buffer of this connection's, which is safe because a
/// connection makes one store call at a time and a store copies what it keeps of an id before its call completes
/// (<see cref="ISessionStore.AddAsync"/>). A pipelined read's lookups are handed on to the store's prefetch, as
/// keys, like an unpartitioned connection's.</para>
/// </remarks>
internal sealed class PartitionedSessionStore : ISessionStore, ISessionPrefetch
{
    private const int KeyLength = 32;

    private readonly ISessionStore _store;
    private readonly ISessionPrefetch? _prefetch;
    private readonly int _prefixLength;
    private readonly bool _readOnly;

    // The length-prefixed partition name followed by room for the longest id: what is hashed, without a copy per
    // request into a fresh array.
    private readonly byte[] _input;
    private readonly byte[] _key = new byte[KeyLength];
    private byte[] _prefetchKeys = [];
    private ReadOnlyMemory<byte>[] _prefetchIds = [];

    public PartitionedSessionStore(ISessionStore store, ClientAccess access)
    {
        _store = store;
        _prefetch = store as ISessionPrefetch;
        _readOnly = access.ReadOnly;
        byte[] name = Encoding.UTF8.GetBytes(access.Partition);
        _prefixLength = 4 + name.Length;
        _input = new byte[_prefixLength + SessionStoreLimits.MaxIdLength];
        BinaryPrimitives.WriteInt32BigEndian(_input, name.Length);
        name.CopyTo(_input, 4);
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

    /// <summary>Prefetches the keys of <paramref name="ids"/> in the shared store, if it prefetches.</summary>
    public void Prefetch(ReadOnlySpan<ReadOnlyMemory<byte>> ids)
    {
        if (_prefetch is null || ids.IsEmpty)
        {
            return;
        }

        if (_prefetchIds.Length < ids.Length)
        {
            _prefetchIds = new ReadOnlyMemory<byte>[ids.Length];
            _prefetchKeys = new byte[ids.Length * KeyLength];
        }

        ReadOnlyMemory<byte>[] keys = _prefetchIds;
        int count = 0;
        foreach (ReadOnlyMemory<byte> id in ids)
        {
            // An id the request processor would refuse is never looked up, so it is not worth fetching.
            if (id.Length is >= 1 and <= SessionStoreLimits.MaxIdLength)
            {
                Memory<byte> key = _prefetchKeys.AsMemory(count * KeyLength, KeyLength);
                Hash(id.Span, key.Span);
                keys[count++] = key;
            }
        }

        _prefetch.Prefetch(keys.AsSpan(0, count));
    }

    /// <summary>Nothing to release: the shared store belongs to the server.</summary>
    public void Dispose()
    {
    }

    /// <summary>
    /// The store key of <paramref name="id"/> in this partition. Valid until the next call: the buffer is reused.
    /// </summary>
    internal ReadOnlyMemory<byte> KeyOf(ReadOnlySpan<byte> id)
    {
        Hash(id, _key);
        return _key;
    }

    private void Hash(ReadOnlySpan<byte> id, Span<byte> key)
    {
        if (id.Length <= SessionStoreLimits.MaxIdLength)
        {
            id.CopyTo(_input.AsSpan(_prefixLength));
            SHA256.HashData(_input.AsSpan(0, _prefixLength + id.Length), key);
            return;
        }

        // Longer than any store accepts: the request processor refuses these before they get here, but the key of
        // such an id is still well defined (and allocating for it is no concern).
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(_input.AsSpan(0, _prefixLength));
        hash.AppendData(id);
        hash.GetHashAndReset(key);
    }
}
