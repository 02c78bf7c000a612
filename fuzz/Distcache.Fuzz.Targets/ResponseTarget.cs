using System.Buffers;
using Distcache.Apps.Snoop;
using Distcache.Networking;
using Distcache.Protocol;
using Distcache.Proxy;

namespace Distcache.Fuzz;

/// <summary>
/// Target "response": a server's response stream as dc_client (the proxy's server link) and dc_snoop decode and
/// handle it. Input in the <see cref="SplitInput"/> format; selector bit 0 makes the relabelling also reset the
/// patch level, as the proxy does for requests.
/// </summary>
/// <remarks>
/// The stream is fed in the fuzzer's pieces to <see cref="ServerLink.DecodeResponses"/>, the proxy's own
/// decoding step, which must find the same responses, and stop at the same byte for the same reason, as a
/// one-shot decode. Each response is then relabelled with <see cref="Relabel.Append"/> straight from the
/// multi-segment receive buffer, as the proxy forwards it, and must decode again to the same response under the
/// new uid. Each is also classified (<see cref="Responses.Classify"/>, <see cref="Responses.TryReadStatus"/>) and
/// printed by dc_snoop's formatter, in text and JSON.
/// </remarks>
public static class ResponseTarget
{
    private static readonly TrafficFormatter Text = new(new OutputSink(Stream.Null, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance), 0, json: false);
    private static readonly TrafficFormatter Json = new(new OutputSink(Stream.Null, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance), 0, json: true);

    public static void Run(ReadOnlySpan<byte> input)
    {
        var split = SplitInput.Parse(input);
        bool resetLevel = (split.Selector & 1) != 0;
        StreamOutcome expected = StreamDecoding.DecodeWhole(MessageDirection.Responses, split.Data);

        var all = new SegmentChain();
        foreach (byte[] segment in split.Segments)
        {
            all.Append(segment);
        }

        ReadOnlySequence<byte> stream = all.From(0);
        int found = DecodeAsProxy(split.Segments, expected, stream, resetLevel);
        Check.Equal(expected.Messages.Count, found, "responses the proxy decoded");

        foreach (DecodedMessage response in expected.Messages)
        {
            CheckClassification(response.Payload);
            var message = new Message(response.ProtoLevel, response.IsResponse, response.RequestUid, response.Operation, response.Payload, response.FrameCount);
            Text.Response(1, 0, message, null);
            Text.Response(1, 0, message, TimeSpan.FromMilliseconds(1.5));
            Json.Response(1, 0, message, null);
            Json.Response(1, 0, message, TimeSpan.FromMilliseconds(1.5));
        }

        if (expected.Final == DecodeStatus.Violation)
        {
            Text.Violation(1, 0, Direction.ToClient, expected.Violation.Describe(), expected.Consumed);
            Json.Violation(1, 0, Direction.ToClient, expected.Violation.Describe(), expected.Consumed);
        }

        Text.Flush();
        Json.Flush();
    }

    // The proxy's read loop: decode what has arrived, forward each response relabelled, keep the rest for the next read.
    private static int DecodeAsProxy(List<byte[]> segments, StreamOutcome expected, in ReadOnlySequence<byte> stream, bool resetLevel)
    {
        var decoder = new MessageDecoder(MessageDirection.Responses);
        var chain = new SegmentChain();
        var responses = new List<ResponseLocation>(1 + (int)(stream.Length / ProtocolConstants.FrameHeaderSize));
        long consumed = 0;
        int index = 0;
        ProtocolViolation? violation = null;
        foreach (byte[] segment in segments)
        {
            chain.Append(segment);
            ReadOnlySequence<byte> buffer = chain.From(consumed);
            long allocation = Allocation.Start();
            SequencePosition position = ServerLink.DecodeResponses(decoder, buffer, responses, out violation);
            Allocation.End(allocation, "ServerLink.DecodeResponses");
            foreach (ResponseLocation response in responses)
            {
                Check.That(index < expected.Messages.Count, $"the proxy found response {index}, a one-shot decode only {expected.Messages.Count}");
                DecodedMessage want = expected.Messages[index++];
                Check.Equal(want.Start, consumed + response.Start, "where a response starts");
                Check.Equal(want.EncodedLength, response.Length, "a response's length");
                Check.Equal(want.RequestUid, response.Uid, "a response's uid");
                Check.Equal(want.Operation, response.Operation, "a response's operation");
                Check.Equal(want.FrameCount, response.Frames, "a response's frames");
                CheckRelabel(buffer.Slice(response.Start, response.Length), want, resetLevel);
            }

            responses.Clear();
            consumed += buffer.Slice(0, position).Length;
            if (violation is not null)
            {
                break;
            }
        }

        if (expected.Final == DecodeStatus.Violation)
        {
            Check.Equal<ProtocolViolation?>(expected.Violation, violation, "the proxy's violation");
        }
        else
        {
            Check.Equal<ProtocolViolation?>(null, violation, "the proxy's violation");
        }

        Check.Equal(expected.Consumed, consumed, "bytes the proxy consumed");
        return index;
    }

    private static void CheckRelabel(in ReadOnlySequence<byte> raw, DecodedMessage original, bool resetLevel)
    {
        uint uid = ~original.RequestUid;
        var output = new PooledBuffer();
        try
        {
            Relabel.Append(output, raw, original.FrameCount, uid, resetLevel);
            var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(output.WrittenMemory));
            DecodeStatus status = new MessageDecoder(MessageDirection.Responses).TryDecode(ref reader, out Message relabelled, out ProtocolViolation violation);
            Check.That(status == DecodeStatus.Complete, $"a relabelled response does not decode: {status} {violation}");
            Check.Equal(0L, reader.Remaining, "bytes after a relabelled response");
            Check.Equal(uid, relabelled.RequestUid, "uid of a relabelled response");
            Check.Equal(resetLevel ? ProtocolConstants.ProtoLevel : original.ProtoLevel, relabelled.ProtoLevel, "proto_level of a relabelled response");
            Check.Equal(original.Operation, relabelled.Operation, "operation of a relabelled response");
            Check.Equal(original.FrameCount, relabelled.FrameCount, "frames of a relabelled response");
            Check.That(relabelled.Payload.Span.SequenceEqual(original.Payload), "payload of a relabelled response");
        }
        finally
        {
            output.Reset();
        }
    }

    private static void CheckClassification(byte[] payload)
    {
        long allocation = Allocation.Start();
        ResponseKind kind = Responses.Classify(payload);
        bool isStatus = Responses.TryReadStatus(payload, out StatusCode status);
        Allocation.End(allocation, "Responses.Classify");
        Check.Equal(kind == ResponseKind.Status, isStatus, "Classify and TryReadStatus disagree");
        Check.Equal(payload.Length switch { 0 => ResponseKind.Empty, 1 => ResponseKind.Status, _ => ResponseKind.Data }, kind, "response kind");
        if (isStatus)
        {
            Check.Equal((StatusCode)payload[0], status, "status byte");
            Check.That(!string.IsNullOrEmpty(status.ToWireName()), "status without a name");
        }
    }
}
