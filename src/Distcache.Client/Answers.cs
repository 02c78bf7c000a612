using System.Buffers;
using Distcache.Protocol;

namespace Distcache.Client;

/// <summary>How the multiplexed client reads a response payload for each operation (PROTOCOL.md sections 2 and 4).</summary>
internal static class Answers
{
    public static AddOutcome ToAddOutcome(PendingRequest request)
    {
        if (request.Kind == ResponseKind.Empty)
        {
            return AddOutcome.Disconnected;
        }

        return (StatusCode)request.Status switch
        {
            StatusCode.Ok => AddOutcome.Stored,
            StatusCode.AddErrMatchingSession => AddOutcome.AlreadyExists,
            StatusCode.AddErrCorrupt => AddOutcome.Corrupt,
            StatusCode.AddErrTimeoutRange => AddOutcome.TimeoutOutOfRange,
            StatusCode.AddErrIdRange => AddOutcome.IdOutOfRange,
            StatusCode.AddErrDataRange => AddOutcome.DataOutOfRange,
            StatusCode.Disconnected => AddOutcome.Disconnected,
            _ => AddOutcome.Rejected,
        };
    }

    public static GetOutcome ToGetOutcome(PendingRequest request) => request.Kind switch
    {
        ResponseKind.Data => GetOutcome.Found,
        ResponseKind.Empty => GetOutcome.Disconnected,

        // A one-byte GET answer is a status, never data: NOTOK is a miss, and so is any other byte (it could be
        // one byte of session data, but the protocol cannot tell the two apart).
        _ => request.Status == (byte)StatusCode.Disconnected ? GetOutcome.Disconnected : GetOutcome.NotFound,
    };

    public static byte[]? ToArray(PendingRequest request) => Found(request)
        ? request.Buffer.AsSpan(0, request.Length).ToArray()
        : null;

    public static IMemoryOwner<byte>? ToLease(PendingRequest request) => Found(request)
        ? new SessionLease(request.TakeBuffer()!, request.Length)
        : null;

    public static GetOutcome CopyTo(PendingRequest request, IBufferWriter<byte> destination)
    {
        GetOutcome outcome = ToGetOutcome(request);
        if (outcome == GetOutcome.Found)
        {
            destination.Write(request.Buffer.AsSpan(0, request.Length));
        }

        return outcome;
    }

    /// <summary>REMOVE and HAVE: OK is true, NOTOK false; a proxy's DISCONNECTED (or empty answer) throws.</summary>
    public static bool ToBoolean(PendingRequest request)
    {
        if (request.Kind == ResponseKind.Empty || request.Status == (byte)StatusCode.Disconnected)
        {
            throw Disconnected(request);
        }

        return request.Status == (byte)StatusCode.Ok;
    }

    private static bool Found(PendingRequest request) => ToGetOutcome(request) switch
    {
        GetOutcome.Found => true,
        GetOutcome.NotFound => false,
        _ => throw Disconnected(request),
    };

    private static DistcacheProxyDisconnectedException Disconnected(PendingRequest request) => new(
        request.Address,
        $"The distcache proxy at {request.Address} answered {request.Operation.ToWireName()} with {(request.Kind == ResponseKind.Empty ? "an empty response" : "DISCONNECTED")}: it has no link to its server right now.");
}

/// <summary>Session data in an array rented from <see cref="ArrayPool{T}.Shared"/>, returned when disposed.</summary>
internal sealed class SessionLease(byte[] buffer, int length) : IMemoryOwner<byte>
{
    private byte[]? _buffer = buffer;

    public Memory<byte> Memory => _buffer is { } array
        ? array.AsMemory(0, length)
        : throw new ObjectDisposedException(nameof(SessionLease), "The session data has been returned to the pool.");

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } array)
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }
}
