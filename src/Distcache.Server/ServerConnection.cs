using System.Buffers;
using System.IO.Pipelines;
using Distcache.Protocol;
using Distcache.Storage;
using Microsoft.Extensions.Logging;

namespace Distcache.Server;

/// <summary>
/// One client connection: reads everything available, answers every complete request in it, and flushes the
/// responses once. Pipelined requests therefore cost one read and one write system call per batch.
/// </summary>
internal sealed class ServerConnection
{
    /// <summary>Responses buffered beyond this are flushed before the next request of the batch is answered.</summary>
    internal const int MaxUnflushedBytes = 64 * 1024;

    // How many batches in a row a connection may answer without giving up its thread. Small enough that a
    // busy client cannot hold a core for long, large enough that the yield costs nothing per request.
    internal const int MaxInlineBatches = 4;

    // The most lookups of one read handed to the store's prefetch: 16 KiB of pipelined GETs holds up to ~350, but
    // prefetching many more than the cache keeps until they are used would only evict the first ones.
    private const int PrefetchDepth = 32;

    private readonly IDuplexPipe _transport;
    private readonly string _peer;
    private readonly RequestProcessor _processor;
    private readonly ServerStatistics _statistics;
    private readonly ILogger _logger;
    private readonly MessageDecoder _decoder = new(MessageDirection.Requests);

    // Prefetching (see PrefetchAhead): null when the store gains nothing from it. The look-ahead has its own
    // decoder so that a message it reassembles cannot overwrite the one being answered.
    private readonly ISessionPrefetch? _prefetch;
    private MessageDecoder? _lookahead;
    private ReadOnlyMemory<byte>[]? _prefetchIds;
    private volatile bool _stopping;

    // The timestamps the server's sweep reads (Environment.TickCount64, milliseconds; 0 = not in that state).
    // The loop updates them with plain volatile writes: no timer, allocation or lock per request. A sweep that
    // reads a value a moment stale merely fires one sweep period later.
    private long _lastActivityAt;
    private long _messageStartedAt;
    private long _flushStartedAt;
    private long _pendingBytes;
    private int _expiry;

    public ServerConnection(IDuplexPipe transport, string peer, RequestProcessor processor, ServerStatistics statistics, ILogger logger)
    {
        _transport = transport;
        _peer = peer;
        _processor = processor;
        _prefetch = processor.Store as ISessionPrefetch;
        _statistics = statistics;
        _logger = logger;
    }

    public string Peer => _peer;

    public long Requests { get; private set; }


    /// <summary>Why the sweep closed this connection, or <see cref="ConnectionExpiry.None"/>.</summary>
    public ConnectionExpiry Expiry => (ConnectionExpiry)Volatile.Read(ref _expiry);

    /// <summary>Bytes of an incomplete message that were held when the connection expired (for the log).</summary>
    public long PendingBytes => Volatile.Read(ref _pendingBytes);

    /// <summary>
    /// The timeout that has passed at <paramref name="now"/>, if any. Called by the server's sweep, concurrently
    /// with the loop. A connection waiting in a flush is judged only by the write timeout: it is not reading then,
    /// so neither a message still arriving nor silence is the peer's doing.
    /// </summary>
    public ConnectionExpiry Check(long now, long messageTimeoutMs, long idleTimeoutMs, long writeTimeoutMs)
    {
        long flushStarted = Volatile.Read(ref _flushStartedAt);
        if (flushStarted != 0)
        {
            return writeTimeoutMs > 0 && now - flushStarted >= writeTimeoutMs ? ConnectionExpiry.WriteTimeout : ConnectionExpiry.None;
        }

        long messageStarted = Volatile.Read(ref _messageStartedAt);
        if (messageTimeoutMs > 0 && messageStarted != 0 && now - messageStarted >= messageTimeoutMs)
        {
            return ConnectionExpiry.MessageTimeout;
        }

        return idleTimeoutMs > 0 && now - Volatile.Read(ref _lastActivityAt) >= idleTimeoutMs ? ConnectionExpiry.IdleTimeout : ConnectionExpiry.None;
    }

    /// <summary>
    /// Marks the connection expired. Returns false if it had already expired or ended, so that the caller counts
    /// and logs each connection once. The caller then counts, logs and only then calls <see cref="Wake"/>: the
    /// loop ends as soon as it is woken, and whoever waits on it must already see the count.
    /// </summary>
    public bool TryExpire(ConnectionExpiry reason) => Interlocked.CompareExchange(ref _expiry, (int)reason, 0) == 0;

    /// <summary>Wakes a loop waiting to read or to flush, so that it sees its expiry and ends.</summary>
    public void Wake()
    {
        // Over in-memory pipes these are the only way to wake the loop; over a socket the caller also aborts it.
        // The loop may have ended and its pipes been completed meanwhile: then there is nothing left to wake.
        try
        {
            _transport.Input.CancelPendingRead();
            _transport.Output.CancelPendingFlush();
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    /// <summary>
    /// Claims the end of the connection for the loop, so that a sweep running concurrently cannot also expire it
    /// (and count and log it a second time). Returns false if the sweep expired it first: then the sweep has
    /// reported it.
    /// </summary>
    public bool TryEnd() => Interlocked.CompareExchange(ref _expiry, (int)ConnectionExpiry.Ended, 0) == 0;

    /// <summary>Asks the loop to finish the batch it is answering and stop.</summary>
    public void Stop()
    {
        _stopping = true;
        _transport.Input.CancelPendingRead();
    }

    /// <summary>Serves until the peer closes, breaks the protocol, or <see cref="Stop"/> is called.
    /// Returns the violation that closed the connection, if any.</summary>
    public async Task<ProtocolViolation?> RunAsync(CancellationToken cancellationToken)
    {
        PipeReader input = _transport.Input;
        PipeWriter output = _transport.Output;
        Volatile.Write(ref _lastActivityAt, Environment.TickCount64);
        int inlineBatches = 0;
        while (true)
        {
            ValueTask<ReadResult> reading = input.ReadAsync(cancellationToken);
            if (!reading.IsCompleted)
            {
                inlineBatches = 0;
            }
            else if (++inlineBatches > MaxInlineBatches)
            {
                // A client that keeps its socket full (large pipelined ADDs) would otherwise be served batch after
                // batch on this thread, because each read completes at once: the other connections wait and their
                // latency grows without bound. Going to the back of the thread pool's queue shares the cores.
                inlineBatches = 0;
                await Task.Yield();
            }

            ReadResult read = await reading.ConfigureAwait(false);
            long readAt = Environment.TickCount64;
            Volatile.Write(ref _lastActivityAt, readAt);
            if (Expiry != ConnectionExpiry.None)
            {
                return null;
            }

            ReadOnlySequence<byte> buffer = read.Buffer;
            SequencePosition position = buffer.Start;
            long answered = 0;
            ProtocolViolation? violation = null;
            bool prefetched = _prefetch is null;
            while (true)
            {
                DecodeStatus status = DecodeNext(buffer.Slice(position), out Message request, out SequencePosition next, out ProtocolViolation frameViolation);
                if (status == DecodeStatus.NeedMoreData)
                {
                    break;
                }

                if (status == DecodeStatus.Violation)
                {
                    violation = frameViolation;
                    break;
                }

                if (!prefetched)
                {
                    // Once per read, and only when it holds more than this request: a lone request gains nothing.
                    prefetched = true;
                    if (!next.Equals(buffer.End))
                    {
                        PrefetchAhead(request, buffer.Slice(next));
                    }
                }

                // The request's payload points into 'buffer', which stays valid until AdvanceTo below, even across
                // an asynchronous store call.
                ValueTask<ProtocolViolationKind?> processing = _processor.ProcessAsync(request, output, _statistics, cancellationToken);
                ProtocolViolationKind? refused = processing.IsCompletedSuccessfully ? processing.Result : await processing.ConfigureAwait(false);
                if (refused is { } kind)
                {
                    violation = new ProtocolViolation(kind, ProtocolConstants.FrameHeaderSize);
                    break;
                }

                position = next;
                answered++;

                // Flushing within a batch once enough is buffered bounds the memory a connection holds for a
                // client that pipelines many GETs of large sessions: one read of small requests could otherwise
                // queue megabytes of responses before the single flush at its end.
                if (output.CanGetUnflushedBytes && output.UnflushedBytes >= MaxUnflushedBytes && !await FlushAsync(output, cancellationToken).ConfigureAwait(false))
                {
                    input.AdvanceTo(position, buffer.End);
                    Requests += answered;
                    _statistics.AddOperations(answered);
                    return null;
                }
            }

            // Measured before AdvanceTo, after which the buffer's segments may be reused.
            long pendingBytes = buffer.Slice(position).Length;

            // Responses to everything before a violation are still sent: those requests were well-formed.
            input.AdvanceTo(position, buffer.End);
            if (answered > 0)
            {
                Requests += answered;
                _statistics.AddOperations(answered);
                if (!await FlushAsync(output, cancellationToken).ConfigureAwait(false))
                {
                    return null;
                }
            }

            // The message clock starts when the first bytes of a message are in and we go back to waiting for the
            // rest; it is not moved by later reads that still leave the message incomplete (slowloris). A batch
            // that answered something completed the previous message, so what is left started in this read.
            if (pendingBytes == 0)
            {
                Volatile.Write(ref _messageStartedAt, 0);
            }
            else if (answered > 0 || Volatile.Read(ref _messageStartedAt) == 0)
            {
                // After a flush the clock starts from its end: while we were blocked writing, we were not reading.
                Volatile.Write(ref _messageStartedAt, answered > 0 ? Environment.TickCount64 : readAt);
            }

            Volatile.Write(ref _pendingBytes, pendingBytes);

            if (violation is { } v)
            {
                if (!TryEnd())
                {
                    return null;
                }

                Log.ProtocolViolation(_logger, _peer, v.Describe(), _statistics.Violation());
                return v;
            }

            if (read.IsCompleted)
            {
                long pending = pendingBytes;
                if (pending > 0)
                {
                    if (!TryEnd())
                    {
                        return null;
                    }

                    var truncated = new ProtocolViolation(ProtocolViolationKind.TruncatedMessage, pending);
                    Log.ProtocolViolation(_logger, _peer, $"{truncated.Kind.Describe()} ({pending} bytes pending)", _statistics.Violation());
                    return truncated;
                }

                return null;
            }

            if (read.IsCanceled && (_stopping || Expiry != ConnectionExpiry.None))
            {
                return null;
            }
        }
    }

    /// <summary>Flushes the responses written so far, under the sweep's write timeout. Returns false if the
    /// connection must end: the peer is gone, or the flush was cut short because it expired.</summary>
    private async ValueTask<bool> FlushAsync(PipeWriter output, CancellationToken cancellationToken)
    {
        // Tick counts are never 0 on a running system (they count from boot), so 0 can mean "not flushing".
        Volatile.Write(ref _flushStartedAt, Environment.TickCount64);
        FlushResult flushed = await output.FlushAsync(cancellationToken).ConfigureAwait(false);
        Volatile.Write(ref _flushStartedAt, 0);
        Volatile.Write(ref _lastActivityAt, Environment.TickCount64);
        return !flushed.IsCompleted && !(flushed.IsCanceled && Expiry != ConnectionExpiry.None);
    }

    /// <summary>Hands the store the ids of the lookups in this read (the current request and those after it), so
    /// that their cache misses overlap instead of following one another.</summary>
    /// <remarks>With a million sessions stored, a GET is three dependent misses into main memory; a pipelined
    /// read of 16 GETs then spends most of its time waiting on memory, one miss at a time. Decoding the rest of
    /// the read a second time costs far less than that: see docs/performance.md.</remarks>
    private void PrefetchAhead(Message current, ReadOnlySequence<byte> rest)
    {
        ReadOnlyMemory<byte>[] ids = _prefetchIds ??= new ReadOnlyMemory<byte>[PrefetchDepth];
        MessageDecoder lookahead = _lookahead ??= new MessageDecoder(MessageDirection.Requests);
        int count = 0;
        if (IsLookup(current.Operation))
        {
            ids[count++] = current.Payload;
        }

        var reader = new SequenceReader<byte>(rest);
        while (count < ids.Length && lookahead.TryDecode(ref reader, out Message message, out _) == DecodeStatus.Complete)
        {
            if (IsLookup(message.Operation))
            {
                ids[count++] = message.Payload;
            }
        }

        if (count > 1)
        {
            _prefetch!.Prefetch(ids.AsSpan(0, count));
        }

        // The ids point into the pipe's buffers, which are recycled once consumed.
        ids.AsSpan(0, count).Clear();

        static bool IsLookup(Operation operation) => operation is Operation.Get or Operation.Have or Operation.Remove;
    }

    // SequenceReader is a ref struct and cannot live across the awaits of the loop, so each decode gets its own.
    private DecodeStatus DecodeNext(ReadOnlySequence<byte> unread, out Message message, out SequencePosition next, out ProtocolViolation violation)
    {
        var reader = new SequenceReader<byte>(unread);
        DecodeStatus status = _decoder.TryDecode(ref reader, out message, out violation);
        next = reader.Position;
        return status;
    }
}
