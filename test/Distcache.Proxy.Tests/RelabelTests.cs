using System.Buffers;
using System.Buffers.Binary;
using Distcache.Networking;
using Distcache.Protocol;
using Distcache.Proxy.Tests.Support;

namespace Distcache.Proxy.Tests;

/// <summary>The raw copy with rewritten headers, on input split across buffer segments as a pipe delivers it.</summary>
public sealed class RelabelTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(2062)]
    [InlineData(5000)]
    public void Every_frame_gets_the_new_uid_and_level_and_the_payload_is_untouched(int segmentSize)
    {
        byte[] data = MultiplexerTests.RandomData(new Random(8), 9000);
        byte[] original = Wire.Add(0xAABBCCDD, "relabel", data);
        for (int frame = 0; frame < 5; frame++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(original.AsSpan(frame * 2062), 0x0011_0003);
        }

        var output = new PooledBuffer();
        output.Append(3).Fill(0xEE);
        Relabel.Append(output, Segmented(original, segmentSize), frames: 5, uid: 42, resetLevel: true);

        byte[] written = output.WrittenMemory.ToArray();
        Assert.Equal(new byte[] { 0xEE, 0xEE, 0xEE }, written[..3]);
        Assert.Equal(Wire.Add(42, "relabel", data), written[3..]);
        output.Reset();
        Assert.Equal(0, output.Length);
    }

    [Fact]
    public void A_response_keeps_its_level()
    {
        byte[] response = Wire.Data(9, Operation.Get, [1, 2, 3, 4, 5]);
        BinaryPrimitives.WriteUInt32BigEndian(response, 0x0011_0001);
        var output = new PooledBuffer();
        Relabel.Append(output, new ReadOnlySequence<byte>(response), frames: 1, uid: 3, resetLevel: false);
        byte[] expected = Wire.Data(3, Operation.Get, [1, 2, 3, 4, 5]);
        BinaryPrimitives.WriteUInt32BigEndian(expected, 0x0011_0001);
        Assert.Equal(expected, output.WrittenMemory.ToArray());
    }

    private static ReadOnlySequence<byte> Segmented(byte[] bytes, int size)
    {
        Segment first = new(bytes.AsMemory(0, Math.Min(size, bytes.Length)), 0);
        Segment last = first;
        for (int at = size; at < bytes.Length; at += size)
        {
            last = last.Append(bytes.AsMemory(at, Math.Min(size, bytes.Length - at)));
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
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
