using System.Buffers;
using Distcache.Protocol;
using Distcache.Protocol.Tests.Support;

namespace Distcache.Protocol.Tests;

public sealed class MessageDecoderTests
{
    public static TheoryData<int> EdgeSizes() => [0, 1, 2047, 2048, 2049, 4095, 4096, 4097, 32767, 32768];

    [Theory]
    [MemberData(nameof(EdgeSizes))]
    public void Payload_at_the_edges_round_trips_whole_segmented_and_byte_by_byte(int size)
    {
        var payload = Frames.Random(size, size);
        var stream = Frames.Encode(w => Responses.WriteData(w, 0xDEADBEEF, Operation.Get, payload));
        Assert.Equal(MessageWriter.EncodedLength(size), stream.Length);

        foreach (var result in new[]
        {
            Decode.All(stream, MessageDirection.Responses),
            Decode.All(stream, MessageDirection.Responses, Enumerable.Range(0, stream.Length / 7).Select(i => i * 7)),
            Decode.Incremental(stream, MessageDirection.Responses, [1, 13, 2062, 5]),
            Decode.ByteByByte(stream, MessageDirection.Responses),
        })
        {
            Assert.Null(result.Violation);
            Assert.Equal(0, result.LeftOver);
            var message = Assert.Single(result.Messages);
            Assert.Equal(payload, message.Payload);
            Assert.Equal(MessageWriter.FrameCount(size), message.FrameCount);
            Assert.Equal(0xDEADBEEFu, message.Uid);
            Assert.True(message.IsResponse);
            Assert.Equal(Operation.Get, message.Operation);
        }
    }

    [Theory]
    [InlineData(15)]
    [InlineData(16)]
    public void Messages_of_15_and_16_frames_are_accepted(int frames)
    {
        var payload = Frames.Random(((frames - 1) * 2048) + 1000, frames);
        if (frames == 16)
        {
            payload = Frames.Random(16 * 2048, frames);
        }

        var stream = Frames.Encode(w => Requests.WriteIdRequest(w, 3, Operation.Get, payload));
        var result = Decode.ByteByByte(stream, MessageDirection.Requests);
        Assert.Null(result.Violation);
        Assert.Equal(frames, Assert.Single(result.Messages).FrameCount);
        Assert.Equal(payload, result.Messages[0].Payload);
    }

    [Fact]
    public void A_17_frame_message_is_rejected_even_with_an_empty_last_frame()
    {
        var full = Frames.Frame(Frames.Header(uid: 1, complete: 0, dataLength: 2048), 2048);
        var stream = Frames.Concat([.. Enumerable.Repeat(full, 16), Frames.Header(uid: 1, complete: 1, dataLength: 0)]);
        var result = Decode.All(stream, MessageDirection.Requests);
        Assert.Equal(ProtocolViolationKind.MessageTooLarge, result.Violation?.Kind);
    }

    [Fact]
    public void Encoder_refuses_32769_bytes()
    {
        var payload = new byte[32769];
        Assert.Throws<ArgumentOutOfRangeException>(() => Frames.Encode(w => Responses.WriteData(w, 1, Operation.Get, payload)));
    }

    [Fact]
    public void Pipelined_messages_decode_in_order()
    {
        var stream = Frames.Encode(w =>
        {
            Requests.WriteIdRequest(w, 1, Operation.Get, [1, 2, 3]);
            Requests.WriteAdd(w, 2, 1000, [9], Frames.Random(5000, 1));
            Requests.WriteIdRequest(w, 3, Operation.Have, [4]);
            Requests.WriteIdRequest(w, 4, Operation.Remove, [5, 6]);
        });
        var result = Decode.Incremental(stream, MessageDirection.Requests, [100, 3000, 7]);
        Assert.Null(result.Violation);
        Assert.Equal([1u, 2u, 3u, 4u], result.Messages.Select(m => m.Uid));
        Assert.Equal([Operation.Get, Operation.Add, Operation.Have, Operation.Remove], result.Messages.Select(m => m.Operation));
    }

    [Fact]
    public void Need_more_data_consumes_nothing_and_a_later_call_completes()
    {
        var stream = Frames.Encode(w => Requests.WriteIdRequest(w, 9, Operation.Get, [1, 2, 3, 4]));
        var decoder = new MessageDecoder(MessageDirection.Requests);
        for (int n = 0; n < stream.Length; n++)
        {
            var partial = new SequenceReader<byte>(new ReadOnlySequence<byte>(stream, 0, n));
            Assert.Equal(DecodeStatus.NeedMoreData, decoder.TryDecode(ref partial, out _, out _));
            Assert.Equal(0, partial.Consumed);
        }

        var whole = new SequenceReader<byte>(new ReadOnlySequence<byte>(stream));
        Assert.Equal(DecodeStatus.Complete, decoder.TryDecode(ref whole, out var message, out _));
        Assert.Equal(stream.Length, whole.Consumed);
        Assert.Equal([1, 2, 3, 4], message.Payload.ToArray());
    }

    [Fact]
    public void Single_frame_payload_is_not_copied()
    {
        var stream = Frames.Encode(w => Requests.WriteIdRequest(w, 9, Operation.Get, [1, 2, 3, 4]));
        var decoder = new MessageDecoder(MessageDirection.Requests);
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(stream));
        decoder.TryDecode(ref reader, out var message, out _);
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(message.Payload, out var segment));
        Assert.Same(stream, segment.Array);
        Assert.Equal(ProtocolConstants.FrameHeaderSize, segment.Offset);
    }

    [Fact]
    public void Frame_reader_reports_each_frame_of_a_multi_frame_message()
    {
        var stream = Frames.Encode(w => Responses.WriteData(w, 5, Operation.Get, new byte[5000]));
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(stream));
        var rules = new FrameRules(MessageDirection.Responses);
        var lengths = new List<(ushort, bool)>();
        while (FrameReader.TryRead(ref reader, rules, out var header, out var data, out _) == DecodeStatus.Complete)
        {
            Assert.Equal(header.DataLength, data.Length);
            lengths.Add((header.DataLength, header.Complete));
            rules = rules.Continuing(header);
        }

        Assert.Equal([(2048, false), (2048, false), (904, true)], lengths.Select(l => ((int)l.Item1, l.Item2)));
    }
}
