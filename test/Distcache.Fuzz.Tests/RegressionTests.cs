using System.Buffers;
using System.Buffers.Binary;
using Distcache.Fuzz;
using Distcache.Protocol;

namespace Distcache.Fuzz.Tests;

/// <summary>What the fuzzer found, one named test each; the inputs themselves are in fuzz/regressions/.</summary>
public sealed class RegressionTests
{
    /// <summary>
    /// fuzz/regressions/reassembly/crash-patch-level-differs-*: the frames of one message announced different
    /// patch levels. PROTOCOL.md allows any patch level in any frame, and the decoder accepts the message with its
    /// first frame's proto_level; the reassembly target wrongly required every frame to re-encode with that one.
    /// </summary>
    [Fact]
    public void Frames_of_one_message_may_announce_different_patch_levels()
    {
        var output = new ArrayBufferWriter<byte>();
        var writer = new MessageWriter(output, false, 5, Operation.Add, 3000, protoLevel: 0x0011_00D0);
        writer.Write(new byte[3000]);
        writer.Complete();
        byte[] stream = output.WrittenSpan.ToArray();
        BinaryPrimitives.WriteUInt32BigEndian(stream.AsSpan(ProtocolConstants.FrameHeaderSize + ProtocolConstants.MaxFrameData), 0x0011_0000);

        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(stream));
        Assert.Equal(DecodeStatus.Complete, new MessageDecoder(MessageDirection.Requests).TryDecode(ref reader, out Message message, out _));
        Assert.Equal(0x0011_00D0u, message.ProtoLevel);
        Assert.Equal(2, message.FrameCount);

        // Whole, and cut inside the first header and inside the second.
        FuzzTargets.Get("reassembly")(SplitInput.Encode(0, [5, 2060], stream));
    }
}
