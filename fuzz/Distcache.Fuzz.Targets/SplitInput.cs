using System.Buffers;
using System.Buffers.Binary;

namespace Distcache.Fuzz;

/// <summary>
/// The input format of the targets that also choose how the bytes arrive: byte 0 holds a selector in its high
/// four bits and the number of cut points (0..15) in its low four; then one big-endian 16-bit segment length per
/// cut point (taken modulo what is left, so every value means something); the rest is the byte stream. The last
/// segment gets whatever the cut points leave. Segments may be empty.
/// </summary>
public sealed class SplitInput
{
    private SplitInput(int selector, byte[] data, List<byte[]> segments)
    {
        Selector = selector;
        Data = data;
        Segments = segments;
    }

    /// <summary>The high four bits of byte 0, for the target to interpret.</summary>
    public int Selector { get; }

    /// <summary>The whole byte stream.</summary>
    public byte[] Data { get; }

    /// <summary>The stream cut into the pieces it arrives in, each its own array.</summary>
    internal List<byte[]> Segments { get; }

    public static SplitInput Parse(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return new SplitInput(0, [], [[]]);
        }

        int selector = input[0] >> 4;
        int cuts = input[0] & 0x0F;
        int headerLength = Math.Min(input.Length, 1 + (2 * cuts));
        ReadOnlySpan<byte> lengths = input[1..headerLength];
        byte[] data = input[headerLength..].ToArray();
        var segments = new List<byte[]>(cuts + 1);
        int position = 0;
        for (int i = 0; i + 1 < lengths.Length; i += 2)
        {
            int left = data.Length - position;
            int length = BinaryPrimitives.ReadUInt16BigEndian(lengths[i..]) % (left + 1);
            segments.Add(data.AsSpan(position, length).ToArray());
            position += length;
        }

        segments.Add(data.AsSpan(position).ToArray());
        return new SplitInput(selector, data, segments);
    }

    /// <summary>Encodes an input: the selector, the segment lengths, then the stream.</summary>
    public static byte[] Encode(int selector, IReadOnlyList<int> segmentLengths, ReadOnlySpan<byte> data)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(segmentLengths.Count, 15, nameof(segmentLengths));
        var output = new byte[1 + (2 * segmentLengths.Count) + data.Length];
        output[0] = (byte)((selector << 4) | segmentLengths.Count);
        for (int i = 0; i < segmentLengths.Count; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(output.AsSpan(1 + (2 * i)), (ushort)segmentLengths[i]);
        }

        data.CopyTo(output.AsSpan(1 + (2 * segmentLengths.Count)));
        return output;
    }
}

/// <summary>A chain of receive buffers, grown one segment at a time, as a pipe reader presents them.</summary>
internal sealed class SegmentChain
{
    private Segment? _first;
    private Segment? _last;

    /// <summary>All bytes appended so far.</summary>
    public long Length => _last is null ? 0 : _last.RunningIndex + _last.Memory.Length;

    public void Append(byte[] bytes)
    {
        var segment = new Segment(bytes, _last);
        _first ??= segment;
        _last = segment;
    }

    /// <summary>The bytes from <paramref name="start"/> to the end, spanning the segments as they are.</summary>
    public ReadOnlySequence<byte> From(long start) =>
        _first is null || _last is null
            ? ReadOnlySequence<byte>.Empty
            : new ReadOnlySequence<byte>(_first, 0, _last, _last.Memory.Length).Slice(start);

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] bytes, Segment? previous)
        {
            Memory = bytes;
            if (previous is not null)
            {
                RunningIndex = previous.RunningIndex + previous.Memory.Length;
                previous.Next = this;
            }
        }
    }
}
