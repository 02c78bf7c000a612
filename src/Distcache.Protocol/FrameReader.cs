using System.Buffers;

namespace Distcache.Protocol;

/// <summary>
/// Reads single frames. Stateless: the caller says, through <see cref="FrameRules"/>, which message (if any)
/// the next frame continues. <see cref="MessageDecoder"/> builds messages on top of this; tools that show
/// traffic frame by frame use it directly.
/// </summary>
public static class FrameReader
{
    /// <summary>
    /// Tries to read one whole frame at the reader's position. On <see cref="DecodeStatus.Complete"/> the
    /// reader has advanced past the frame; otherwise it has not moved.
    /// </summary>
    /// <param name="reader">The bytes received so far.</param>
    /// <param name="rules">Direction accepted, and the message this frame must continue, if any.</param>
    /// <param name="header">The frame's header, on success.</param>
    /// <param name="data">The frame's payload bytes (a slice of the input), on success.</param>
    /// <param name="violation">The rule broken and the offending header byte (0..13), on <see cref="DecodeStatus.Violation"/>.</param>
    public static DecodeStatus TryRead(
        ref SequenceReader<byte> reader,
        in FrameRules rules,
        out FrameHeader header,
        out ReadOnlySequence<byte> data,
        out ProtocolViolation violation)
    {
        Span<byte> buffer = stackalloc byte[ProtocolConstants.FrameHeaderSize];
        int available = (int)Math.Min(reader.Remaining, ProtocolConstants.FrameHeaderSize);
        ReadOnlySpan<byte> bytes = reader.UnreadSpan.Length >= available
            ? reader.UnreadSpan[..available]
            : CopyHeader(reader.UnreadSequence, buffer, available);

        if (!FrameHeader.Validate(bytes, rules, out ProtocolViolationKind kind, out int index))
        {
            header = default;
            data = default;
            violation = new ProtocolViolation(kind, index);
            return DecodeStatus.Violation;
        }

        violation = default;
        if (available < ProtocolConstants.FrameHeaderSize)
        {
            header = default;
            data = default;
            return DecodeStatus.NeedMoreData;
        }

        header = FrameHeader.Read(bytes);
        if (reader.Remaining < ProtocolConstants.FrameHeaderSize + header.DataLength)
        {
            data = default;
            return DecodeStatus.NeedMoreData;
        }

        reader.Advance(ProtocolConstants.FrameHeaderSize);
        data = reader.UnreadSequence.Slice(0, header.DataLength);
        reader.Advance(header.DataLength);
        return DecodeStatus.Complete;
    }

    // The header is usually contiguous in the current segment; copy only when it straddles segments.
    private static ReadOnlySpan<byte> CopyHeader(in ReadOnlySequence<byte> unread, Span<byte> buffer, int available)
    {
        unread.Slice(0, available).CopyTo(buffer);
        return buffer[..available];
    }
}
