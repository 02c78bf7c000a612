using System.Buffers;
using System.Diagnostics.CodeAnalysis;

namespace Distcache.Networking;

/// <summary>
/// A growable window of bytes on a pooled array: bytes are added at the end and taken from the start, and the
/// window moves to the front of the array, or to a larger one, only when the end has no room. Not thread-safe: the
/// owner guards it.
/// </summary>
/// <remarks>
/// <para>The one buffer of every connection's bytes in flight. A <see cref="CoalescingWriter"/> has two, one that
/// producers append to and one being written, and swaps them, so appending never waits for a socket. The native
/// transport's reader receives into one (bytes received at the end, consumed by the parser from the start) and its
/// writer keeps one (bytes written at the end, sent from the start).</para>
/// <para>The array goes back to the pool on <see cref="Reset"/>, so an idle connection holds no buffer memory.</para>
/// </remarks>
public sealed class PooledBuffer : IBufferWriter<byte>
{
    private const int MinimumSize = 4096;

    private byte[]? _array;
    private int _start;
    private int _end;

    /// <summary>The number of bytes in the window.</summary>
    public int Length => _end - _start;

    /// <summary>The bytes in the window; valid until the next change or <see cref="Reset"/>.</summary>
    public ReadOnlyMemory<byte> WrittenMemory => _array is null ? ReadOnlyMemory<byte>.Empty : new ReadOnlyMemory<byte>(_array, _start, _end - _start);

    /// <summary>The array the window is in, or null before the first byte; for a transport that fills or drains it in place.</summary>
    public byte[]? Array => _array;

    /// <summary>The offset of the window's first byte in <see cref="Array"/>.</summary>
    public int Start => _start;

    /// <summary>The offset just past the window's last byte in <see cref="Array"/>: where the next byte goes.</summary>
    public int End => _end;

    /// <summary>Reserves <paramref name="count"/> bytes at the end and returns them for the caller to fill.</summary>
    /// <param name="count">How many bytes.</param>
    /// <returns>The bytes, part of the window from now on.</returns>
    public Span<byte> Append(int count)
    {
        Span<byte> span = GetSpan(count)[..count];
        _end += count;
        return span;
    }

    /// <inheritdoc/>
    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (_array is null || _end + count > _array.Length)
        {
            throw new InvalidOperationException("Advanced past the end of the buffer.");
        }

        _end += count;
    }

    /// <inheritdoc/>
    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        EnsureFree(Math.Max(sizeHint, 1), MinimumSize);
        return _array.AsMemory(_end);
    }

    /// <inheritdoc/>
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        EnsureFree(Math.Max(sizeHint, 1), MinimumSize);
        return _array.AsSpan(_end);
    }

    /// <summary>Takes <paramref name="count"/> bytes from the start of the window.</summary>
    /// <param name="count">How many bytes; at most <see cref="Length"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative or more than the window holds.</exception>
    public void Consume(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _end - _start);
        _start += count;
    }

    /// <summary>
    /// Makes room for at least <paramref name="needed"/> bytes after <see cref="End"/>: takes an array of
    /// <paramref name="initialSize"/> bytes (or more) the first time, then moves the window to the front of the array
    /// when that makes the room, or into one at least twice as large. Returns how far the window's bytes moved
    /// towards the front (0 when they stayed), for an owner that keeps offsets of its own into the array.
    /// </summary>
    /// <param name="needed">The room needed at the end.</param>
    /// <param name="initialSize">The size of the first array.</param>
    /// <returns>How many places every byte of the window moved down.</returns>
    [MemberNotNull(nameof(_array))]
    public int EnsureFree(int needed, int initialSize)
    {
        if (_array is null)
        {
            _array = ArrayPool<byte>.Shared.Rent(Math.Max(needed, initialSize));
            _start = _end = 0;
            return 0;
        }

        if (_array.Length - _end >= needed)
        {
            return 0;
        }

        int length = _end - _start;
        byte[] target = _array.Length - length >= needed
            ? _array
            : ArrayPool<byte>.Shared.Rent(Math.Max(_array.Length * 2, length + needed));
        Buffer.BlockCopy(_array, _start, target, 0, length);
        if (!ReferenceEquals(target, _array))
        {
            ArrayPool<byte>.Shared.Return(_array);
            _array = target;
        }

        int moved = _start;
        _start = 0;
        _end = length;
        return moved;
    }

    /// <summary>Empties the buffer and returns its array to the pool.</summary>
    public void Reset()
    {
        if (_array is not null)
        {
            ArrayPool<byte>.Shared.Return(_array);
            _array = null;
        }

        _start = _end = 0;
    }
}
