using System.Buffers;
using System.Buffers.Binary;
using Distcache.Protocol;

namespace Distcache.Fuzz;

/// <summary>One decoded message, copied out of the decoder's borrowed buffers.</summary>
internal sealed record DecodedMessage(uint ProtoLevel, bool IsResponse, uint RequestUid, Operation Operation, byte[] Payload, int FrameCount, long Start, long EncodedLength)
{
    public bool SameAs(DecodedMessage other) =>
        ProtoLevel == other.ProtoLevel && IsResponse == other.IsResponse && RequestUid == other.RequestUid && Operation == other.Operation
        && FrameCount == other.FrameCount && Start == other.Start && EncodedLength == other.EncodedLength && Payload.AsSpan().SequenceEqual(other.Payload);

    public override string ToString() => $"{Operation.ToWireName()} uid={RequestUid} response={IsResponse} len={Payload.Length} frames={FrameCount} at {Start}+{EncodedLength}";
}

/// <summary>What decoding a whole stream gave: the messages, then how it stopped.</summary>
internal sealed class StreamOutcome
{
    public List<DecodedMessage> Messages { get; } = [];

    public DecodeStatus Final { get; set; }

    public ProtocolViolation Violation { get; set; }

    public long Consumed { get; set; }

    public void MustEqual(StreamOutcome other, string what)
    {
        Check.Equal(Messages.Count, other.Messages.Count, $"{what}: messages decoded");
        for (int i = 0; i < Messages.Count; i++)
        {
            Check.That(Messages[i].SameAs(other.Messages[i]), $"{what}: message {i} is {other.Messages[i]}, expected {Messages[i]}");
        }

        Check.Equal(Final, other.Final, $"{what}: how decoding stopped");
        Check.Equal(Violation, other.Violation, $"{what}: violation");
        Check.Equal(Consumed, other.Consumed, $"{what}: bytes consumed");
    }
}

/// <summary>
/// Drives a <see cref="MessageDecoder"/> the way the connection loops do, and checks every answer it gives
/// against the rules a decoded message must satisfy.
/// </summary>
internal static class StreamDecoding
{
    /// <summary>Decodes as many messages as <paramref name="buffer"/> holds; returns false once a violation stops the stream.</summary>
    /// <param name="decoder">The connection's decoder.</param>
    /// <param name="buffer">The unconsumed bytes received so far.</param>
    /// <param name="offset">Where <paramref name="buffer"/> starts in the stream.</param>
    /// <param name="outcome">Collects the messages and the final state.</param>
    public static bool DecodeAvailable(MessageDecoder decoder, in ReadOnlySequence<byte> buffer, long offset, StreamOutcome outcome)
    {
        var reader = new SequenceReader<byte>(buffer);
        while (true)
        {
            long start = reader.Consumed;
            long allocation = Allocation.Start();
            DecodeStatus status = decoder.TryDecode(ref reader, out Message message, out ProtocolViolation violation);
            Allocation.End(allocation, "MessageDecoder.TryDecode");
            outcome.Final = status;
            outcome.Violation = violation;
            if (status != DecodeStatus.Complete)
            {
                Check.Equal(start, reader.Consumed, "reader position after an incomplete or rejected message");
                outcome.Consumed = offset + start;
                long remaining = buffer.Length - start;
                if (status == DecodeStatus.Violation)
                {
                    Check.That(Enum.IsDefined(violation.Kind), $"undefined violation kind {violation.Kind}");
                    Check.That(violation.Offset >= 0 && violation.Offset < remaining, $"violation at byte {violation.Offset} of a message of which {remaining} bytes are present");
                    return false;
                }

                Check.Equal(default, violation, "violation reported with NeedMoreData");
                Check.That(remaining < ProtocolConstants.MaxEncodedMessage, $"NeedMoreData with {remaining} bytes, more than any message occupies");
                return true;
            }

            long length = reader.Consumed - start;
            CheckMessage(message, length, decoder.Accept);
            outcome.Messages.Add(new DecodedMessage(message.ProtoLevel, message.IsResponse, message.RequestUid, message.Operation, message.Payload.ToArray(), message.FrameCount, offset + start, length));
            CheckReencoding(message, buffer.Slice(start, length));
        }
    }

    /// <summary>Decodes a stream given all at once, from one contiguous buffer.</summary>
    public static StreamOutcome DecodeWhole(MessageDirection direction, byte[] data)
    {
        var outcome = new StreamOutcome();
        DecodeAvailable(new MessageDecoder(direction), new ReadOnlySequence<byte>(data), 0, outcome);
        return outcome;
    }

    /// <summary>Decodes a stream that arrives in the given pieces, each read appending one to the unconsumed bytes.</summary>
    public static StreamOutcome DecodeInPieces(MessageDirection direction, List<byte[]> segments)
    {
        var decoder = new MessageDecoder(direction);
        var outcome = new StreamOutcome();
        var chain = new SegmentChain();
        foreach (byte[] segment in segments)
        {
            chain.Append(segment);
            long consumed = outcome.Consumed;
            if (!DecodeAvailable(decoder, chain.From(consumed), consumed, outcome))
            {
                break;
            }
        }

        return outcome;
    }

    private static void CheckMessage(in Message message, long encodedLength, MessageDirection accept)
    {
        int payload = message.Payload.Length;
        Check.That(message.FrameCount is >= 1 and <= ProtocolConstants.MaxFrames, $"{message.FrameCount} frames");
        Check.That(payload <= ProtocolConstants.MaxMessagePayload, $"payload of {payload} bytes");
        Check.Equal(payload + ((long)message.FrameCount * ProtocolConstants.FrameHeaderSize), encodedLength, "bytes consumed by a message");
        // Every frame but the last carries exactly 2048 bytes.
        Check.That(payload >= (message.FrameCount - 1) * ProtocolConstants.MaxFrameData && payload <= message.FrameCount * ProtocolConstants.MaxFrameData, $"{payload} bytes in {message.FrameCount} frames");
        Check.Equal(ProtocolConstants.Version, (ushort)(message.ProtoLevel >> 16), "version of a decoded message");
        Check.That(message.Operation.IsDefined(), $"decoded an undefined operation {message.Operation}");
        Check.That(accept switch { MessageDirection.Requests => !message.IsResponse, MessageDirection.Responses => message.IsResponse, _ => true }, "decoded a message in the wrong direction");
    }

    // A message the decoder accepted must come out of the encoder as the same bytes, frame for frame, whenever it
    // used as few frames as the encoder would (a sender may legally end with an empty final frame). The message
    // carries the first frame's proto_level; the others may announce any patch level (PROTOCOL.md section 1), so
    // theirs are compared as the first frame's.
    private static void CheckReencoding(in Message message, in ReadOnlySequence<byte> raw)
    {
        byte[] original = raw.ToArray();
        Check.Equal(message.ProtoLevel, BinaryPrimitives.ReadUInt32BigEndian(original), "proto_level of a message is not its first frame's");
        if (MessageWriter.FrameCount(message.Payload.Length) != message.FrameCount)
        {
            return;
        }

        for (int i = 1; i < message.FrameCount; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(original.AsSpan(i * (ProtocolConstants.FrameHeaderSize + ProtocolConstants.MaxFrameData)), message.ProtoLevel);
        }

        var output = new ArrayBufferWriter<byte>(MessageWriter.EncodedLength(message.Payload.Length));
        var writer = new MessageWriter(output, message.IsResponse, message.RequestUid, message.Operation, message.Payload.Length, message.ProtoLevel);
        writer.Write(message.Payload.Span);
        writer.Complete();
        Check.That(output.WrittenSpan.SequenceEqual(original), "a decoded message does not encode back to the bytes it came from");
    }
}
