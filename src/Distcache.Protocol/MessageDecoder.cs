using System.Buffers;

namespace Distcache.Protocol;

/// <summary>
/// Decodes whole messages from a byte stream, one connection's worth, incrementally.
/// </summary>
/// <remarks>
/// <para>
/// The decoder keeps no state about partial input: while a message is incomplete it consumes nothing and
/// re-examines the message from its first byte on the next call. A message is at most 16 frames (about
/// 33 KB), so the re-examination is cheap, and it makes the answer independent of how the bytes were split
/// across reads: all at once or one byte at a time gives the same result. Every header byte that has arrived
/// is checked, so a bad byte is reported as soon as it arrives.
/// </para>
/// <para>
/// The only state is a reassembly buffer for payloads that are not contiguous in the input (multi-frame
/// messages, or a frame that straddles two receive segments). Single-frame messages are returned without
/// copying. An instance is not thread-safe; use one per connection.
/// </para>
/// <para>
/// Typical loop: <c>var r = new SequenceReader&lt;byte&gt;(buffer); while (decoder.TryDecode(ref r, out var m, out var v) == DecodeStatus.Complete) { ... } input.AdvanceTo(r.Position, buffer.End);</c>
/// </para>
/// </remarks>
public sealed class MessageDecoder
{
    private readonly FrameRules _rules;
    private byte[]? _reassembly;

    /// <summary>Creates a decoder that accepts messages in the given direction.</summary>
    public MessageDecoder(MessageDirection accept) => _rules = new FrameRules(accept);

    /// <summary>The direction this decoder accepts.</summary>
    public MessageDirection Accept => _rules.Accept;

    /// <summary>
    /// Tries to decode one message at the reader's position. On <see cref="DecodeStatus.Complete"/> the reader has
    /// advanced past it; otherwise the reader has not moved.
    /// </summary>
    /// <param name="reader">The bytes received so far.</param>
    /// <param name="message">The message, on <see cref="DecodeStatus.Complete"/>; its payload is valid until the next call.</param>
    /// <param name="violation">On <see cref="DecodeStatus.Violation"/>, the rule broken and the offset of the offending byte from the message start.</param>
    public DecodeStatus TryDecode(ref SequenceReader<byte> reader, out Message message, out ProtocolViolation violation)
    {
        SequenceReader<byte> scan = reader;
        FrameRules rules = _rules;
        FrameHeader first = default;
        int frames = 0;
        int payloadLength = 0;
        bool contiguous = true;
        ReadOnlyMemory<byte> singleFramePayload = default;

        while (true)
        {
            long frameStart = scan.Consumed - reader.Consumed;
            if (frames == ProtocolConstants.MaxFrames && scan.Remaining > 0)
            {
                // 16 non-final frames already carry 32768 bytes, so any 17th frame is too much.
                message = default;
                violation = new ProtocolViolation(ProtocolViolationKind.MessageTooLarge, frameStart);
                return DecodeStatus.Violation;
            }

            DecodeStatus status = FrameReader.TryRead(ref scan, rules, out FrameHeader header, out ReadOnlySequence<byte> data, out ProtocolViolation frameViolation);
            if (status != DecodeStatus.Complete)
            {
                message = default;
                violation = status == DecodeStatus.Violation ? frameViolation with { Offset = frameStart + frameViolation.Offset } : default;
                return status;
            }

            if (frames == 0)
            {
                first = header;
                rules = rules.Continuing(header);
                if (data.IsSingleSegment)
                {
                    singleFramePayload = data.First;
                }
                else
                {
                    contiguous = false;
                }
            }
            else
            {
                contiguous = false;
            }

            frames++;
            payloadLength += header.DataLength;
            if (header.Complete)
            {
                break;
            }
        }

        ReadOnlyMemory<byte> payload = contiguous ? singleFramePayload : Reassemble(reader, frames, payloadLength);
        message = new Message(first.ProtoLevel, first.IsResponse, first.RequestUid, first.Operation, payload, frames);
        violation = default;
        reader = scan;
        return DecodeStatus.Complete;
    }

    /// <summary>
    /// Decodes every complete message in <paramref name="buffer"/>, handing each to <paramref name="sink"/> with its
    /// place in the buffer, until the sink wants no more, more data is needed, or a rule is broken (by the bytes, or
    /// by a message the sink refuses). Returns the position after the last message taken: what the caller consumes.
    /// </summary>
    /// <typeparam name="TSink">The sink; a struct, so the loop calls it without an interface dispatch.</typeparam>
    /// <param name="buffer">The bytes received so far.</param>
    /// <param name="sink">Takes the messages.</param>
    /// <param name="violation">The rule broken, or null when decoding stopped for want of data or of room.</param>
    public SequencePosition DecodeAll<TSink>(in ReadOnlySequence<byte> buffer, ref TSink sink, out ProtocolViolation? violation)
        where TSink : struct, IMessageSink
    {
        var reader = new SequenceReader<byte>(buffer);
        violation = null;
        while (sink.WantsMore)
        {
            long start = reader.Consumed;
            DecodeStatus status = TryDecode(ref reader, out Message message, out ProtocolViolation broken);
            if (status == DecodeStatus.NeedMoreData)
            {
                break;
            }

            if (status == DecodeStatus.Violation)
            {
                violation = broken;
                break;
            }

            if (sink.Accept(message, start, reader.Consumed - start) is { } refused)
            {
                reader.Rewind(reader.Consumed - start);
                violation = refused;
                break;
            }
        }

        return reader.Position;
    }

    /// <summary>
    /// Whether bytes left over at the end of a stream are the beginning of a message that never finished.
    /// A peer that closes with such bytes pending broke the framing; a clean close leaves none.
    /// </summary>
    public static bool IsTruncated(in ReadOnlySequence<byte> unconsumed) => !unconsumed.IsEmpty;

    // Copies the payloads of the (already validated) frames at the start of 'reader' into the reassembly buffer.
    private ReadOnlyMemory<byte> Reassemble(SequenceReader<byte> reader, int frames, int payloadLength)
    {
        // Allocated once per decoder, at first need: most connections only ever see single-frame messages.
        byte[] buffer = _reassembly ??= new byte[ProtocolConstants.MaxMessagePayload];
        int written = 0;
        Span<byte> header = stackalloc byte[ProtocolConstants.FrameHeaderSize];
        for (int i = 0; i < frames; i++)
        {
            reader.TryCopyTo(header);
            int length = FrameHeader.Read(header).DataLength;
            reader.Advance(ProtocolConstants.FrameHeaderSize);
            reader.UnreadSequence.Slice(0, length).CopyTo(buffer.AsSpan(written));
            reader.Advance(length);
            written += length;
        }

        return new ReadOnlyMemory<byte>(buffer, 0, payloadLength);
    }
}
