using System.Buffers;
using Distcache.Protocol;

namespace Distcache.Protocol.Tests.Support;

/// <summary>The outcome of decoding a whole stream: the messages (payloads copied) and how it ended.</summary>
internal sealed record StreamResult(List<DecodedMessage> Messages, ProtocolViolation? Violation, long ViolationAtByte, int LeftOver, long DetectedAfterBytes = -1);

internal sealed record DecodedMessage(uint ProtoLevel, bool IsResponse, uint Uid, Operation Operation, byte[] Payload, int FrameCount);

/// <summary>Drives a <see cref="MessageDecoder"/> the way a connection does: bytes arrive in chunks, the buffer keeps what was not consumed.</summary>
internal static class Decode
{
    /// <summary>Everything at once, as one (possibly segmented) buffer.</summary>
    public static StreamResult All(byte[] stream, MessageDirection direction, IEnumerable<int>? segmentCuts = null)
    {
        var decoder = new MessageDecoder(direction);
        var sequence = Frames.Segmented(stream, segmentCuts ?? []);
        var reader = new SequenceReader<byte>(sequence);
        var messages = new List<DecodedMessage>();
        while (true)
        {
            long start = reader.Consumed;
            var status = decoder.TryDecode(ref reader, out var message, out var violation);
            switch (status)
            {
                case DecodeStatus.Complete:
                    messages.Add(Copy(message));
                    break;
                case DecodeStatus.Violation:
                    return new StreamResult(messages, violation, start + violation.Offset, (int)reader.Remaining, stream.Length);
                default:
                    return new StreamResult(messages, null, -1, (int)reader.Remaining);
            }
        }
    }

    /// <summary>Arriving in chunks of the given sizes (cycled), decoding after each arrival, like a pipe reader loop.</summary>
    public static StreamResult Incremental(byte[] stream, MessageDirection direction, IReadOnlyList<int> chunkSizes)
    {
        var decoder = new MessageDecoder(direction);
        var messages = new List<DecodedMessage>();
        int consumedTotal = 0;
        int received = 0;
        int chunk = 0;
        while (received < stream.Length)
        {
            received = Math.Min(stream.Length, received + Math.Max(1, chunkSizes[chunk++ % chunkSizes.Count]));
            var window = stream.AsMemory(consumedTotal, received - consumedTotal);
            // Split the window too, so that data already buffered is not always contiguous.
            var reader = new SequenceReader<byte>(Frames.Segmented(window.ToArray(), [window.Length / 2]));
            while (true)
            {
                long start = reader.Consumed;
                var status = decoder.TryDecode(ref reader, out var message, out var violation);
                if (status == DecodeStatus.Complete)
                {
                    messages.Add(Copy(message));
                    continue;
                }

                consumedTotal += (int)start;
                if (status == DecodeStatus.Violation)
                {
                    return new StreamResult(messages, violation, consumedTotal + violation.Offset, received - consumedTotal, received);
                }

                break;
            }
        }

        return new StreamResult(messages, null, -1, stream.Length - consumedTotal);
    }

    /// <summary>One byte at a time: the strictest split.</summary>
    public static StreamResult ByteByByte(byte[] stream, MessageDirection direction) => Incremental(stream, direction, [1]);

    private static DecodedMessage Copy(Message m) => new(m.ProtoLevel, m.IsResponse, m.RequestUid, m.Operation, m.Payload.ToArray(), m.FrameCount);
}
