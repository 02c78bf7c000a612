using System.Buffers;
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
internal sealed class FakeCacheServer : IAsyncDisposable
{
    private readonly Fault _fault;
    private readonly Dictionary<string, (byte[] Data, long ExpiresAt)> _store = new(StringComparer.Ordinal);
    private readonly FakeServer _server;
    private long _requests;

    public FakeCacheServer(Fault fault)
    {
        _fault = fault;
        _server = new FakeServer(ServeAsync);
    }

    public string Address => _server.Address.ToString();

    /// <summary>How many requests were answered.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    // A request that breaks the protocol ends the script, and the connection with it, as a real server drops it.
    private async Task ServeAsync(FakeConnection connection)
    {
        var responses = new ArrayBufferWriter<byte>();
        while (await connection.ReceiveAsync() is { } first)
        {
            // Everything that arrived together is answered in one write, as a server answers a pipeline.
            Received? request = first;
            do
            {
                Interlocked.Increment(ref _requests);
                lock (_store)
                {
                    Respond(request!, responses);
                }
            }
            while (connection.TryTakeReceived(out request));

            await connection.SendAsync(responses.WrittenSpan.ToArray());
            responses.ResetWrittenCount();
        }
    }

    private void Respond(Received request, ArrayBufferWriter<byte> output)
    {
        uint uid = request.Uid;
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

        string id = Convert.ToHexString(request.Payload);
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
