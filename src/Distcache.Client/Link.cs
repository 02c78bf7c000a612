using System.Buffers;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.IO.Pipelines;
using Distcache.Networking;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;

namespace Distcache.Client;

/// <summary>What a link tells its owner.</summary>
internal interface ILinkObserver
{
    /// <summary>The link closed for good; every request it carried has already been failed.</summary>
    void OnLinkClosed(Link link, Exception reason);

    /// <summary>The link delivered its first response: the server at the other end really works.</summary>
    void OnFirstResponse(Link link);
}

/// <summary>
/// One connection to a distcache server carrying any number of pipelined requests: a table of requests in flight
/// keyed by <c>request_uid</c>, a writer that coalesces the requests of concurrent callers into one flush, and a
/// reader loop that decodes responses and completes their requests. A link never reconnects: once closed it stays
/// closed, and its owner makes a new one.
/// </summary>
/// <remarks>
/// <para><b>Writing.</b> A caller encodes its request into the <see cref="CoalescingWriter"/>'s staging buffer under
/// a short lock (so its id and data are copied before the call returns and may be reused at once, even if the
/// request is later canceled), and the writer sends it: on the caller's own thread when no write is under way, so an
/// uncontended request costs no thread hop; otherwise with everything else staged meanwhile, in one write.</para>
/// <para><b>Closing.</b> The reader loop and the writer each count as a user of the connection; whichever stops
/// last disposes it, so the pipes are never completed under a running write.</para>
/// </remarks>
internal sealed class Link : ICoalescingWriterOwner
{
    private readonly NetworkConnection _connection;
    private readonly PipeReader _input;
    private readonly ILinkObserver? _observer;
    private readonly ILogger _logger;

    private readonly Lock _inflightLock = new();
    private readonly Dictionary<uint, PendingRequest> _inflight = [];
    private uint _lastUid;
    private bool _closed;
    private Exception? _closeReason;

    private readonly Lock _writeLock = new();
    private readonly CoalescingWriter _writer;

    private readonly TaskCompletionSource _terminated = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // The reader loop and the writer.
    private int _users = 2;
    private long _lastReceived;
    private int _receivedAny;

    private Link(Address address, NetworkConnection connection, ILinkObserver? observer, ILogger logger)
    {
        Address = address;
        _connection = connection;
        _input = connection.Input;
        _observer = observer;
        _logger = logger;
        _lastReceived = Stopwatch.GetTimestamp();
        _writer = new CoalescingWriter(connection.Output, _writeLock, this, shared: true);
        _writer.Stopped.ContinueWith(static (_, link) => ((Link)link!).ReleaseUser(), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>The address this link is connected to.</summary>
    public Address Address { get; }

    /// <summary>True once the link has closed (no request can be sent on it any more).</summary>
    public bool IsClosed => Volatile.Read(ref _closed);

    /// <summary>Completes when the connection has been disposed.</summary>
    public Task Terminated => _terminated.Task;

    /// <summary>The last uid handed out. Settable so that tests can reach the wrap-around without 4 billion requests.</summary>
    internal uint LastUid
    {
        get
        {
            lock (_inflightLock)
            {
                return _lastUid;
            }
        }

        set
        {
            lock (_inflightLock)
            {
                _lastUid = value;
            }
        }
    }

    /// <summary>Connects to <paramref name="address"/> and starts the reader loop.</summary>
    /// <exception cref="DistcacheConnectionException">The connection could not be made within <paramref name="connectTimeout"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    public static async Task<Link> ConnectAsync(
        Address address,
        ConnectionOptions connectionOptions,
        TimeSpan connectTimeout,
        ILinkObserver? observer,
        ILogger logger,
        CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(connectTimeout);
        NetworkConnection connection;
        try
        {
            connection = await NetworkConnection.ConnectAsync(address, connectionOptions, deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException e)
        {
            throw new DistcacheConnectionException(
                address,
                $"Connecting to distcache at {address} did not finish within {(long)connectTimeout.TotalMilliseconds} ms.",
                new TimeoutException("connect timed out", e));
        }
        catch (Exception e)
        {
            // NetworkException, SocketException, or whatever a stream wrapper (a TLS handshake) threw.
            throw new DistcacheConnectionException(address, $"Cannot connect to distcache at {address}: {e.Message}", e);
        }

        var link = new Link(address, connection, observer, logger);
        _ = link.ReadLoopAsync();
        return link;
    }

    /// <summary>
    /// Registers <paramref name="request"/> under a fresh uid and stages its encoding for the writer. The id and
    /// data are copied before this returns.
    /// </summary>
    /// <returns>False, with the reason, if the link is closed; the request was not registered.</returns>
    public bool TrySend(
        PendingRequest request,
        ReadOnlySpan<byte> id,
        ReadOnlySpan<byte> data,
        uint timeoutMilliseconds,
        [NotNullWhen(false)] out Exception? closeReason)
    {
        uint uid;
        lock (_inflightLock)
        {
            if (_closed)
            {
                closeReason = _closeReason!;
                return false;
            }

            uid = NextUid();
            _inflight.Add(uid, request);
            request.OnSent(this, uid, Stopwatch.GetTimestamp());
        }

        lock (_writeLock)
        {
            // If the link closed since the registration above, the shutdown found the request in the table and
            // failed it; there is nothing to write.
            if (!_writer.IsClosed)
            {
                Debug.Assert(SessionLimits.IsValidId(id), "callers validate before sending");
                if (request.Operation == Operation.Add)
                {
                    Requests.WriteAdd(_writer.Staging, uid, timeoutMilliseconds, id, data);
                }
                else
                {
                    Requests.WriteIdRequest(_writer.Staging, uid, request.Operation, id);
                }
            }
        }

        _writer.Flush();

        closeReason = null;
        return true;
    }

    /// <summary>Closes the link: fails every request in flight with <paramref name="reason"/> and stops the loops.</summary>
    /// <param name="reason">The cause, handed (as a fresh exception per request) to every request in flight.</param>
    /// <param name="abort">True to reset the connection at once; false to stop reading and close it in order.</param>
    /// <returns>False if the link was already closed.</returns>
    public bool Close(Exception reason, bool abort)
    {
        PendingRequest[] failed;
        lock (_inflightLock)
        {
            if (_closed)
            {
                return false;
            }

            Volatile.Write(ref _closed, true);
            _closeReason = reason;
            failed = [.. _inflight.Values];
            _inflight.Clear();

            // Count as a user of the connection until it has been signalled below: the reader may stop the moment
            // _closed is set (it was failing on its own), and the last user to stop disposes the connection, after
            // which waking its pipes would throw. Taken under the lock, before the reader can see _closed, so the
            // count cannot already be zero.
            Interlocked.Increment(ref _users);
        }

        lock (_writeLock)
        {
            _writer.Close();
        }

        foreach (PendingRequest request in failed)
        {
            request.TryFail(ForRequest(reason));
            request.ReleaseLink();
        }

        if (abort)
        {
            _connection.Abort();
        }
        else
        {
            // Wakes the reader loop without completing the pipe; it sees a canceled read and stops.
            _input.CancelPendingRead();
        }

        ReleaseUser();
        _observer?.OnLinkClosed(this, reason);
        return true;
    }

    /// <summary>
    /// Called when a request on this link timed out. If nothing at all arrived since that request was sent, the
    /// server has been silent for a whole operation timeout while a request was waiting (responses come in order,
    /// so a live server would have answered something), and the link is presumed dead.
    /// </summary>
    public void OnRequestTimedOut(long sentTimestamp, int timeoutMilliseconds)
    {
        if (Volatile.Read(ref _lastReceived) < sentTimestamp && !IsClosed)
        {
            Log.LinkUnresponsive(_logger, Address, timeoutMilliseconds);
            Close(
                new DistcacheConnectionException(
                    Address,
                    $"distcache at {Address} sent nothing for {timeoutMilliseconds} ms while a request was waiting; the connection is presumed dead and was dropped.",
                    null),
                abort: true);
        }
    }

    /// <summary>A fresh exception per request, so that no exception object is thrown on several threads at once
    /// (which would garble its stack trace).</summary>
    private static Exception ForRequest(Exception reason) => reason switch
    {
        ObjectDisposedException disposed => new ObjectDisposedException(disposed.ObjectName, disposed.Message),
        DistcacheConnectionException connection => new DistcacheConnectionException(connection.Address, connection.Message, connection.InnerException),
        _ => new DistcacheConnectionException(reason.Message, reason),
    };

    private static bool IsWellFormed(Operation operation, ReadOnlySpan<byte> payload) => operation switch
    {
        // Any length: data, a status byte, or a proxy's empty failure answer.
        Operation.Get => true,

        // One status byte, or a 1.5.1 proxy's empty failure answer; unknown ADD codes are reported as Rejected.
        Operation.Add => payload.Length <= 1,

        // These have only three meaningful answers; anything else means the peer is not speaking distcache.
        _ => payload.Length == 0 || (payload.Length == 1 && payload[0] <= (byte)StatusCode.Disconnected),
    };

    private uint NextUid()
    {
        // Uids increase and wrap; 0 is skipped only to match 1.5.1's numbering from 1. A uid still in the table
        // (a request abandoned by its caller whose response has not come back) is never reused.
        do
        {
            _lastUid++;
        }
        while (_lastUid == 0 || _inflight.ContainsKey(_lastUid));

        return _lastUid;
    }

    void ICoalescingWriterOwner.OnWritten(int bytes)
    {
    }

    void ICoalescingWriterOwner.OnWriteFailed(Exception? exception)
    {
        exception ??= new IOException("the connection was closed while requests were being written");
        Close(new DistcacheConnectionException(Address, $"Writing to distcache at {Address} failed: {exception.Message}", exception), abort: true);
    }

    void ICoalescingWriterOwner.OnWriterIdle()
    {
    }

    private async Task ReadLoopAsync()
    {
        var decoder = new MessageDecoder(MessageDirection.Responses);
        Exception? failure = null;
        try
        {
            while (true)
            {
                ReadResult result = await _input.ReadAsync().ConfigureAwait(false);
                if (result.IsCanceled)
                {
                    // Only Close cancels the read.
                    break;
                }

                ReadOnlySequence<byte> buffer = result.Buffer;
                if (!buffer.IsEmpty)
                {
                    Volatile.Write(ref _lastReceived, Stopwatch.GetTimestamp());
                }

                SequencePosition consumed = ProcessResponses(decoder, buffer, out failure);
                if (failure is null && result.IsCompleted)
                {
                    bool cut = !buffer.Slice(consumed).IsEmpty;
                    failure = new DistcacheConnectionException(
                        Address,
                        cut ? $"distcache at {Address} closed the connection in the middle of a response." : $"distcache at {Address} closed the connection.",
                        cut ? new ProtocolViolationException(ProtocolViolationKind.TruncatedMessage) : null);
                }

                _input.AdvanceTo(consumed, buffer.End);
                if (failure is not null)
                {
                    break;
                }
            }
        }
        catch (Exception e)
        {
            failure = new DistcacheConnectionException(Address, $"Reading from distcache at {Address} failed: {e.Message}", e);
        }

        if (failure is not null)
        {
            Close(failure, abort: true);
        }

        ReleaseUser();
    }

    private SequencePosition ProcessResponses(MessageDecoder decoder, in ReadOnlySequence<byte> buffer, out Exception? failure)
    {
        var reader = new SequenceReader<byte>(buffer);
        while (true)
        {
            switch (decoder.TryDecode(ref reader, out Message message, out ProtocolViolation violation))
            {
                case DecodeStatus.NeedMoreData:
                    failure = null;
                    return reader.Position;
                case DecodeStatus.Violation:
                    failure = Violation(violation.Kind, violation.Describe());
                    return reader.Position;
                default:
                    failure = Dispatch(message);
                    if (failure is not null)
                    {
                        return reader.Position;
                    }

                    break;
            }
        }
    }

    /// <summary>Completes the request a response answers; returns the violation if it answers none.</summary>
    private Exception? Dispatch(in Message response)
    {
        PendingRequest? request;
        bool anyWaiting;
        lock (_inflightLock)
        {
            anyWaiting = _inflight.Count > 0;
            _inflight.Remove(response.RequestUid, out request);
        }

        if (request is null)
        {
            return anyWaiting
                ? Violation(ProtocolViolationKind.ResponseUidMismatch, $"a {Describe(response)}, which no request in flight has")
                : Violation(ProtocolViolationKind.UnsolicitedResponse, $"a {Describe(response)} while no request was in flight");
        }

        Exception? failure = null;
        ReadOnlySpan<byte> payload = response.Payload.Span;
        if (request.Operation != response.Operation)
        {
            failure = Violation(ProtocolViolationKind.ResponseOperationMismatch, $"a {Describe(response)}, but that uid is a {request.Operation.ToWireName()} request");
        }
        else if (!IsWellFormed(request.Operation, payload))
        {
            failure = Violation(ProtocolViolationKind.ResponseOperationMismatch, $"a {Describe(response)} with a {payload.Length}-byte payload, which is no valid {request.Operation.ToWireName()} answer");
        }

        if (failure is not null)
        {
            // Out of the table already, so the coming Close would not find it: fail it here.
            request.TryFail(ForRequest(failure));
            request.ReleaseLink();
            return failure;
        }

        if (Volatile.Read(ref _receivedAny) == 0 && Interlocked.Exchange(ref _receivedAny, 1) == 0)
        {
            _observer?.OnFirstResponse(this);
        }

        // False when the caller gave up (timeout, cancellation): the late response is dropped.
        request.TryComplete(payload);
        request.ReleaseLink();
        return null;
    }

    // Only on failure paths: a response that is fine must not cost a string.
    private static string Describe(in Message response) => $"{response.Operation.ToWireName()} response with request_uid {response.RequestUid}";

    private DistcacheConnectionException Violation(ProtocolViolationKind kind, string detail)
    {
        Log.ProtocolViolation(_logger, Address, detail);
        return new DistcacheConnectionException(
            Address,
            $"distcache at {Address} broke the protocol ({detail}); the connection was dropped.",
            new ProtocolViolationException(kind, $"distcache protocol violation: {detail}"));
    }

    private void ReleaseUser()
    {
        if (Interlocked.Decrement(ref _users) == 0)
        {
            _ = DisposeConnectionAsync();
        }
    }

    private async Task DisposeConnectionAsync()
    {
        try
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // The link is gone either way and the requests it carried have already been answered or failed; nobody
            // awaits this task, so whatever went wrong is logged rather than left unobserved.
            Log.CloseFailed(_logger, Address, e.Message);
        }
        finally
        {
            _terminated.TrySetResult();
        }
    }
}
