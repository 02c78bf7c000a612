using System.Buffers;
using System.Buffers.Binary;

namespace Distcache.Protocol;

/// <summary>
/// Writes one message straight into an <see cref="IBufferWriter{T}"/>, splitting its payload into frames:
/// every frame but the last carries exactly 2048 bytes. The payload length is declared up front (the frame
/// headers depend on it) and the payload may then be written in any number of pieces, so a composite payload
/// such as an ADD request needs no intermediate buffer.
/// </summary>
public ref struct MessageWriter
{
    private readonly IBufferWriter<byte> _output;
    private readonly FrameHeader _template;
    private int _remaining;
    private int _remainingInFrame;
    private bool _headerPending;

    /// <summary>Starts a message of exactly <paramref name="payloadLength"/> bytes.</summary>
    /// <param name="output">Where the encoded frames go.</param>
    /// <param name="isResponse">False for a request, true for a response.</param>
    /// <param name="requestUid">The uid (a response echoes its request's).</param>
    /// <param name="operation">The operation.</param>
    /// <param name="payloadLength">0..32768.</param>
    /// <param name="protoLevel">The <c>proto_level</c> to send; 0x00110000 unless extensions are announced.</param>
    /// <exception cref="ArgumentOutOfRangeException">The payload does not fit in one message.</exception>
    public MessageWriter(IBufferWriter<byte> output, bool isResponse, uint requestUid, Operation operation, int payloadLength, uint protoLevel = ProtocolConstants.ProtoLevel)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentOutOfRangeException.ThrowIfNegative(payloadLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(payloadLength, ProtocolConstants.MaxMessagePayload);
        _output = output;
        _template = new FrameHeader(protoLevel, isResponse, requestUid, 0, operation, false, 0);
        _remaining = payloadLength;
        _remainingInFrame = 0;
        _headerPending = true;
    }

    /// <summary>The number of bytes a message with this payload length occupies on the wire.</summary>
    public static int EncodedLength(int payloadLength) => payloadLength + (FrameCount(payloadLength) * ProtocolConstants.FrameHeaderSize);

    /// <summary>The number of frames a payload of this length needs (an empty payload still needs one).</summary>
    public static int FrameCount(int payloadLength) => payloadLength == 0 ? 1 : (payloadLength + ProtocolConstants.MaxFrameData - 1) / ProtocolConstants.MaxFrameData;

    /// <summary>Appends payload bytes.</summary>
    /// <exception cref="InvalidOperationException">More bytes than declared.</exception>
    public void Write(scoped ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > _remaining)
        {
            throw new InvalidOperationException($"Message payload overflow: {bytes.Length} bytes written with {_remaining} declared bytes left.");
        }

        while (!bytes.IsEmpty)
        {
            if (_remainingInFrame == 0)
            {
                StartFrame();
            }

            int chunk = Math.Min(bytes.Length, _remainingInFrame);
            Span<byte> span = _output.GetSpan(chunk);
            int n = Math.Min(chunk, span.Length);
            bytes[..n].CopyTo(span);
            _output.Advance(n);
            bytes = bytes[n..];
            _remaining -= n;
            _remainingInFrame -= n;
        }
    }

    /// <summary>Appends a big-endian 32-bit integer to the payload.</summary>
    public void WriteUInt32BigEndian(uint value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        Write(bytes);
    }

    /// <summary>Appends one byte to the payload.</summary>
    public void WriteByte(byte value) => Write([value]);

    /// <summary>Ends the message. An empty payload's single header is written here.</summary>
    /// <exception cref="InvalidOperationException">Fewer bytes were written than declared.</exception>
    public void Complete()
    {
        if (_remaining != 0)
        {
            throw new InvalidOperationException($"Message payload incomplete: {_remaining} declared bytes were not written.");
        }

        if (_headerPending)
        {
            // Only an empty message reaches here with no header written.
            WriteHeader(complete: true, length: 0);
            _headerPending = false;
        }
    }

    private void StartFrame()
    {
        int length = Math.Min(_remaining, ProtocolConstants.MaxFrameData);
        WriteHeader(complete: length == _remaining, length);
        _remainingInFrame = length;
        _headerPending = false;
    }

    private readonly void WriteHeader(bool complete, int length)
    {
        Span<byte> span = _output.GetSpan(ProtocolConstants.FrameHeaderSize);
        (_template with { Complete = complete, DataLength = (ushort)length }).Write(span);
        _output.Advance(ProtocolConstants.FrameHeaderSize);
    }
}
