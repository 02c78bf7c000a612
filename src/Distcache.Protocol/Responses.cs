using System.Buffers;

namespace Distcache.Protocol;

/// <summary>How a response payload reads (PROTOCOL.md sections 2 and 4).</summary>
public enum ResponseKind
{
    /// <summary>An empty payload: what a 1.5.1 proxy sends when it has no server link. A failure.</summary>
    Empty,

    /// <summary>One byte: a <see cref="StatusCode"/>. For GET this is how "not found" (NOTOK) and DISCONNECTED arrive.</summary>
    Status,

    /// <summary>Two or more bytes: session data (GET only; anything else treats it as malformed).</summary>
    Data,
}

/// <summary>Encoders and readers for response payloads.</summary>
public static class Responses
{
    /// <summary>Writes a one-byte status response.</summary>
    public static void WriteStatus(IBufferWriter<byte> output, uint requestUid, Operation operation, StatusCode status)
    {
        // A one-byte response is one 15-byte frame; written directly, it is the hot path of ADD/REMOVE/HAVE.
        Span<byte> span = output.GetSpan(ProtocolConstants.FrameHeaderSize + 1);
        new FrameHeader(ProtocolConstants.ProtoLevel, true, requestUid, 0, operation, true, 1).Write(span);
        span[ProtocolConstants.FrameHeaderSize] = (byte)status;
        output.Advance(ProtocolConstants.FrameHeaderSize + 1);
    }

    /// <summary>Writes a response whose payload is <paramref name="data"/> (a GET hit).</summary>
    /// <exception cref="ArgumentOutOfRangeException">More than 32768 bytes.</exception>
    public static void WriteData(IBufferWriter<byte> output, uint requestUid, Operation operation, ReadOnlySpan<byte> data)
    {
        var writer = new MessageWriter(output, isResponse: true, requestUid, operation, data.Length);
        writer.Write(data);
        writer.Complete();
    }

    /// <summary>Writes an empty response: 1.5.1's proxy failure answer, kept for byte-exact compatibility.</summary>
    public static void WriteEmpty(IBufferWriter<byte> output, uint requestUid, Operation operation)
    {
        var writer = new MessageWriter(output, isResponse: true, requestUid, operation, 0);
        writer.Complete();
    }

    /// <summary>Classifies a response payload by its length.</summary>
    public static ResponseKind Classify(ReadOnlySpan<byte> payload) => payload.Length switch
    {
        0 => ResponseKind.Empty,
        1 => ResponseKind.Status,
        _ => ResponseKind.Data,
    };

    /// <summary>Reads a one-byte status payload; false if the payload is not exactly one byte.</summary>
    public static bool TryReadStatus(ReadOnlySpan<byte> payload, out StatusCode status)
    {
        if (payload.Length == 1)
        {
            status = (StatusCode)payload[0];
            return true;
        }

        status = default;
        return false;
    }
}
