using System.Buffers;
using System.Buffers.Binary;
using Distcache.Protocol;

namespace Distcache.Protocol.Tests.Support;

/// <summary>Builds raw frames and multi-segment sequences for decoder tests.</summary>
internal static class Bytes
{
    public static byte[] Header(
        uint protoLevel = ProtocolConstants.ProtoLevel,
        byte isResponse = 0,
        uint uid = 1,
        byte opClass = 0,
        byte operation = (byte)Operation.Get,
        byte complete = 1,
        ushort dataLength = 0)
    {
        var h = new byte[ProtocolConstants.FrameHeaderSize];
        BinaryPrimitives.WriteUInt32BigEndian(h, protoLevel);
        h[4] = isResponse;
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(5), uid);
        h[9] = opClass;
        h[10] = operation;
        h[11] = complete;
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(12), dataLength);
        return h;
    }

    public static byte[] Frame(byte[] header, int dataLength, byte fill = 0xAB)
    {
        var f = new byte[header.Length + dataLength];
        header.CopyTo(f, 0);
        f.AsSpan(header.Length).Fill(fill);
        return f;
    }

    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    public static byte[] Encode(Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] Random(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>A sequence whose segments end at the given offsets, so that parsers meet data split anywhere.</summary>
    public static ReadOnlySequence<byte> Segmented(byte[] data, IEnumerable<int> cuts)
    {
        var points = cuts.Where(c => c > 0 && c < data.Length).Distinct().Order().ToList();
        if (points.Count == 0)
        {
            return new ReadOnlySequence<byte>(data);
        }

        Segment? first = null, last = null;
        int start = 0;
        foreach (int end in points.Append(data.Length))
        {
            var memory = data.AsMemory(start, end - start);
            if (first is null)
            {
                first = last = new Segment(memory, 0);
            }
            else
            {
                last = last!.Append(memory);
            }

            start = end;
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
