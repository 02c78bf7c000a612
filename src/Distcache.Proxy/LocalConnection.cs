using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
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
internal readonly record struct RequestLocation(long Start, long Length, uint Uid, Operation Operation, int Frames);

/// <summary>
/// One local client connection: a reader loop that decodes every complete request available and hands them all to
/// the proxy in one step, and a writer that sends the answers queued for it. The two meet only through the
/// output buffer, so the server link, which queues answers, never waits for this connection's socket.
/// </summary>
/// <remarks>
/// <para>
/// Answers are queued in request order: all of them are queued under the proxy's lock, the server answers in
/// order on its one link, and a lost link answers the rest of its requests in order before any later request can
/// see the link as down.
/// </para>
/// <para>
/// Flow control: the reader stops reading while <see cref="DistcacheProxyOptions.MaxRequestsInFlightPerConnection"/>
/// requests wait for answers or <see cref="DistcacheProxyOptions.ConnectionOutputSoftLimit"/> bytes of answers wait
/// to be written, so a client that does not read slows only itself. A connection whose queued answers would exceed
/// <see cref="DistcacheProxyOptions.ConnectionOutputHardLimit"/> is dropped.
/// </para>
/// </remarks>
internal sealed class LocalConnection
{
    private readonly DistcacheProxy _proxy;
    private readonly NetworkConnection _connection;
    private readonly DistcacheProxyOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _outputLock = new();
    private readonly List<RequestLocation> _batch = [];
    private readonly MessageDecoder _decoder = new(MessageDirection.Requests);

    // How many batches one writer sends in a row on the thread that started it before it moves to the thread
    // pool: a link reader delivering to many connections must get back to reading.
    private const int MaxInlineWrites = 4;

    // An auto-reset event: one pending wake-up at most, never lost, never blocking the setter.
    private readonly Channel<bool> _readerSignal = CreateSignal();

    // Completes once nothing more will be written: every request read has been answered and its answer sent, or
    // the connection was closed.
    private readonly TaskCompletionSource _written = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private OutputBuffer _staging = new();
    private OutputBuffer _writing = new();
    private int _queuedBytes;

    // True while a writer is sending (under _outputLock): answers queued meanwhile go out with its next batch.
    private bool _writerBusy;
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
    }

    public string Peer => _connection.PeerDescription;

    /// <summary>Requests of this connection waiting for their answers to be queued. Changed only under the proxy's lock.</summary>
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

    /// <summary>Counts requests about to be forwarded or answered; called under the proxy's lock.</summary>
    public void AddInFlight(int count) => Volatile.Write(ref _inFlight, _inFlight + count);

    /// <summary>
    /// Queues the server's answer to one of this connection's requests, relabelled with the uid the client used, and
    /// counts the request as answered. Called under the proxy's lock. Returns false when the answer was discarded
    /// because the connection is gone (or has just been dropped for having too much unread).
    /// </summary>
    public bool Answer(in ReadOnlySequence<byte> response, int frames, uint clientUid)
    {
        bool queued = false;
        if (!_closed)
        {
            int length = checked((int)response.Length);
            lock (_outputLock)
            {
                if (!WouldOverflow(length))
                {
                    Relabel.Append(_staging, response, frames, clientUid, resetLevel: false);
                    _queuedBytes += length;
                    queued = true;
                }
            }
        }

        Answered();
        return queued;
    }

    /// <summary>
    /// Queues a one-byte status answer (<c>DISCONNECTED</c>) to one of this connection's requests and counts the
    /// request as answered. Called under the proxy's lock.
    /// </summary>
    public bool AnswerStatus(uint clientUid, Operation operation, StatusCode status)
    {
        bool queued = false;
        if (!_closed)
        {
            const int length = ProtocolConstants.FrameHeaderSize + 1;
            lock (_outputLock)
            {
                if (!WouldOverflow(length))
                {
                    Responses.WriteStatus(_staging, clientUid, operation, status);
                    _queuedBytes += length;
                    queued = true;
                }
            }
        }

        Answered();
        return queued;
    }

    /// <summary>
    /// Sends the answers queued so far. Unless a write is already under way (which then sends these too), the
    /// caller's thread makes the write itself, as far as the socket takes it without waiting: an answer goes out
    /// without waking another thread. Call it after queueing answers, outside the proxy's lock.
    /// </summary>
    public void WriteQueued()
    {
        bool claimed;
        lock (_outputLock)
        {
            if (_writerBusy)
            {
                return;
            }

            claimed = _writerBusy = _staging.Length > 0 && !_closed;
        }

        if (claimed)
        {
            _ = DrainAsync();
        }
        else
        {
            TryFinishWriting();
        }
    }

    /// <summary>Drops the connection at once (TCP reset), from any thread, without running anything inline.</summary>
    public void Abort()
    {
        _closed = true;
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }

        _readerSignal.Writer.TryWrite(true);

        // Abort wakes the pipes' pending operations; from the thread pool their continuations cannot run inside
        // a caller that holds the proxy's lock.
        ThreadPool.UnsafeQueueUserWorkItem(static c => c.AbortConnection(), this, preferLocal: false);
    }

    private static Channel<bool> CreateSignal() => Channel.CreateBounded<bool>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });

    // What the loops see when the client goes away or the connection is aborted under them (the pipes report use
    // after completion as InvalidOperationException).
    private static bool IsConnectionFailure(Exception e) =>
        e is IOException or SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException;

    // What the reader and the writer do with an exception: the client going away is logged as such, anything else
    // as the bug it is; either way only this connection is dropped.
    private void Drop(Exception e)
    {
        if (IsConnectionFailure(e))
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
        // calls WriteQueued once out of the proxy's lock; a discarded answer means the connection is closing.
        Volatile.Write(ref _inFlight, _inFlight - 1);
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
            if (_writerBusy || (!_closed && !(_readerDone && Volatile.Read(ref _inFlight) == 0 && _staging.Length == 0)))
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
                _proxy.Forward(this, buffer, _batch);
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
        var reader = new SequenceReader<byte>(buffer);
        int room = _options.MaxRequestsInFlightPerConnection - Volatile.Read(ref _inFlight);
        violation = null;
        while (true)
        {
            if (_batch.Count >= room)
            {
                consumed = reader.Position;
                return reader.Remaining > 0;
            }

            long start = reader.Consumed;
            DecodeStatus status = _decoder.TryDecode(ref reader, out Message request, out ProtocolViolation broken);
            if (status == DecodeStatus.NeedMoreData)
            {
                break;
            }

            if (status == DecodeStatus.Violation)
            {
                violation = broken;
                break;
            }

            if (request.Operation == Operation.Add && request.Payload.Length < ProtocolConstants.AddRequestPrefixSize)
            {
                // The server drops the connection that sends this, and here that connection is everyone's link:
                // it is stopped at the proxy, costing only the client that sent it.
                violation = new ProtocolViolation(ProtocolViolationKind.AddPayloadTooShort, ProtocolConstants.FrameHeaderSize);
                reader.Rewind(reader.Consumed - start);
                break;
            }

            _batch.Add(new RequestLocation(start, reader.Consumed - start, request.RequestUid, request.Operation, request.FrameCount));
        }

        consumed = reader.Position;
        return false;
    }

    // The writer: started by WriteQueued with _writerBusy claimed, it sends batch after batch until nothing is
    // queued, and gives the claim back in the same locked step that finds the queue empty, so that an answer queued
    // at that moment is either in its next batch or finds no writer and starts one.
    private async Task DrainAsync()
    {
        bool released = false;
        try
        {
            PipeWriter output = _connection.Output;
            int batches = 0;
            while (true)
            {
                OutputBuffer batch;
                lock (_outputLock)
                {
                    if (_closed || _staging.Length == 0)
                    {
                        _writerBusy = false;
                        released = true;
                        break;
                    }

                    (_staging, _writing) = (_writing, _staging);
                    batch = _writing;
                }

                if (++batches > MaxInlineWrites)
                {
                    batches = 0;
                    await Task.Yield();
                }

                FlushResult flushed;
                int length = batch.Length;
                try
                {
                    flushed = await output.WriteAsync(batch.WrittenMemory).ConfigureAwait(false);
                }
                finally
                {
                    batch.Reset();
                    lock (_outputLock)
                    {
                        _queuedBytes -= length;
                    }
                }

                Touch();
                _readerSignal.Writer.TryWrite(true);
                if (flushed.IsCompleted || flushed.IsCanceled)
                {
                    Abort();
                }
            }
        }
#pragma warning disable CA1031 // A bug must cost this one connection, never the proxy.
        catch (Exception e)
#pragma warning restore CA1031
        {
            // The client went away (or a bug struck); its remaining answers are discarded.
            Drop(e);
        }
        finally
        {
            if (!released)
            {
                lock (_outputLock)
                {
                    _writerBusy = false;
                }
            }
        }

        TryFinishWriting();
    }
}
