using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Channels;
using Distcache.Networking;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;

namespace Distcache.Proxy;

/// <summary>One complete request found in a local connection's input, located by offset so it can be copied raw.</summary>
/// <param name="Start">Offset of its first byte in the read buffer.</param>
/// <param name="Length">Its length on the wire, headers included.</param>
/// <param name="Uid">The uid the local client gave it.</param>
/// <param name="Operation">Its operation.</param>
/// <param name="Frames">How many frames carry it.</param>
/// <param name="Sequence">Its place among the connection's requests (0, 1, 2, ...): its answer goes out in that place.</param>
/// <param name="RingPosition">Where its session id falls on the proxy's hash ring (0 with one server).</param>
internal readonly record struct RequestLocation(long Start, long Length, uint Uid, Operation Operation, int Frames, long Sequence, int RingPosition);

/// <summary>
/// One local client connection: a reader loop that decodes every complete request available and hands them all to
/// the proxy in one step, and a writer that sends the answers queued for it. The two meet only through the
/// output buffer, so a server link, which queues answers, never waits for this connection's socket.
/// </summary>
/// <remarks>
/// <para>
/// Answers go out in request order. Each request is numbered as it is read; an answer whose turn has come is
/// queued for writing at once, and one that arrives early (its server answered before another server answered an
/// earlier request) waits, copied, until the answers before it are queued. With one server nothing ever waits:
/// a link answers in order, and a lost link answers the rest of its requests in order before any later request can
/// see it as down.
/// </para>
/// <para>
/// Flow control: the reader stops reading while <see cref="DistcacheProxyOptions.MaxRequestsInFlightPerConnection"/>
/// requests wait for answers or <see cref="DistcacheProxyOptions.ConnectionOutputSoftLimit"/> bytes of answers wait
/// to be written, so a client that does not read slows only itself. A connection whose queued answers would exceed
/// <see cref="DistcacheProxyOptions.ConnectionOutputHardLimit"/> is dropped.
/// </para>
/// </remarks>
internal sealed class LocalConnection : ICoalescingWriterOwner
{
    private readonly DistcacheProxy _proxy;
    private readonly NetworkConnection _connection;
    private readonly DistcacheProxyOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _outputLock = new();
    private readonly List<RequestLocation> _batch = [];
    private readonly MessageDecoder _decoder = new(MessageDirection.Requests);
    private readonly CoalescingWriter _writer;

    // An auto-reset event: one pending wake-up at most, never lost, never blocking the setter.
    private readonly Channel<bool> _readerSignal = CreateSignal();

    // Completes once nothing more will be written: every request read has been answered and its answer sent, or
    // the connection was closed.
    private readonly TaskCompletionSource _written = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private int _queuedBytes;

    // The number of the next request read (only the reader touches it), and of the request whose answer is to be
    // queued next (under _outputLock).
    private long _nextSequence;
    private long _nextAnswer;

    // Answers that came before their turn, by request number modulo the in-flight limit (no two requests in
    // flight share a slot). Made at the first early answer: with one server there is none.
    private PooledBuffer?[]? _parked;

    // The reader's scratch space for the proxy's routing, one entry per request of a batch (several servers only).
    private int[] _targets = [];
    private int _inFlight;
    private long _lastActivity = Environment.TickCount64;
    private long _requests;
    private volatile bool _closed;
    private volatile bool _readerDone;
    private volatile bool _stopRequested;
    private volatile bool _idleCloseRequested;
    private int _aborted;

    public LocalConnection(DistcacheProxy proxy, NetworkConnection connection, DistcacheProxyOptions options, ILogger logger)
    {
        _proxy = proxy;
        _connection = connection;
        _options = options;
        _logger = logger;
        _writer = new CoalescingWriter(connection.Output, _outputLock, this, shared: false);
    }

    public string Peer => _connection.PeerDescription;

    /// <summary>The connection to the local client.</summary>
    public NetworkConnection Network => _connection;

    /// <summary>
    /// Requests of this connection waiting for their answers to be queued. Raised by the reader before it forwards,
    /// lowered under the output lock as answers are queued (by the links' readers, on other threads): atomically.
    /// </summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>True once answers are no longer wanted: the connection failed, broke the rules, or was dropped.</summary>
    public bool IsClosed => _closed;

    /// <summary>
    /// Serves the connection until it closes: reads and forwards requests, writes answers, and after the client
    /// stops sending (or the proxy stops reading) waits for the answers still due before closing in order.
    /// </summary>
    public async Task RunAsync()
    {
        try
        {
            await ReadLoopAsync().ConfigureAwait(false);
        }
#pragma warning disable CA1031 // A bug must cost this one connection, never the proxy.
        catch (Exception e)
#pragma warning restore CA1031
        {
            Drop(e);
        }
        finally
        {
            _readerDone = true;
        }

        WriteQueued();
        await _written.Task.ConfigureAwait(false);

        // From here on nothing is written: answers still arriving for this connection are discarded.
        _closed = true;
        lock (_outputLock)
        {
            _writer.Close();
            ReleaseParked();
        }

        await _connection.DisposeAsync().ConfigureAwait(false);
        long requests = Interlocked.Read(ref _requests);
        Log.ClientClosed(_logger, Peer, requests);
    }

    /// <summary>
    /// Stops reading requests (shutdown). Answers to requests already read are still written, then the connection
    /// closes.
    /// </summary>
    public void StopReading()
    {
        _stopRequested = true;
        WakeReader();
    }

    /// <summary>
    /// Asks the reader to close the connection if it has been idle for <paramref name="idleMilliseconds"/>: nothing in
    /// flight, nothing queued, nothing received. The reader decides, so a request that arrives at this moment wins.
    /// </summary>
    public void CloseIfIdle(long now, long idleMilliseconds)
    {
        if (IsIdle(now, idleMilliseconds) && !_idleCloseRequested)
        {
            _idleCloseRequested = true;
            WakeReader();
        }
    }

    /// <summary>Counts requests about to be forwarded or answered; called by the reader before it hands them on.</summary>
    public void AddInFlight(int count) => Interlocked.Add(ref _inFlight, count);

    /// <summary>
    /// Queues a server's answer to this connection's request number <paramref name="sequence"/>, relabelled with the
    /// uid the client used, in its turn. Called under the answering link's lock. Returns false when the answer was
    /// discarded because the connection is gone (or has just been dropped for having too much unread).
    /// </summary>
    public bool Answer(long sequence, in ReadOnlySequence<byte> response, int frames, uint clientUid) =>
        Queue(sequence, new PendingAnswer(response, frames, clientUid, default, default));

    /// <summary>
    /// Queues a one-byte status answer (<c>DISCONNECTED</c>) to this connection's request number
    /// <paramref name="sequence"/>, in its turn.
    /// </summary>
    public bool AnswerStatus(long sequence, uint clientUid, Operation operation, StatusCode status) =>
        Queue(sequence, new PendingAnswer(default, 0, clientUid, operation, status));

    /// <summary>
    /// Sends the answers queued so far. Unless a write is already under way (which then sends these too), the
    /// caller's thread makes the write itself, as far as the socket takes it without waiting: an answer goes out
    /// without waking another thread. Call it after queueing answers, outside any link's lock.
    /// </summary>
    public void WriteQueued() => _writer.Flush();

    /// <summary>Drops the connection at once (TCP reset), from any thread, without running anything inline.</summary>
    public void Abort()
    {
        _closed = true;
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }

        lock (_outputLock)
        {
            _writer.Close();
        }

        _readerSignal.Writer.TryWrite(true);

        // Abort wakes the pipes' pending operations; from the thread pool their continuations cannot run inside
        // a caller that holds a link's lock.
        ThreadPool.UnsafeQueueUserWorkItem(static c => c.AbortConnection(), this, preferLocal: false);
    }

    private static Channel<bool> CreateSignal() => Channel.CreateBounded<bool>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });

    void ICoalescingWriterOwner.OnWritten(int bytes)
    {
        lock (_outputLock)
        {
            _queuedBytes -= bytes;
        }

        Touch();
        _readerSignal.Writer.TryWrite(true);
    }

    void ICoalescingWriterOwner.OnWriteFailed(Exception? exception)
    {
        if (exception is null)
        {
            Abort();
        }
        else
        {
            // The client went away (or a bug struck); its remaining answers are discarded.
            Drop(exception);
        }
    }

    void ICoalescingWriterOwner.OnWriterIdle() => TryFinishWriting();

    // Under _outputLock: queues the answer if its turn has come, then every parked answer whose turn follows;
    // otherwise parks a copy of it.
    private bool Queue(long sequence, in PendingAnswer answer)
    {
        bool queued = false;
        lock (_outputLock)
        {
            if (_closed)
            {
                Answered();
                return false;
            }

            int length = answer.Length;
            if (sequence != _nextAnswer)
            {
                if (!WouldOverflow(length))
                {
                    Park(sequence, answer);
                    _queuedBytes += length;
                    return true;
                }

                Answered();
                return false;
            }

            if (!WouldOverflow(length))
            {
                answer.WriteTo(_writer.Staging);
                _queuedBytes += length;
                queued = true;
            }

            _nextAnswer++;
            Answered();
            if (_parked is not null)
            {
                QueueParked();
            }
        }

        return queued;
    }

    private void Park(long sequence, in PendingAnswer answer)
    {
        _parked ??= new PooledBuffer?[_options.MaxRequestsInFlightPerConnection];
        var copy = new PooledBuffer();
        answer.WriteTo(copy);
        _parked[(int)(sequence % _parked.Length)] = copy;
    }

    // Under _outputLock: moves the answers parked for the next turns to the writer, in order.
    private void QueueParked()
    {
        while (true)
        {
            ref PooledBuffer? slot = ref _parked![(int)(_nextAnswer % _parked.Length)];
            if (slot is null)
            {
                return;
            }

            if (!_closed)
            {
                slot.WrittenMemory.Span.CopyTo(_writer.Staging.Append(slot.Length));
            }

            slot.Reset();
            slot = null;
            _nextAnswer++;
            Answered();
        }
    }

    // Under _outputLock, once closed: no parked answer will be written.
    private void ReleaseParked()
    {
        if (_parked is null)
        {
            return;
        }

        for (int i = 0; i < _parked.Length; i++)
        {
            _parked[i]?.Reset();
            _parked[i] = null;
        }
    }

    // What the reader and the writer do with an exception: the client going away is logged as such, anything else
    // as the bug it is; either way only this connection is dropped.
    private void Drop(Exception e)
    {
        if (NetworkErrors.IsConnectionFailure(e))
        {
            Log.ClientFailed(_logger, Peer, e.Message);
        }
        else
        {
            Log.ClientError(_logger, Peer, e);
        }

        Abort();
    }

    private bool IsIdle(long now, long idleMilliseconds) =>
        Volatile.Read(ref _inFlight) == 0
        && Volatile.Read(ref _queuedBytes) == 0
        && now - Volatile.Read(ref _lastActivity) >= idleMilliseconds;

    // Under the output lock. Dropping is decided here, where the bytes would pile up, but carried out elsewhere.
    private bool WouldOverflow(int length)
    {
        long total = (long)_queuedBytes + length;
        if (total <= _options.ConnectionOutputHardLimit)
        {
            return false;
        }

        if (!_closed)
        {
            Log.ClientOverflow(_logger, Peer, total, _options.ConnectionOutputHardLimit);
            _proxy.Statistics.ClientOverflowed();
            Abort();
        }

        return true;
    }

    private void Answered()
    {
        // The answer is queued before the request stops counting as in flight, so that the check for the end of
        // writing, which reads the count first and the queue second, can never see neither. Whoever queued it
        // calls WriteQueued once out of the link's lock; a discarded answer means the connection is closing.
        Interlocked.Decrement(ref _inFlight);
        _readerSignal.Writer.TryWrite(true);
    }

    private void WakeReader()
    {
        _readerSignal.Writer.TryWrite(true);
        try
        {
            _connection.Input.CancelPendingRead();
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
        {
            // Already closed: the reader has finished or is about to.
        }
    }

    private void AbortConnection()
    {
        try
        {
            _connection.Abort();
        }
        catch (ObjectDisposedException)
        {
            // The connection finished closing first (its pipes are completed): there is nothing left to interrupt.
        }

        TryFinishWriting();
    }

    // Ends RunAsync's wait once nothing more will be written: the connection is closed, or the reader has stopped,
    // every request it read has been answered, and every answer sent. Checked whenever one of those may have
    // become true: when a writer finishes, when the reader stops, after an abort.
    private void TryFinishWriting()
    {
        lock (_outputLock)
        {
            if (_writer.IsBusy || (!_closed && !(_readerDone && Volatile.Read(ref _inFlight) == 0 && _writer.Staging.Length == 0)))
            {
                return;
            }
        }

        _written.TrySetResult();
    }

    private void Touch() => Volatile.Write(ref _lastActivity, Environment.TickCount64);

    private bool MustPause() =>
        Volatile.Read(ref _inFlight) >= _options.MaxRequestsInFlightPerConnection
        || Volatile.Read(ref _queuedBytes) >= _options.ConnectionOutputSoftLimit;

    private async Task ReadLoopAsync()
    {
        PipeReader input = _connection.Input;
        long unconsumed = 0;
        while (true)
        {
            while (MustPause() && !_closed && !_stopRequested)
            {
                await _readerSignal.Reader.ReadAsync().ConfigureAwait(false);
            }

            if (_closed || _stopRequested)
            {
                return;
            }

            ReadResult read = await input.ReadAsync().ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = read.Buffer;
            if (_closed || _stopRequested)
            {
                input.AdvanceTo(buffer.Start);
                return;
            }

            bool received = buffer.Length > unconsumed;
            if (read.IsCanceled && _idleCloseRequested)
            {
                _idleCloseRequested = false;
                long idleFor = Environment.TickCount64 - Volatile.Read(ref _lastActivity);
                if (!received && IsIdle(Environment.TickCount64, (long)_options.IdleTimeout.TotalMilliseconds))
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                    Log.ClientIdle(_logger, Peer, idleFor);
                    _proxy.Statistics.IdleClose();
                    return;
                }
            }

            if (received)
            {
                Touch();
            }

            bool full = Decode(buffer, out SequencePosition consumed, out ProtocolViolation? violation);
            if (_batch.Count > 0)
            {
                Interlocked.Add(ref _requests, _batch.Count);
                _proxy.Forward(this, buffer, _batch, _targets);
                _batch.Clear();
            }

            if (violation is { } v)
            {
                input.AdvanceTo(consumed);
                Log.ClientViolation(_logger, Peer, v.Describe());
                _proxy.Statistics.ClientViolation();
                Abort();
                return;
            }

            // Stopped for flow control with complete requests left: they are not "examined", so the next read
            // returns them at once instead of waiting for more bytes.
            input.AdvanceTo(consumed, full ? consumed : buffer.End);
            unconsumed = buffer.Slice(consumed).Length;
            if (read.IsCompleted && !full)
            {
                if (unconsumed > 0)
                {
                    Log.ClientTruncated(_logger, Peer, unconsumed);
                    Abort();
                }

                // End of the client's requests: the answers still due are written before the connection closes.
                return;
            }
        }
    }

    // Collects every complete request in 'buffer' into _batch, up to the in-flight limit. Returns true when it
    // stopped at the limit with input left. SequenceReader cannot live across the read loop's awaits.
    private bool Decode(in ReadOnlySequence<byte> buffer, out SequencePosition consumed, out ProtocolViolation? violation)
    {
        int room = _options.MaxRequestsInFlightPerConnection - Volatile.Read(ref _inFlight);
        if (_proxy.ServerCount > 1 && _targets.Length < room)
        {
            _targets = new int[_options.MaxRequestsInFlightPerConnection];
        }

        var sink = new RequestSink(this, room);
        consumed = _decoder.DecodeAll(buffer, ref sink, out violation);
        return violation is null && !sink.WantsMore && !buffer.Slice(consumed).IsEmpty;
    }

    /// <summary>Collects the requests of one read into the batch, numbered and located on the ring, up to the room left.</summary>
    private readonly struct RequestSink(LocalConnection connection, int room) : IMessageSink
    {
        public bool WantsMore => connection._batch.Count < room;

        public ProtocolViolation? Accept(in Message request, long start, long length)
        {
            if (request.Operation == Operation.Add && request.Payload.Length < ProtocolConstants.AddRequestPrefixSize)
            {
                // The server drops the connection that sends this, and there that connection is everyone's link:
                // it is stopped at the proxy, costing only the client that sent it.
                return new ProtocolViolation(ProtocolViolationKind.AddPayloadTooShort, ProtocolConstants.FrameHeaderSize);
            }

            DistcacheProxy proxy = connection._proxy;
            int position = proxy.ServerCount > 1 ? proxy.Locate(Requests.SessionIdOf(request.Operation, request.Payload.Span)) : 0;
            connection._batch.Add(new RequestLocation(start, length, request.RequestUid, request.Operation, request.FrameCount, connection._nextSequence++, position));
            return null;
        }
    }

    /// <summary>An answer on its way to the queue: a server's response to relabel, or a status this proxy gives.</summary>
    private readonly struct PendingAnswer
    {
        private readonly ReadOnlySequence<byte> _response;
        private readonly int _frames;
        private readonly uint _clientUid;
        private readonly Operation _operation;
        private readonly StatusCode _status;

        public PendingAnswer(in ReadOnlySequence<byte> response, int frames, uint clientUid, Operation operation, StatusCode status)
        {
            _response = response;
            _frames = frames;
            _clientUid = clientUid;
            _operation = operation;
            _status = status;
        }

        public int Length => _frames > 0 ? checked((int)_response.Length) : ProtocolConstants.FrameHeaderSize + 1;

        public void WriteTo(PooledBuffer output)
        {
            if (_frames > 0)
            {
                Relabel.Append(output, _response, _frames, _clientUid, resetLevel: false);
            }
            else
            {
                Responses.WriteStatus(output, _clientUid, _operation, _status);
            }
        }
    }
}
