using CsCheck;
using Distcache.Protocol;
using Distcache.Protocol.Tests.Support;

namespace Distcache.Protocol.Tests;

/// <summary>Random messages, encoded back to back and fed with random split points, decode to themselves.</summary>
public sealed class RoundTripPropertyTests
{
    private sealed record Sample(bool IsResponse, uint Uid, Operation Operation, byte[] Payload);

    // Mostly small payloads, sometimes up to the 32768 maximum so that every frame count is visited.
    private static readonly Gen<byte[]> GenPayload = Gen.Frequency(
        (6, Gen.Byte.Array[0, 80]),
        (3, Gen.Byte.Array[2000, 6000]),
        (1, Gen.Int[0, ProtocolConstants.MaxMessagePayload].SelectMany(n => Gen.Byte.Array[n])));

    private static readonly Gen<Sample> GenMessage =
        Gen.Select(Gen.UInt, Gen.Enum<Operation>(), GenPayload, (uid, op, payload) => new Sample(false, uid, op, payload));

    private static readonly Gen<(Sample[] Messages, int[] Cuts, int[] Chunks)> GenStream =
        GenMessage.Array[1, 6].SelectMany(messages =>
        {
            int length = messages.Sum(m => MessageWriter.EncodedLength(m.Payload.Length));
            return Gen.Select(Gen.Int[0, length].Array[0, 12], Gen.Int[1, 3000].Array[1, 5], (cuts, chunks) => (messages, cuts, chunks));
        });

    private static byte[] EncodeAll(Sample[] messages) => Frames.Encode(w =>
    {
        foreach (var m in messages)
        {
            var writer = new MessageWriter(w, m.IsResponse, m.Uid, m.Operation, m.Payload.Length);
            writer.Write(m.Payload);
            writer.Complete();
        }
    });

    private static void AssertSame(Sample[] expected, StreamResult result)
    {
        Assert.Null(result.Violation);
        Assert.Equal(0, result.LeftOver);
        Assert.Equal(expected.Length, result.Messages.Count);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i].Uid, result.Messages[i].Uid);
            Assert.Equal(expected[i].Operation, result.Messages[i].Operation);
            Assert.Equal(expected[i].Payload, result.Messages[i].Payload);
            Assert.Equal(MessageWriter.FrameCount(expected[i].Payload.Length), result.Messages[i].FrameCount);
        }
    }

    [Fact]
    public void Random_messages_with_random_segment_boundaries_round_trip() =>
        GenStream.Sample(s => AssertSame(s.Messages, Decode.All(EncodeAll(s.Messages), MessageDirection.Requests, s.Cuts)), iter: 300);

    [Fact]
    public void Random_messages_arriving_in_random_chunks_round_trip() =>
        GenStream.Sample(s => AssertSame(s.Messages, Decode.Incremental(EncodeAll(s.Messages), MessageDirection.Requests, s.Chunks)), iter: 300);

    [Fact]
    public void Any_prefix_of_a_valid_stream_needs_more_data_and_never_violates() =>
        GenStream.Sample(s =>
        {
            var stream = EncodeAll(s.Messages);
            int cut = s.Cuts.Length > 0 ? s.Cuts[0] : stream.Length / 2;
            var result = Decode.All(stream[..cut], MessageDirection.Requests);
            Assert.Null(result.Violation);
            Assert.True(result.Messages.Count <= s.Messages.Length);
        }, iter: 300);

    [Fact]
    public void Random_bytes_never_throw_and_split_points_do_not_change_the_answer() =>
        Gen.Byte.Array[0, 200].Select(Gen.Int[1, 7]).Sample((bytes, chunk) =>
        {
            // Half the time, start with a valid version so that later header fields get exercised.
            if (bytes.Length > 2 && bytes[0] % 2 == 0)
            {
                bytes[0] = 0x00;
                bytes[1] = 0x11;
            }

            var whole = Decode.All(bytes, MessageDirection.Any);
            var pieces = Decode.Incremental(bytes, MessageDirection.Any, [chunk]);
            Assert.Equal(whole.Violation?.Kind, pieces.Violation?.Kind);
            Assert.Equal(whole.ViolationAtByte, pieces.ViolationAtByte);
            Assert.Equal(whole.Messages.Count, pieces.Messages.Count);
        }, iter: 2000);
}
