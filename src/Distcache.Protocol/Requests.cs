using System.Buffers;

namespace Distcache.Protocol;

/// <summary>Encoders for the four request payloads (PROTOCOL.md section 2).</summary>
/// <remarks>These check only that the message fits (32768 payload bytes). The protocol limits on ids, data and
/// timeouts are the server's to enforce and a client's to check before sending; a tester must be able to send
/// out-of-range values to see the server's answer.</remarks>
public static class Requests
{
    /// <summary>Writes an ADD request: timeout, id length, id, data.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The payload exceeds 32768 bytes.</exception>
    public static void WriteAdd(IBufferWriter<byte> output, uint requestUid, uint timeoutMilliseconds, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data)
    {
        var writer = new MessageWriter(output, isResponse: false, requestUid, Operation.Add, ProtocolConstants.AddRequestPrefixSize + id.Length + data.Length);
        writer.WriteUInt32BigEndian(timeoutMilliseconds);
        writer.WriteUInt32BigEndian((uint)id.Length);
        writer.Write(id);
        writer.Write(data);
        writer.Complete();
    }

    /// <summary>Writes a GET, REMOVE or HAVE request, whose payload is the session id.</summary>
    /// <exception cref="ArgumentException"><paramref name="operation"/> is ADD (use <see cref="WriteAdd"/>) or undefined.</exception>
    public static void WriteIdRequest(IBufferWriter<byte> output, uint requestUid, Operation operation, ReadOnlySpan<byte> id)
    {
        if (operation is not (Operation.Get or Operation.Remove or Operation.Have))
        {
            throw new ArgumentException($"{operation.ToWireName()} does not take an id-only payload.", nameof(operation));
        }

        var writer = new MessageWriter(output, isResponse: false, requestUid, operation, id.Length);
        writer.Write(id);
        writer.Complete();
    }

    /// <summary>
    /// The session id a request is about, for routing it: an ADD's id (after its 8-byte prefix), or the whole
    /// payload of a GET, REMOVE or HAVE. An ADD whose id length does not fit its payload gives an empty id: the
    /// server answers such a request with an error wherever it goes, so any one route is as good as another.
    /// </summary>
    /// <param name="operation">The request's operation.</param>
    /// <param name="payload">The request's whole payload.</param>
    /// <returns>The id, a slice of <paramref name="payload"/>.</returns>
    public static ReadOnlySpan<byte> SessionIdOf(Operation operation, ReadOnlySpan<byte> payload)
    {
        if (operation != Operation.Add)
        {
            return payload;
        }

        if (payload.Length < ProtocolConstants.AddRequestPrefixSize)
        {
            return [];
        }

        uint idLength = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(payload[4..]);
        return idLength < (uint)(payload.Length - ProtocolConstants.AddRequestPrefixSize)
            ? payload.Slice(ProtocolConstants.AddRequestPrefixSize, (int)idLength)
            : [];
    }

    /// <summary>True if an id is within the protocol's 1..64 bytes. The server answers NOTOK for others, as 1.5.1 does.</summary>
    public static bool IsValidSessionId(int length) => length is > 0 and <= ProtocolConstants.MaxSessionIdLength;
}
