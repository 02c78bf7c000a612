using System.Buffers;
using System.Buffers.Binary;
using Distcache.Networking;
using Distcache.Protocol;

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
        byte[] original = Frames.Add(0xAABBCCDD, "relabel", data);
        for (int frame = 0; frame < 5; frame++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(original.AsSpan(frame * 2062), 0x0011_0003);
        }

        var output = new PooledBuffer();
        output.Append(3).Fill(0xEE);
        Relabel.Append(output, Frames.Segmented(original, segmentSize), frames: 5, uid: 42, resetLevel: true);

        byte[] written = output.WrittenMemory.ToArray();
        Assert.Equal(new byte[] { 0xEE, 0xEE, 0xEE }, written[..3]);
        Assert.Equal(Frames.Add(42, "relabel", data), written[3..]);
        output.Reset();
        Assert.Equal(0, output.Length);
    }

    [Fact]
    public void A_response_keeps_its_level()
    {
        byte[] response = Frames.Data(9, Operation.Get, [1, 2, 3, 4, 5]);
        BinaryPrimitives.WriteUInt32BigEndian(response, 0x0011_0001);
        var output = new PooledBuffer();
        Relabel.Append(output, new ReadOnlySequence<byte>(response), frames: 1, uid: 3, resetLevel: false);
        byte[] expected = Frames.Data(3, Operation.Get, [1, 2, 3, 4, 5]);
        BinaryPrimitives.WriteUInt32BigEndian(expected, 0x0011_0001);
        Assert.Equal(expected, output.WrittenMemory.ToArray());
    }
}
