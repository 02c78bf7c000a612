using System.Buffers;
using System.Buffers.Binary;

namespace Distcache.Protocol;

/// <summary>The outcome of parsing an ADD request payload, in the order 1.5.1 checks (PROTOCOL.md section 2).</summary>
public enum AddRequestParseResult
{
    /// <summary>All checks passed.</summary>
    Valid,

    /// <summary>Shorter than the 8-byte prefix: a protocol violation, the connection is dropped.</summary>
    PayloadTooShort,

    /// <summary>Timeout over 7 days: answered with <see cref="StatusCode.AddErrTimeoutRange"/>.</summary>
    TimeoutOutOfRange,

    /// <summary><c>id_len</c> is not less than the bytes after the prefix: answered with <see cref="StatusCode.AddErrCorrupt"/>.</summary>
    Corrupt,

    /// <summary>Id empty or over 64 bytes: answered with <see cref="StatusCode.AddErrIdRange"/>.</summary>
    IdOutOfRange,

    /// <summary>Data empty or over 32768 bytes: answered with <see cref="StatusCode.AddErrDataRange"/>.</summary>
    DataOutOfRange,
}

/// <summary>An ADD request: <c>timeout_msecs</c> (4), <c>id_len</c> (4), the id, then the session data.</summary>
/// <param name="TimeoutMilliseconds">How long the server keeps the session.</param>
/// <param name="Id">The session id.</param>
/// <param name="Data">The session data.</param>
public readonly record struct AddRequest(uint TimeoutMilliseconds, ReadOnlyMemory<byte> Id, ReadOnlyMemory<byte> Data)
{
    /// <summary>The payload length this request encodes to.</summary>
    public int PayloadLength => ProtocolConstants.AddRequestPrefixSize + Id.Length + Data.Length;

    /// <summary>
    /// Parses and checks an ADD payload exactly as the 1.5.1 server does: timeout, then corruption, then id
    /// range, then data range. <paramref name="request"/> slices <paramref name="payload"/> without copying.
    /// </summary>
    public static AddRequestParseResult TryParse(ReadOnlyMemory<byte> payload, out AddRequest request)
    {
        request = default;
        ReadOnlySpan<byte> span = payload.Span;
        if (span.Length < ProtocolConstants.AddRequestPrefixSize)
        {
            return AddRequestParseResult.PayloadTooShort;
        }

        uint timeout = BinaryPrimitives.ReadUInt32BigEndian(span);
        // id_len is unsigned on the wire: a value with the high bit set is simply huge, never negative.
        uint idLength = BinaryPrimitives.ReadUInt32BigEndian(span[4..]);
        int rest = span.Length - ProtocolConstants.AddRequestPrefixSize;
        if (timeout > ProtocolConstants.MaxTimeoutMilliseconds)
        {
            return AddRequestParseResult.TimeoutOutOfRange;
        }

        if (idLength >= (uint)rest)
        {
            return AddRequestParseResult.Corrupt;
        }

        if (idLength == 0 || idLength > ProtocolConstants.MaxSessionIdLength)
        {
            return AddRequestParseResult.IdOutOfRange;
        }

        int dataLength = rest - (int)idLength;
        if (dataLength == 0 || dataLength > ProtocolConstants.MaxSessionDataLength)
        {
            return AddRequestParseResult.DataOutOfRange;
        }

        request = new AddRequest(
            timeout,
            payload.Slice(ProtocolConstants.AddRequestPrefixSize, (int)idLength),
            payload.Slice(ProtocolConstants.AddRequestPrefixSize + (int)idLength));
        return AddRequestParseResult.Valid;
    }

    /// <summary>Encodes this request as one message (no limit checks beyond the message size: a tester may need to send out-of-range ids).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The payload exceeds 32768 bytes.</exception>
    public void WriteTo(IBufferWriter<byte> output, uint requestUid) =>
        Requests.WriteAdd(output, requestUid, TimeoutMilliseconds, Id.Span, Data.Span);
}

/// <summary>Helpers for <see cref="AddRequestParseResult"/>.</summary>
public static class AddRequestParseResultExtensions
{
    /// <summary>The status byte the server answers with; <see cref="StatusCode.Ok"/> for <see cref="AddRequestParseResult.Valid"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">For <see cref="AddRequestParseResult.PayloadTooShort"/>, which is answered by dropping the connection.</exception>
    public static StatusCode ToStatusCode(this AddRequestParseResult result) => result switch
    {
        AddRequestParseResult.Valid => StatusCode.Ok,
        AddRequestParseResult.TimeoutOutOfRange => StatusCode.AddErrTimeoutRange,
        AddRequestParseResult.Corrupt => StatusCode.AddErrCorrupt,
        AddRequestParseResult.IdOutOfRange => StatusCode.AddErrIdRange,
        AddRequestParseResult.DataOutOfRange => StatusCode.AddErrDataRange,
        _ => throw new ArgumentOutOfRangeException(nameof(result), result, "A too-short ADD payload has no status code: the connection is dropped."),
    };
}
