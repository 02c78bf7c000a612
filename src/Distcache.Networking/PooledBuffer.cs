using System.Buffers;
using System.Diagnostics.CodeAnalysis;

namespace Distcache.Networking;

/// <summary>
/// A growable byte buffer on pooled arrays, for bytes waiting to be written to one connection. Not thread-safe:
/// the owner guards it with a lock.
/// </summary>
/// <remarks>
/// A <see cref="CoalescingWriter"/> has two: one that producers append to, and one being written; it swaps them,
/// so appending never waits for a socket. The array goes back to the pool whenever the buffer is emptied, so an
/// idle connection holds no buffer memory at all.
/// </remarks>
public sealed class PooledBuffer : IBufferWriter<byte>
{
    private const int MinimumSize = 4096;

    private byte[]? _array;
    private int _length;

    /// <summary>The number of bytes written.</summary>
    public int Length => _length;

    /// <summary>The bytes written so far; valid until the next write or <see cref="Reset"/>.</summary>
    public ReadOnlyMemory<byte> WrittenMemory => _array is null ? ReadOnlyMemory<byte>.Empty : new ReadOnlyMemory<byte>(_array, 0, _length);

    /// <summary>Reserves <paramref name="count"/> bytes at the end and returns them for the caller to fill.</summary>
    public Span<byte> Append(int count)
    {
        Span<byte> span = GetSpan(count)[..count];
        _length += count;
        return span;
    }

    /// <inheritdoc/>
    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (_array is null || _length + count > _array.Length)
        {
            throw new InvalidOperationException("Advanced past the end of the buffer.");
        }

        _length += count;
    }

    /// <inheritdoc/>
    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(Math.Max(sizeHint, 1));
        return _array.AsMemory(_length);
    }

    /// <inheritdoc/>
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(Math.Max(sizeHint, 1));
        return _array.AsSpan(_length);
    }

    /// <summary>Empties the buffer and returns its array to the pool.</summary>
    public void Reset()
    {
        if (_array is not null)
        {
            ArrayPool<byte>.Shared.Return(_array);
            _array = null;
        }

        _length = 0;
    }

    [MemberNotNull(nameof(_array))]
    private void Ensure(int more)
    {
        if (_array is null)
        {
            _array = ArrayPool<byte>.Shared.Rent(Math.Max(more, MinimumSize));
            return;
        }

        if (_array.Length - _length >= more)
        {
            return;
        }

        byte[] bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_length + more, _array.Length * 2));
        _array.AsSpan(0, _length).CopyTo(bigger);
        ArrayPool<byte>.Shared.Return(_array);
        _array = bigger;
    }
}
