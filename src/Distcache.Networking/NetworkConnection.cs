using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Networking;

/// <summary>
/// One established byte stream (TCP, unix socket, inherited descriptor, or any <see cref="System.IO.Stream"/>),
/// read through <see cref="Input"/> and written through <see cref="Output"/>.
/// </summary>
/// <remarks>
/// <para>The pipes sit on top of <see cref="Stream"/>, which starts as the socket's <see cref="NetworkStream"/>.
/// <see cref="WrapStreamAsync"/> can replace it (for example with an authenticated <see cref="SslStream"/>)
/// until <see cref="Input"/> or <see cref="Output"/> is first used; the pipes are created at that moment.</para>
/// <para>As with any pipe, one reader and one writer may work at the same time, but each pipe must not be
/// used by two callers at once. <see cref="Abort"/> may be called from any thread at any time.</para>
/// </remarks>
public sealed class NetworkConnection : IAsyncDisposable
{
    // Zero-byte reads let an idle connection wait without holding a receive buffer: a cache server keeps a
    // connection per client process open for long idle stretches, so most of them are idle at any moment.
    // Reads of up to 16 KiB take a client's whole pipeline of ADDs (1 KB sessions, 16 in flight) in one
    // system call; the 4 KiB default took four or five, and cost 20% more server CPU per operation.
    private static readonly StreamPipeReaderOptions ReaderOptions = new(bufferSize: 16 * 1024, minimumReadSize: 2048, leaveOpen: true, useZeroByteReads: true);

    // The pipes never own the stream, so that DisposeAsync can order flush, TLS shutdown and close itself.
    // The writer sends each buffer segment with its own system call, so segments of 32 KiB (not the default
    // 4 KiB) let a flush of a whole pipeline of answers (16 sessions of 1 KB) go out in one send, not four.
    // The segments go back to the pool once flushed, so an idle connection holds none.
    private static readonly StreamPipeWriterOptions WriterOptions = new(minimumBufferSize: WriteSegmentSize, leaveOpen: true);

    /// <summary>The size of the output pipe's buffer segments: one system call sends at most one.</summary>
    internal const int WriteSegmentSize = 32 * 1024;

    private readonly Lock _gate = new();
    private readonly ILogger _logger;
    private Stream _stream;
    private PipeReader? _input;
    private PipeWriter? _output;
    private bool _wrapping;
    private int _disposed;
    private int _aborted;
    private TimeSpan _closeTimeout = TimeSpan.FromSeconds(5);

    // The native transport (SocketPipes): asked for by the listener or the connect, in use once the pipes are made over it.
    private readonly bool _nativeTransport;
    private SocketPipes? _native;

    private NetworkConnection(Socket? socket, Stream stream, string peerDescription, ILogger? logger, bool nativeTransport = false)
    {
        Socket = socket;
        _stream = stream;
        _nativeTransport = nativeTransport;
        PeerDescription = peerDescription;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>
    /// The socket under the connection, for socket options and end points; null for a connection made with
    /// <see cref="FromStream"/>. Reading or writing it directly bypasses the pipes and any stream wrapper.
    /// </summary>
    public Socket? Socket { get; }

    /// <summary>
    /// Who is at the other end, for logs: <c>IP:127.0.0.1:43512</c>, <c>IPv6:[::1]:43512</c>, <c>UNIX:/path</c>;
    /// a peer on an unnamed unix socket is shown as the listener's path followed by <c>#</c> and the listener's
    /// connection number (<c>UNIX:/var/run/dc.sock#12</c>).
    /// </summary>
    public string PeerDescription { get; }

    /// <summary>The stream under the pipes: the socket's stream, or what <see cref="WrapStreamAsync"/> put in its place.</summary>
    public Stream Stream
    {
        get
        {
            lock (_gate)
            {
                return _stream;
            }
        }
    }

    /// <summary>
    /// How long <see cref="DisposeAsync"/> waits for buffered output to reach the peer before it gives up and
    /// resets the connection (a peer that stops reading would otherwise hold the close forever). Default 5 seconds;
    /// <see cref="Timeout.InfiniteTimeSpan"/> waits without limit.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to a negative value other than <see cref="Timeout.InfiniteTimeSpan"/>.</exception>
    public TimeSpan CloseTimeout
    {
        get => _closeTimeout;
        set
        {
            if (value < TimeSpan.Zero && value != Timeout.InfiniteTimeSpan)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "the close timeout cannot be negative");
            }

            _closeTimeout = value;
        }
    }

    /// <summary>
    /// True when <see cref="Input"/> and <see cref="Output"/> run on the native transport
    /// (<see cref="ListenerOptions.NativeTransport"/>, <see cref="ConnectionOptions.NativeTransport"/>); false before
    /// they are first used, and for connections on the runtime's sockets.
    /// </summary>
    public bool UsesNativeTransport => Volatile.Read(ref _native) is not null;

    /// <summary>True once <see cref="Abort"/> has been called.</summary>
    public bool IsAborted => Volatile.Read(ref _aborted) != 0;

    /// <summary>
    /// Bytes from the peer. A read result with <see cref="ReadResult.IsCompleted"/> means the peer closed its
    /// side. After <see cref="Abort"/>, a pending read returns a canceled result or fails with
    /// <see cref="IOException"/>/<see cref="ObjectDisposedException"/>.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The connection has been disposed before the pipes were first used.</exception>
    /// <exception cref="InvalidOperationException"><see cref="WrapStreamAsync"/> is still running.</exception>
    public PipeReader Input => Volatile.Read(ref _input) ?? CreatePipes().Input;

    /// <summary>
    /// Bytes to the peer; they are sent when flushed. Writing after the peer reset the connection fails with
    /// <see cref="IOException"/>.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The connection has been disposed before the pipes were first used.</exception>
    /// <exception cref="InvalidOperationException"><see cref="WrapStreamAsync"/> is still running.</exception>
    public PipeWriter Output => Volatile.Read(ref _output) ?? CreatePipes().Output;

    /// <summary>Connects to <paramref name="address"/> with default options.</summary>
    /// <inheritdoc cref="ConnectAsync(Address, ConnectionOptions, CancellationToken)"/>
    public static ValueTask<NetworkConnection> ConnectAsync(Address address, CancellationToken cancellationToken = default) =>
        ConnectAsync(address, ConnectionOptions.Default, cancellationToken);

    /// <summary>
    /// Connects to <paramref name="address"/>: resolves a host name (IPv4 only for <c>IP:</c>, IPv6 only for
    /// <c>IPv6:</c>) and tries each address in turn, connects to a unix socket path, or takes over the connected
    /// socket of an <c>FD:n</c> address. TCP connections have Nagle's algorithm disabled (TCP_NODELAY), because
    /// the protocol is request/response and Nagle would hold each small request back for up to 40 ms.
    /// </summary>
    /// <param name="address">Where to connect; <see cref="Address.CanConnect"/> must be true.</param>
    /// <param name="options">Stream wrapper and logger.</param>
    /// <param name="cancellationToken">Cancels resolution, connecting and the stream wrapper.</param>
    /// <returns>The connection, after the stream wrapper (if any) has completed.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="address"/> or <paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// The address cannot be connected to: it names all interfaces (<c>IP:port</c>) or has port 0.
    /// </exception>
    /// <exception cref="NetworkException">
    /// The host does not resolve, nothing accepts at the address (<see cref="NetworkException.SocketError"/> is
    /// then for example <see cref="SocketError.ConnectionRefused"/>), or the <c>FD:n</c> descriptor is not a
    /// connected stream socket. The message names the address.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    public static async ValueTask<NetworkConnection> ConnectAsync(Address address, ConnectionOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(options);
        if (address.CannotConnectReason is { } reason)
        {
            throw new ArgumentException(reason, nameof(address));
        }

        var logger = options.Logger ?? NullLogger.Instance;
        bool native = options.NativeTransport && EventLoop.IsSupported;
        var connection = address.Kind switch
        {
            AddressKind.FileDescriptor => FromSocket(SocketHelpers.AdoptDescriptor(address, listening: false), null, logger, native),
            AddressKind.Unix => await ConnectUnixAsync(address, logger, native, cancellationToken).ConfigureAwait(false),
            _ => await ConnectTcpAsync(address, logger, native, cancellationToken).ConfigureAwait(false),
        };

        if (options.StreamWrapper is { } wrapper)
        {
            try
            {
                await connection.WrapStreamAsync(wrapper, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                connection.Abort();
                await connection.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        Log.Connected(logger, connection.PeerDescription);
        return connection;
    }

    /// <summary>
    /// Makes a connection over an arbitrary stream (an in-memory duplex stream in tests, a pre-negotiated
    /// stream from elsewhere). <see cref="Socket"/> is then null; <see cref="Abort"/> disposes the stream.
    /// </summary>
    /// <param name="stream">The stream; the connection owns it from now on and disposes it.</param>
    /// <param name="peerDescription">What <see cref="PeerDescription"/> shows.</param>
    /// <param name="logger">Where the connection logs; null for nowhere.</param>
    /// <returns>The connection.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> or <paramref name="peerDescription"/> is null.</exception>
    public static NetworkConnection FromStream(Stream stream, string peerDescription, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(peerDescription);
        return new NetworkConnection(null, stream, peerDescription, logger);
    }

    /// <summary>
    /// Replaces <see cref="Stream"/> with what <paramref name="wrapper"/> makes of it, typically an
    /// <see cref="SslStream"/> after its handshake. Call it before <see cref="Input"/> or <see cref="Output"/>
    /// is first used, and on the connection's own task rather than an accept loop, so that one slow handshake
    /// does not hold up accepting others.
    /// </summary>
    /// <param name="wrapper">Receives the current stream and returns the stream to use instead; it may keep the old one inside.</param>
    /// <param name="cancellationToken">Passed to <paramref name="wrapper"/>.</param>
    /// <returns>A task that completes when the new stream is in place.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="wrapper"/> is null.</exception>
    /// <exception cref="InvalidOperationException">
    /// The pipes are already in use, another wrap is running, or <paramref name="wrapper"/> returned null.
    /// </exception>
    /// <exception cref="ObjectDisposedException">The connection has been disposed.</exception>
    /// <remarks>If <paramref name="wrapper"/> fails, its exception propagates and the stream is unchanged; the caller should then dispose the connection.</remarks>
    public async ValueTask WrapStreamAsync(Func<Stream, CancellationToken, ValueTask<Stream>> wrapper, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(wrapper);
        Stream current;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            if (_input is not null)
            {
                throw new InvalidOperationException("the stream can only be wrapped before Input or Output is first used");
            }

            if (_wrapping)
            {
                throw new InvalidOperationException("the stream is already being wrapped");
            }

            _wrapping = true;
            current = _stream;
        }

        try
        {
            var wrapped = await wrapper(current, cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidOperationException("the stream wrapper returned null");
            bool disposedMeanwhile;
            lock (_gate)
            {
                _stream = wrapped;
                disposedMeanwhile = _disposed != 0;
            }

            if (disposedMeanwhile)
            {
                // DisposeAsync ran during the handshake and closed the stream it saw, not this one.
                DisposeQuietly(wrapped);
                throw new ObjectDisposedException(nameof(NetworkConnection), "the connection was disposed while its stream was being wrapped");
            }
        }
        finally
        {
            lock (_gate)
            {
                _wrapping = false;
            }
        }
    }

    /// <summary>
    /// Closes the connection at once, discarding unsent output: TCP peers see a reset (RST) rather than an
    /// orderly end of stream. Pending reads and flushes are woken. Safe to call from any thread, more than once,
    /// and before or after <see cref="DisposeAsync"/>, which must still be called to release the pipes.
    /// </summary>
    public void Abort()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }

        Log.Aborted(_logger, PeerDescription);
        PipeReader? input;
        PipeWriter? output;
        Stream stream;
        lock (_gate)
        {
            input = _input;
            output = _output;
            stream = _stream;
        }

        if (Socket is not null)
        {
            try
            {
                // Linger on with a zero timeout makes close() send RST instead of FIN and drop unsent data.
                Socket.LingerState = new LingerOption(true, 0);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Already closed, or a socket type without linger: closing below is all that can be done.
            }

            // The event loop must forget the descriptor before it is closed and its number can be reused.
            _native?.Detach();
            Socket.Dispose();
            _native?.Fail("aborted");
        }
        else
        {
            DisposeQuietly(stream);
        }

        // After DisposeAsync the pipes are completed and may refuse these calls; there is nothing left to wake.
        try
        {
            input?.CancelPendingRead();
            output?.CancelPendingFlush();
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    /// <summary>
    /// Closes the connection in order: flushes what was written to <see cref="Output"/> (giving up after
    /// <see cref="CloseTimeout"/> and resetting instead), completes both pipes, ends TLS with a close_notify when
    /// the stream is an <see cref="SslStream"/>, and closes the socket so that the peer reads end of stream.
    /// Never throws for a connection the peer already dropped. Stop using the pipes before calling it;
    /// to interrupt a reader or writer first, call <see cref="Abort"/>.
    /// </summary>
    /// <returns>A task that completes when the socket is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        PipeReader? input;
        PipeWriter? output;
        Stream stream;
        lock (_gate)
        {
            input = _input;
            output = _output;
            stream = _stream;
        }

        if (output is not null)
        {
            if (!IsAborted && !await DrainAsync(output).ConfigureAwait(false))
            {
                Abort();
            }

            await CompleteQuietlyAsync(output).ConfigureAwait(false);
        }

        if (input is not null)
        {
            await CompleteQuietlyAsync(input).ConfigureAwait(false);
        }

        if (!IsAborted && stream is SslStream tls)
        {
            await ShutDownTlsAsync(tls).ConfigureAwait(false);
        }

        _native?.Detach();
        DisposeQuietly(stream);
        Socket?.Dispose();
        _native?.Fail("closed");
    }

    /// <inheritdoc/>
    public override string ToString() => PeerDescription;

    /// <summary>Wraps an accepted or connected socket; TCP sockets get TCP_NODELAY.</summary>
    internal static NetworkConnection FromSocket(Socket socket, string? peerDescription, ILogger logger, bool nativeTransport = false)
    {
        try
        {
            if (socket.ProtocolType == ProtocolType.Tcp)
            {
                socket.NoDelay = true;
            }

            peerDescription ??= Describe(socket.RemoteEndPoint) ?? "FD:" + socket.Handle;
            return new NetworkConnection(socket, new NetworkStream(socket, ownsSocket: true), peerDescription, logger, nativeTransport);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The address text of an end point, or null for an unnamed unix socket (or an unknown family).</summary>
    internal static string? Describe(EndPoint? endPoint) => AddressOf(endPoint)?.ToString();

    /// <summary>The address of an end point, or null for an unnamed unix socket (or an unknown family).</summary>
    internal static Address? AddressOf(EndPoint? endPoint)
    {
        if (endPoint is null || (endPoint is UnixDomainSocketEndPoint && string.IsNullOrEmpty(endPoint.ToString())))
        {
            return null;
        }

        try
        {
            return Address.FromEndPoint(endPoint);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    private static async ValueTask<NetworkConnection> ConnectUnixAsync(Address address, ILogger logger, bool native, CancellationToken cancellationToken)
    {
        Socket socket;
        try
        {
            socket = await ConnectSocketAsync(new UnixDomainSocketEndPoint(address.Path!), native, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw SocketHelpers.Failed("connect to", address, e);
        }

        return FromSocket(socket, address.ToString(), logger, native);
    }

    // A connected socket; on failure the socket is closed and the exception propagates.
    private static async ValueTask<Socket> ConnectSocketAsync(EndPoint endPoint, bool native, CancellationToken cancellationToken)
    {
        if (native)
        {
            return await NativeConnect.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
        }

        var socket = endPoint is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static async ValueTask<NetworkConnection> ConnectTcpAsync(Address address, ILogger logger, bool native, CancellationToken cancellationToken)
    {
        var candidates = await SocketHelpers.ResolveAsync(address, cancellationToken).ConfigureAwait(false);
        SocketException? lastFailure = null;
        foreach (var ip in candidates)
        {
            var endPoint = new IPEndPoint(ip, address.Port);
            Socket socket;
            try
            {
                socket = await ConnectSocketAsync(endPoint, native, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                cancellationToken.ThrowIfCancellationRequested();
                lastFailure = e;
                Log.ConnectAttemptFailed(logger, endPoint, address, e.SocketErrorCode);
                continue;
            }

            return FromSocket(socket, Address.FromEndPoint(endPoint).ToString(), logger, native);
        }

        throw SocketHelpers.Failed("connect to", address, lastFailure!);
    }

    private static async ValueTask CompleteQuietlyAsync(PipeWriter output)
    {
        try
        {
            await output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (IsCloseFailure(e))
        {
            // The data could not go out; the peer will see the connection end early, which is all that is left to do.
        }
    }

    private static async ValueTask CompleteQuietlyAsync(PipeReader input)
    {
        try
        {
            await input.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (IsCloseFailure(e))
        {
            // Completing a reader only releases buffers; a failure here has no one to report to.
        }
    }

    private static void DisposeQuietly(Stream stream)
    {
        try
        {
            stream.Dispose();
        }
        catch (Exception e) when (IsCloseFailure(e))
        {
            // A wrapper stream may try to send on a socket that is gone; the socket is closed regardless.
        }
    }

    private static bool IsCloseFailure(Exception e) =>
        e is IOException or SocketException or ObjectDisposedException or InvalidOperationException or OperationCanceledException;

    private async ValueTask<bool> DrainAsync(PipeWriter output)
    {
        using var timeout = new CancellationTokenSource(CloseTimeout);
        try
        {
            await output.FlushAsync(timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (InvalidOperationException)
        {
            // The caller already completed the writer, which flushed it.
            return true;
        }
        catch (Exception e) when (IsCloseFailure(e))
        {
            Log.CloseDrainFailed(_logger, PeerDescription, e);
            return false;
        }
    }

    private async ValueTask ShutDownTlsAsync(SslStream tls)
    {
        try
        {
            await tls.ShutdownAsync().WaitAsync(CloseTimeout).ConfigureAwait(false);
        }
        catch (Exception e) when (IsCloseFailure(e) || e is TimeoutException or AuthenticationException)
        {
            // close_notify is a courtesy; the TCP close that follows ends the session either way.
        }
    }

    private (PipeReader Input, PipeWriter Output) CreatePipes()
    {
        lock (_gate)
        {
            if (_input is null)
            {
                ObjectDisposedException.ThrowIf(_disposed != 0, this);
                if (_wrapping)
                {
                    throw new InvalidOperationException("Input and Output are available once WrapStreamAsync has completed");
                }

                if (TryAttachNative() is { } native)
                {
                    Volatile.Write(ref _native, native);
                    Volatile.Write(ref _output, native.Output);
                    Volatile.Write(ref _input, native.Input);
                }
                else
                {
                    Volatile.Write(ref _output, PipeWriter.Create(_stream, WriterOptions));
                    Volatile.Write(ref _input, PipeReader.Create(_stream, ReaderOptions));
                }
            }

            return (_input, _output!);
        }
    }

    // Under _gate. The native transport reads and writes the socket itself, so it needs the socket's own stream:
    // a wrapped one (TLS) keeps the stream pipes.
    private SocketPipes? TryAttachNative()
    {
        if (!_nativeTransport || Socket is null || _stream is not NetworkStream || !EventLoop.IsSupported || IsAborted)
        {
            return null;
        }

        try
        {
            return SocketPipes.Attach(Socket, PeerDescription, _logger);
        }
        catch (Exception e) when (e is NetworkException or SocketException or ObjectDisposedException)
        {
            Log.NativeTransportUnavailable(_logger, PeerDescription, e.Message);
            return null;
        }
    }
}
