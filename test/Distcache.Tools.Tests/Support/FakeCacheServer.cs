using System.Buffers;
using System.Net.Sockets;
using Distcache.Protocol;

namespace Distcache.Tools.Tests.Support;

/// <summary>The deliberate mistake a <see cref="FakeCacheServer"/> makes.</summary>
public enum Fault
{
    /// <summary>A correct cache.</summary>
    None,

    /// <summary>REMOVE answers OK whether or not the session existed.</summary>
    RemoveAlwaysOk,

    /// <summary>ADD stores and answers OK even over a live session (never ADD_ERR_MATCHING_SESSION).</summary>
    AddAlwaysOk,

    /// <summary>GET returns the session data with its last byte changed.</summary>
    CorruptGetData,

    /// <summary>GET answers DISCONNECTED, as a proxy without its server does.</summary>
    GetDisconnected,

    /// <summary>REMOVE answers as if it removed the session, but keeps it, so later GETs still find it.</summary>
    RemoveKeepsSession,

    /// <summary>Sessions never expire.</summary>
    IgnoresExpiry,

    /// <summary>GET of a session returns the data of another stored session (the first other one found).</summary>
    GetAnotherSession,
}

/// <summary>
/// A tiny in-test session cache on loopback TCP, correct except for one chosen <see cref="Fault"/>, so that a test
/// can show dc_test noticing a wrong answer. Sessions expire after their ADD's timeout (unless the fault is
/// <see cref="Fault.IgnoresExpiry"/>).
/// </summary>
internal sealed class FakeCacheServer : LoopbackServer
{
    private readonly Fault _fault;
    private readonly Dictionary<string, (byte[] Data, long ExpiresAt)> _store = new(StringComparer.Ordinal);
    private long _requests;

    public FakeCacheServer(Fault fault)
    {
        _fault = fault;
        Start();
    }

    /// <summary>How many requests were answered.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    protected override async Task ServeAsync(Socket socket)
    {
        var decoder = new MessageDecoder(MessageDirection.Requests);
        var buffer = new byte[2 * ProtocolConstants.MaxEncodedMessage];
        var responses = new ArrayBufferWriter<byte>();
        int filled = 0;
        try
        {
            while (true)
            {
                int n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, Stopping);
                if (n == 0)
                {
                    return;
                }

                filled += n;
                int consumed = Answer(decoder, buffer.AsMemory(0, filled), responses);
                if (consumed < 0)
                {
                    return;
                }

                Buffer.BlockCopy(buffer, consumed, buffer, 0, filled - consumed);
                filled -= consumed;
                if (responses.WrittenCount > 0)
                {
                    await socket.SendAsync(responses.WrittenMemory, SocketFlags.None, Stopping);
                    responses.ResetWrittenCount();
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException)
        {
        }
    }

    // Returns the bytes consumed, or -1 on a violation (the connection is then dropped, as a real server does).
    private int Answer(MessageDecoder decoder, ReadOnlyMemory<byte> received, ArrayBufferWriter<byte> responses)
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(received));
        while (true)
        {
            DecodeStatus status = decoder.TryDecode(ref reader, out Message request, out _);
            if (status == DecodeStatus.NeedMoreData)
            {
                return (int)reader.Consumed;
            }

            if (status == DecodeStatus.Violation)
            {
                return -1;
            }

            Interlocked.Increment(ref _requests);
            lock (_store)
            {
                Respond(request, responses);
            }
        }
    }

    private void Respond(in Message request, ArrayBufferWriter<byte> output)
    {
        uint uid = request.RequestUid;
        long now = Environment.TickCount64;
        if (request.Operation == Operation.Add)
        {
            AddRequest.TryParse(request.Payload, out AddRequest add);
            string key = Convert.ToHexString(add.Id.Span);
            if (Live(key, now, out _) && _fault != Fault.AddAlwaysOk)
            {
                Responses.WriteStatus(output, uid, Operation.Add, StatusCode.AddErrMatchingSession);
                return;
            }

            _store[key] = (add.Data.ToArray(), now + add.TimeoutMilliseconds);
            Responses.WriteStatus(output, uid, Operation.Add, StatusCode.Ok);
            return;
        }

        string id = Convert.ToHexString(request.Payload.Span);
        bool found = Live(id, now, out byte[]? data);
        switch (request.Operation)
        {
            case Operation.Get when _fault == Fault.GetDisconnected:
                Responses.WriteStatus(output, uid, Operation.Get, StatusCode.Disconnected);
                break;
            case Operation.Get when found:
                byte[] answer = (byte[])data!.Clone();
                if (_fault == Fault.CorruptGetData)
                {
                    answer[^1] ^= 0xFF;
                }

                if (_fault == Fault.GetAnotherSession && _store.FirstOrDefault(e => e.Key != id).Value.Data is { } other)
                {
                    answer = other;
                }

                Responses.WriteData(output, uid, Operation.Get, answer);
                break;
            case Operation.Get:
                Responses.WriteStatus(output, uid, Operation.Get, StatusCode.NotOk);
                break;
            case Operation.Remove:
                if (_fault != Fault.RemoveKeepsSession)
                {
                    _store.Remove(id);
                }

                Responses.WriteStatus(output, uid, Operation.Remove, found || _fault == Fault.RemoveAlwaysOk ? StatusCode.Ok : StatusCode.NotOk);
                break;
            default:
                Responses.WriteStatus(output, uid, Operation.Have, found ? StatusCode.Ok : StatusCode.NotOk);
                break;
        }
    }

    private bool Live(string key, long now, out byte[]? data)
    {
        if (_store.TryGetValue(key, out var entry) && (entry.ExpiresAt > now || _fault == Fault.IgnoresExpiry))
        {
            data = entry.Data;
            return true;
        }

        data = null;
        return false;
    }
}
