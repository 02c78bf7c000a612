using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using static Distcache.Networking.NativeMethods;

namespace Distcache.Networking;

/// <summary>
/// A connection's <see cref="PipeReader"/> and <see cref="PipeWriter"/> directly over its non-blocking socket,
/// woken by an <see cref="EventLoop"/>: the native transport.
/// </summary>
/// <remarks>
/// <para>What it saves over the runtime's socket engine with a stream pipe on top, for a server answering one
/// small request at a time: the runtime tries every receive before it waits for the socket, so each request costs
/// a <c>recv</c> that finds nothing (EAGAIN) besides the one that reads it, and the bytes pass through a socket
/// operation queue, a stream and a pipe. Here the socket is registered edge-triggered and a receive that fills
/// less than the buffer is taken to mean the socket is drained (more data raises a new edge), so a request costs
/// one <c>epoll_wait</c> (shared by every connection ready at that moment), one <c>recv</c> and one <c>send</c>.
/// Waiting readers and flushes resume on the loop's thread, as the runtime's inline completions do.</para>
/// <para>Receives happen only when the reader asks for data, so a reader that stops reading leaves the bytes in
/// the kernel (TCP flow control), and a connection between requests holds no buffer: both buffers come from the
/// shared array pool and go back once empty.</para>
/// <para>Every system call holds a reference on the socket's handle, so that a close from another thread (an
/// abort) cannot free the descriptor number, and let it be reused by a new connection, while a call is using it.</para>
/// </remarks>
internal sealed class SocketPipes : ConnectionTransport, EventLoop.ITarget
{
    // The same sizes as the stream pipes' (see StreamPipes): a whole pipeline of 1 KB ADDs per receive, a
    // whole pipeline of 1 KB answers per send.
    private const int ReceiveBufferSize = 16 * 1024;

    // How far one read grows the receive buffer while receives keep filling it.
    private const int ReadAheadLimit = 64 * 1024;
    private const int MinimumReceiveSize = 2048;
    private const int SendBufferSize = 32 * 1024;

    private readonly SafeHandle _handle;
    private readonly nint _descriptor;
    private readonly string _peer;
    private readonly ILogger _logger;
    private readonly EventLoop _loop;
    private readonly long _registration;
    private int _detached;

    // The descriptor must be non-blocking already.
    private SocketPipes(SafeHandle handle, string peer, ILogger logger)
    {
        _peer = peer;
        _logger = logger;
        _handle = handle;
        _descriptor = _handle.DangerousGetHandle();
        Input = new Reader(this);
        Output = new Writer(this);

        // Round robin, even for a connection accepted on a loop's thread (whose first read runs right there): the
        // kernel wakes the loops that accept in a fixed order, and long-lived connections would all gather on the
        // first.
        _loop = EventLoop.Next();

        // Last: from here on the loop may deliver events, from its own thread.
        _registration = _loop.Register(this, _descriptor);
    }

    /// <inheritdoc/>
    public override Reader Input { get; }

    /// <inheritdoc/>
    public override Writer Output { get; }

    /// <summary>
    /// Puts a connected stream socket on the native transport, or returns null where it cannot go: not on Linux, no
    /// socket, or a stream that is not the socket's own (a TLS stream reads and writes the socket itself, so its
    /// connection keeps the stream pipes). A socket that the event loop refuses is logged and left to the stream
    /// pipes too.
    /// </summary>
    /// <param name="socket">The connection's socket; null for a connection over a stream.</param>
    /// <param name="stream">The stream the connection would otherwise make its pipes over.</param>
    /// <param name="peer">The peer's description, for logs.</param>
    /// <param name="logger">Where the transport logs.</param>
    public static SocketPipes? TryAttach(Socket? socket, Stream stream, string peer, ILogger logger)
    {
        if (socket is null || stream is not NetworkStream || !EventLoop.IsSupported)
        {
            return null;
        }

        try
        {
            MakeNonBlocking(socket, socket.SafeHandle.DangerousGetHandle());
            return new SocketPipes(socket.SafeHandle, peer, logger);
        }
        catch (Exception e) when (e is NetworkException or SocketException or ObjectDisposedException)
        {
            Log.NativeTransportUnavailable(logger, peer, e.Message);
            return null;
        }
    }

    /// <summary>Puts a socket accepted on an event loop (non-blocking already) on the native transport.</summary>
    /// <param name="handle">The socket; the connection keeps owning it.</param>
    /// <param name="peer">The peer's description, for logs.</param>
    /// <param name="logger">Where the transport logs.</param>
    /// <exception cref="NetworkException">The event loop refused the socket.</exception>
    public static SocketPipes Attach(NativeSocketHandle handle, string peer, ILogger logger) => new(handle, peer, logger);

    /// <summary>
    /// Stops the loop's events for this socket; the socket is closed next. Runs before the close, so that no event
    /// reaches this transport once the descriptor's number may belong to another connection.
    /// </summary>
    public override void Detach()
    {
        if (Interlocked.Exchange(ref _detached, 1) != 0)
        {
            return;
        }

        // Only the registration's number is forgotten, without an epoll_ctl(DEL): the close that follows removes the
        // descriptor from the loop's set (the kernel's entry is the open file's, so a number reused by a new
        // connection meanwhile is a separate entry), and any event still delivered for this registration finds no
        // target and is dropped.
        _loop.Unregister(_registration, -1);
    }

    // One ioctl where the runtime's Socket.Blocking would make two fcntl calls. The runtime's own view of the socket
    // stays "blocking", which is never consulted: this transport makes every call on the descriptor itself.
    private static void MakeNonBlocking(Socket socket, nint descriptor)
    {
        int on = 1;
        if (!NativeMethods.HasFionbio || NativeMethods.IoctlInt((int)descriptor, NativeMethods.FIONBIO, ref on) != 0)
        {
            socket.Blocking = false;
        }
    }

    /// <summary>
    /// Fails a waiting read or flush, and every later one, because the socket was closed: aborted, or disposed
    /// while a read was still waiting (the loop will never wake it now).
    /// </summary>
    /// <param name="how">How it was closed, for the message: "aborted", "closed".</param>
    public override void Fail(string how)
    {
        Input.Fail(new IOException("the connection was " + how, new SocketException((int)SocketError.OperationAborted)));
        Output.Fail(new IOException("the connection was " + how, new SocketException((int)SocketError.OperationAborted)));
    }

    /// <summary>Defers to the end of the batch of the event loop the caller runs on, if it runs on one.</summary>
    public override bool TryDeferToEndOfBatch(IThreadPoolWorkItem work) => EventLoop.TryDefer(work);

    /// <summary>Called by the event loop's thread with the events that arrived for this socket.</summary>
    public void OnEvents(uint events)
    {
        try
        {
            if ((events & (EpollIn | EpollRdHup | EpollHup | EpollErr)) != 0)
            {
                Input.OnReadable(hangUp: (events & (EpollRdHup | EpollHup | EpollErr)) != 0);
            }

            if ((events & (EpollOut | EpollHup | EpollErr)) != 0)
            {
                Output.OnWritable();
            }
        }
        catch (Exception e)
        {
            // Continuations run here; one that throws must cost its own connection at most, never the loop that
            // serves all the others.
            Log.EventCallbackFailed(_logger, _peer, e);
        }
    }

    private nint Receive(byte[] buffer, int offset, int count, out int errno)
    {
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            nint received = NativeMethods.Receive(_descriptor, ref buffer[offset], count, 0);
            errno = received < 0 ? Marshal.GetLastPInvokeError() : 0;
            return received;
        }
        catch (ObjectDisposedException)
        {
            errno = EBADF;
            return -1;
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    private nint Send(byte[] buffer, int offset, int count, out int errno)
    {
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            nint sent = NativeMethods.Send(_descriptor, ref buffer[offset], count, MsgNoSignal | MsgDontWait);
            errno = sent < 0 ? Marshal.GetLastPInvokeError() : 0;
            return sent;
        }
        catch (ObjectDisposedException)
        {
            errno = EBADF;
            return -1;
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    // The same shape of exception as NetworkStream's, so that callers catching IOException see no difference.
    private static IOException Failure(string what, int errno)
    {
        var socketError = new SocketException((int)ToSocketError(errno));
        return new IOException($"Unable to {what} the transport connection: {socketError.Message} ({Describe(errno)}).", socketError);
    }

    /// <summary>The receiving half: one contiguous buffer, filled by <c>recv</c> when the reader asks for data.</summary>
    internal sealed class Reader : PipeReader
    {
        private readonly SocketPipes _owner;
        private readonly Lock _gate = new();
        private readonly PendingWait<ReadResult> _wait;
        // Unconsumed bytes are the window of _data; the reader has looked at everything before _examined (an
        // offset into the window's array).
        private readonly PooledBuffer _data = new();
        private int _examined;

        // True from an edge until a receive finds the socket drained. Starts true: bytes may have arrived before
        // the socket was registered.
        private bool _readable = true;

        // The peer has closed or reset its side (the loop saw RDHUP, HUP or ERR). From then on a short receive
        // no longer means drained: the end of stream or the error still waits behind the data, and its edge has
        // already been delivered, so receives go on until they meet it.
        private bool _hungUp;
        private bool _ended;
        private bool _holding;
        private bool _cancelRequested;
        private bool _completed;
        private Exception? _error;

        public Reader(SocketPipes owner)
        {
            _owner = owner;
            _wait = new PendingWait<ReadResult>(_gate);
        }

        /// <inheritdoc/>
        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            short version;
            lock (_gate)
            {
                ThrowIfUnusable();
                if (cancellationToken.IsCancellationRequested)
                {
                    return ValueTask.FromCanceled<ReadResult>(cancellationToken);
                }

                try
                {
                    if (TryTake(out ReadResult result))
                    {
                        return new ValueTask<ReadResult>(result);
                    }
                }
                catch (IOException e)
                {
                    return ValueTask.FromException<ReadResult>(e);
                }

                version = _wait.Begin();
            }

            return _wait.Await(version, cancellationToken);
        }

        /// <inheritdoc/>
        public override bool TryRead(out ReadResult result)
        {
            lock (_gate)
            {
                ThrowIfUnusable();
                return TryTake(out result);
            }
        }

        /// <inheritdoc/>
        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        /// <inheritdoc/>
        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            lock (_gate)
            {
                if (!_holding)
                {
                    throw new InvalidOperationException("AdvanceTo without a read to advance");
                }

                if (_data.Array is null)
                {
                    _holding = false;
                    return;
                }

                // Checked before the read is released, so that a caller who passed a wrong position can still
                // advance with the right one.
                int consumedAt = IndexOf(consumed);
                int examinedAt = IndexOf(examined);
                if (consumedAt < _data.Start || examinedAt < consumedAt)
                {
                    throw new ArgumentOutOfRangeException(nameof(consumed), "the positions must lie within the last read's buffer, consumed before examined");
                }

                _holding = false;
                _data.Consume(consumedAt - _data.Start);
                _examined = examinedAt;
                if (_data.Length == 0)
                {
                    ReleaseBuffer();
                }
            }
        }

        /// <inheritdoc/>
        public override void CancelPendingRead()
        {
            ReadResult result;
            lock (_gate)
            {
                if (!_wait.TryEnd())
                {
                    _cancelRequested = true;
                    return;
                }

                _holding = true;
                result = new ReadResult(Sequence(), isCanceled: true, isCompleted: false);
            }

            _wait.Complete(result, null);
        }

        /// <inheritdoc/>
        public override void Complete(Exception? exception = null)
        {
            lock (_gate)
            {
                if (_completed)
                {
                    return;
                }

                _completed = true;
                _holding = false;
                if (!_wait.IsWaiting)
                {
                    ReleaseBuffer();
                }
            }
        }

        /// <summary>The loop's thread: the socket may have data. Completes a waiting read if it does.</summary>
        /// <param name="hangUp">The event also said the peer closed or reset the connection.</param>
        internal void OnReadable(bool hangUp)
        {
            ReadResult result = default;
            Exception? failure = null;
            lock (_gate)
            {
                _readable = true;
                _hungUp |= hangUp;
                if (!_wait.IsWaiting)
                {
                    return;
                }

                try
                {
                    if (!TryTake(out result))
                    {
                        return;
                    }
                }
                catch (IOException e)
                {
                    failure = e;
                }

                _wait.TryEnd();
            }

            _wait.Complete(result, failure);
        }

        /// <summary>Fails a waiting read and every later one (after the bytes already received are read).</summary>
        internal void Fail(Exception error)
        {
            lock (_gate)
            {
                _error ??= error;
                _readable = false;
                if (!_wait.TryEnd())
                {
                    return;
                }
            }

            _wait.Complete(default, error);
        }

        private void ThrowIfUnusable()
        {
            if (_completed)
            {
                throw new InvalidOperationException("reading is not allowed after the reader was completed");
            }

            if (_holding || _wait.IsWaiting)
            {
                throw new InvalidOperationException("a read is already in progress: call AdvanceTo first");
            }
        }

        // Under the lock. True with a result to hand out (the caller then holds the buffer until AdvanceTo).
        private bool TryTake(out ReadResult result)
        {
            while (true)
            {
                if (_cancelRequested)
                {
                    _cancelRequested = false;
                    _holding = true;
                    result = new ReadResult(Sequence(), isCanceled: true, isCompleted: false);
                    return true;
                }

                if (_data.End > _examined || (_ended && _error is null))
                {
                    _holding = true;
                    result = new ReadResult(Sequence(), isCanceled: false, isCompleted: _ended);
                    return true;
                }

                if (_error is not null)
                {
                    throw _error;
                }

                if (!_readable)
                {
                    result = default;
                    return false;
                }

                ReceiveOnce();
            }
        }

        private void ReceiveOnce()
        {
            // Repeats only while receives fill the buffer.
            while (true)
            {
                MakeRoom();
                byte[] buffer = _data.Array!;
                int wanted = buffer.Length - _data.End;
                nint received = _owner.Receive(buffer, _data.End, wanted, out int errno);
                if (received <= 0)
                {
                    if (received == 0)
                    {
                        _ended = true;
                    }
                    else if (errno == EAGAIN)
                    {
                        _readable = false;
                    }
                    else if (errno != EINTR)
                    {
                        _error = Failure("read data from", errno);
                    }

                    return;
                }

                _data.Advance((int)received);
                if (received < wanted)
                {
                    // Short of what was asked: the socket had no more. Anything that arrives later raises a new
                    // edge; an end of stream that arrived before this receive may have raised its edge already
                    // (see _hungUp).
                    _readable = _hungUp;
                    return;
                }

                // The buffer is full and the socket may hold more: a pipeline larger than the buffer (16 ADDs of
                // 1 KB are 17 KB). Taking the rest now, into a larger buffer, rather than at the next read, answers
                // the whole pipeline with one send instead of two.
                if (buffer.Length >= ReadAheadLimit)
                {
                    return;
                }
            }
        }

        // Only between reads (the caller has advanced), so moving the unconsumed bytes invalidates nothing.
        private void MakeRoom() => _examined -= _data.EnsureFree(MinimumReceiveSize, ReceiveBufferSize);

        private void ReleaseBuffer()
        {
            _data.Reset();
            _examined = 0;
        }

        private ReadOnlySequence<byte> Sequence() =>
            _data.Array is not { } buffer ? ReadOnlySequence<byte>.Empty : new ReadOnlySequence<byte>(buffer, _data.Start, _data.Length);

        private int IndexOf(SequencePosition position)
        {
            if (!ReferenceEquals(position.GetObject(), _data.Array))
            {
                throw new ArgumentOutOfRangeException(nameof(position), "the position does not belong to the last read's buffer");
            }

            int index = position.GetInteger() & int.MaxValue;
            return index <= _data.End ? index : throw new ArgumentOutOfRangeException(nameof(position), "the position lies beyond the last read's buffer");
        }
    }

    /// <summary>The sending half: one contiguous buffer, sent by <c>send</c> on each flush.</summary>
    internal sealed class Writer : PipeWriter
    {
        private readonly SocketPipes _owner;
        private readonly Lock _gate = new();
        private readonly PendingWait<FlushResult> _wait;

        // The bytes written and not yet sent.
        private readonly PooledBuffer _data = new();
        private bool _writable = true;
        private bool _cancelRequested;
        private bool _completed;
        private Exception? _error;

        public Writer(SocketPipes owner)
        {
            _owner = owner;
            _wait = new PendingWait<FlushResult>(_gate);
        }

        /// <inheritdoc/>
        public override bool CanGetUnflushedBytes => true;

        /// <inheritdoc/>
        public override long UnflushedBytes => _data.Length;

        /// <inheritdoc/>
        public override void Advance(int bytes)
        {
            if (bytes < 0 || (bytes > 0 && (_data.Array is null || _data.End + bytes > _data.Array.Length)))
            {
                throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "more bytes than the last buffer handed out");
            }

            _data.Advance(bytes);
        }

        /// <inheritdoc/>
        public override Memory<byte> GetMemory(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return _data.Array!.AsMemory(_data.End);
        }

        /// <inheritdoc/>
        public override Span<byte> GetSpan(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return _data.Array!.AsSpan(_data.End);
        }

        /// <inheritdoc/>
        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            short version;
            lock (_gate)
            {
                if (_completed)
                {
                    throw new InvalidOperationException("flushing is not allowed after the writer was completed");
                }

                if (_wait.IsWaiting)
                {
                    throw new InvalidOperationException("a flush is already in progress");
                }

                if (_cancelRequested)
                {
                    _cancelRequested = false;
                    return new ValueTask<FlushResult>(new FlushResult(isCanceled: true, isCompleted: false));
                }

                if (cancellationToken.IsCancellationRequested)
                {
                    return ValueTask.FromCanceled<FlushResult>(cancellationToken);
                }

                if (TrySendAll())
                {
                    return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: false));
                }

                if (_error is not null)
                {
                    return ValueTask.FromException<FlushResult>(_error);
                }

                version = _wait.Begin();
            }

            return _wait.Await(version, cancellationToken);
        }

        /// <inheritdoc/>
        public override void CancelPendingFlush()
        {
            lock (_gate)
            {
                if (!_wait.TryEnd())
                {
                    _cancelRequested = true;
                    return;
                }
            }

            _wait.Complete(new FlushResult(isCanceled: true, isCompleted: false), null);
        }

        /// <inheritdoc/>
        public override void Complete(Exception? exception = null)
        {
            lock (_gate)
            {
                if (_completed)
                {
                    return;
                }

                _completed = true;
                if (_wait.IsWaiting)
                {
                    return;
                }

                // What was written and never flushed still goes, as far as the socket takes it without waiting:
                // closing flushes a stream pipe's writer too. A caller that must know it all went flushes first.
                if (exception is null && _error is null)
                {
                    TrySendAll();
                }

                _data.Reset();
            }
        }

        /// <summary>The loop's thread: the socket may take more. Completes a waiting flush once all is sent.</summary>
        internal void OnWritable()
        {
            Exception? failure;
            lock (_gate)
            {
                _writable = true;
                if (!_wait.IsWaiting)
                {
                    return;
                }

                if (!TrySendAll() && _error is null)
                {
                    return;
                }

                failure = _error;
                _wait.TryEnd();
            }

            _wait.Complete(new FlushResult(isCanceled: false, isCompleted: false), failure);
        }

        /// <summary>Fails a waiting flush and every later one.</summary>
        internal void Fail(Exception error)
        {
            lock (_gate)
            {
                _error ??= error;
                _writable = false;
                if (!_wait.TryEnd())
                {
                    return;
                }
            }

            _wait.Complete(default, error);
        }

        // Under the lock. True once everything written has been sent; false when the socket is full (wait for
        // the next edge) or failed (_error).
        private bool TrySendAll()
        {
            while (_data.Length > 0)
            {
                if (!_writable || _error is not null)
                {
                    return false;
                }

                nint sent = _owner.Send(_data.Array!, _data.Start, _data.Length, out int errno);
                if (sent >= 0)
                {
                    _data.Consume((int)sent);
                }
                else if (errno == EAGAIN)
                {
                    _writable = false;
                }
                else if (errno != EINTR)
                {
                    _error = Failure("write data to", errno);
                }
            }

            // All sent: the buffer goes back to the pool, so that a connection between requests holds none.
            _data.Reset();
            return true;
        }

        private void Reserve(int sizeHint)
        {
            if (_completed)
            {
                throw new InvalidOperationException("writing is not allowed after the writer was completed");
            }

            ArgumentOutOfRangeException.ThrowIfNegative(sizeHint);
            _data.EnsureFree(Math.Max(sizeHint, 1), SendBufferSize);
        }
    }
}
