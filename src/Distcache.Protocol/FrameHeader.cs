using System.Buffers.Binary;

namespace Distcache.Protocol;

/// <summary>
/// The 14-byte header in front of every frame (PROTOCOL.md section 1). All integers are big-endian.
/// </summary>
/// <param name="ProtoLevel">Version in the high 16 bits, patch level in the low 16.</param>
/// <param name="IsResponse">False for a request, true for a response.</param>
/// <param name="RequestUid">Chosen by the requester, echoed in the response.</param>
/// <param name="OpClass">Always 0 in protocol 0x11.</param>
/// <param name="Operation">The cache operation.</param>
/// <param name="Complete">True on the last frame of a message.</param>
/// <param name="DataLength">Payload bytes in this frame, 0..2048.</param>
public readonly record struct FrameHeader(
    uint ProtoLevel,
    bool IsResponse,
    uint RequestUid,
    byte OpClass,
    Operation Operation,
    bool Complete,
    ushort DataLength)
{
    private const int OffsetIsResponse = 4;
    private const int OffsetUid = 5;
    private const int OffsetOpClass = 9;
    private const int OffsetOperation = 10;
    private const int OffsetComplete = 11;
    private const int OffsetDataLength = 12;

    /// <summary>Writes the header into the first 14 bytes of <paramref name="destination"/>.</summary>
    public void Write(Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, ProtocolConstants.FrameHeaderSize, nameof(destination));
        BinaryPrimitives.WriteUInt32BigEndian(destination, ProtoLevel);
        destination[OffsetIsResponse] = IsResponse ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[OffsetUid..], RequestUid);
        destination[OffsetOpClass] = OpClass;
        destination[OffsetOperation] = (byte)Operation;
        destination[OffsetComplete] = Complete ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[OffsetDataLength..], DataLength);
    }

    /// <summary>
    /// Reads a header from 14 bytes that have already passed <see cref="Validate"/>. Flag bytes are read as
    /// "non-zero is true", so call <see cref="Validate"/> first for untrusted input.
    /// </summary>
    public static FrameHeader Read(ReadOnlySpan<byte> source)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(source.Length, ProtocolConstants.FrameHeaderSize, nameof(source));
        return new FrameHeader(
            BinaryPrimitives.ReadUInt32BigEndian(source),
            source[OffsetIsResponse] != 0,
            BinaryPrimitives.ReadUInt32BigEndian(source[OffsetUid..]),
            source[OffsetOpClass],
            (Operation)source[OffsetOperation],
            source[OffsetComplete] != 0,
            BinaryPrimitives.ReadUInt16BigEndian(source[OffsetDataLength..]));
    }

    /// <summary>
    /// Checks the bytes of a header that have arrived so far, which may be fewer than 14, so that a bad byte is
    /// rejected as soon as it is seen rather than once the whole header is in.
    /// </summary>
    /// <param name="prefix">The first 0..14 bytes of the header.</param>
    /// <param name="rules">What this receiver accepts, and the message this frame continues, if any.</param>
    /// <param name="violation">The rule broken, when the result is false.</param>
    /// <param name="offendingIndex">The index within the header of the byte that broke it.</param>
    /// <returns>True if every byte present is acceptable.</returns>
    public static bool Validate(ReadOnlySpan<byte> prefix, in FrameRules rules, out ProtocolViolationKind violation, out int offendingIndex)
    {
        int n = Math.Min(prefix.Length, ProtocolConstants.FrameHeaderSize);
        for (int i = 0; i < n; i++)
        {
            violation = CheckByte(prefix, i, rules);
            if (violation != 0)
            {
                offendingIndex = i;
                return false;
            }
        }

        violation = 0;
        offendingIndex = -1;
        return true;
    }

    // One rule per byte position, checked when that byte arrives. Bytes 2-3 (patch level) accept anything.
    private static ProtocolViolationKind CheckByte(ReadOnlySpan<byte> h, int i, in FrameRules rules)
    {
        switch (i)
        {
            case 0:
                return h[0] == (ProtocolConstants.Version >> 8) ? 0 : ProtocolViolationKind.WrongVersion;
            case 1:
                return h[1] == (ProtocolConstants.Version & 0xFF) ? 0 : ProtocolViolationKind.WrongVersion;
            case OffsetIsResponse:
                if (h[i] > 1)
                {
                    return ProtocolViolationKind.InvalidResponseFlag;
                }

                return rules.Accept switch
                {
                    MessageDirection.Requests when h[i] != 0 => ProtocolViolationKind.UnexpectedDirection,
                    MessageDirection.Responses when h[i] != 1 => ProtocolViolationKind.UnexpectedDirection,
                    _ => 0,
                };
            case >= OffsetUid and < OffsetOpClass:
                if (rules.ContinuesMessage)
                {
                    int shift = 8 * (OffsetOpClass - 1 - i);
                    if (h[i] != (byte)(rules.Uid >> shift))
                    {
                        return ProtocolViolationKind.UidChangedWithinMessage;
                    }
                }

                return 0;
            case OffsetOpClass:
                return h[i] == 0 ? 0 : ProtocolViolationKind.UnknownOpClass;
            case OffsetOperation:
                if (!((Operation)h[i]).IsDefined())
                {
                    return ProtocolViolationKind.UnknownOperation;
                }

                return rules.ContinuesMessage && h[i] != (byte)rules.Operation ? ProtocolViolationKind.OperationChangedWithinMessage : 0;
            case OffsetComplete:
                return h[i] <= 1 ? 0 : ProtocolViolationKind.InvalidCompleteFlag;
            case OffsetDataLength:
                // data_len <= 0x0800, so the high byte alone can already be too big; a non-final frame must be
                // exactly 0x0800, so its high byte must be 8.
                if (h[i] > (ProtocolConstants.MaxFrameData >> 8))
                {
                    return ProtocolViolationKind.FrameTooLong;
                }

                return h[OffsetComplete] == 0 && h[i] != (ProtocolConstants.MaxFrameData >> 8) ? ProtocolViolationKind.ShortNonFinalFrame : 0;
            case OffsetDataLength + 1:
                if (h[OffsetDataLength] == (ProtocolConstants.MaxFrameData >> 8) && h[i] != 0)
                {
                    return ProtocolViolationKind.FrameTooLong;
                }

                return h[OffsetComplete] == 0 && h[i] != 0 ? ProtocolViolationKind.ShortNonFinalFrame : 0;
            default:
                return 0;
        }
    }
}

/// <summary>Which messages a receiver accepts.</summary>
public enum MessageDirection
{
    /// <summary>Requests only (a server, or the application side of a proxy).</summary>
    Requests,

    /// <summary>Responses only (a client, or the server side of a proxy).</summary>
    Responses,

    /// <summary>Either (a passive observer that has not been told the direction).</summary>
    Any,
}

/// <summary>What a frame header is checked against: the accepted direction and, for a continuation frame, the
/// uid and operation of the message it continues.</summary>
/// <param name="Accept">The direction accepted.</param>
/// <param name="ContinuesMessage">True when this frame continues a message whose first frame has been seen.</param>
/// <param name="Uid">The uid of that message.</param>
/// <param name="Operation">The operation of that message.</param>
public readonly record struct FrameRules(MessageDirection Accept, bool ContinuesMessage = false, uint Uid = 0, Operation Operation = default)
{
    /// <summary>The rules for a continuation frame of the message started by <paramref name="first"/>.</summary>
    public FrameRules Continuing(in FrameHeader first) => this with { ContinuesMessage = true, Uid = first.RequestUid, Operation = first.Operation };
}
