using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Networking;

/// <summary>
/// One established byte stream (TCP, unix socket, inherited descriptor, or any <see cref="System.IO.Stream"/>),
/// read through <see cref="Input"/> and written through <see cref="Output"/>: what the layers above see of a
/// connection, whichever transport carries it.
/// </summary>
/// <remarks>
/// <para>The pipes sit on top of <see cref="Stream"/>, which starts as the socket's <see cref="NetworkStream"/> (made
/// on demand for a connection accepted on the native transport's event loops, which has none until then).
/// <see cref="WrapStreamAsync"/> can replace it (for example with an authenticated <see cref="SslStream"/>)
/// until <see cref="Input"/> or <see cref="Output"/> is first used; the pipes are created at that moment, on the
/// native transport where it was asked for (<see cref="ConnectionOptions.NativeTransport"/>,
/// <see cref="ListenerOptions.NativeTransport"/>) and the stream is still the socket's own, over the stream otherwise.</para>
/// <para>What a connection can tell about itself beyond its bytes needs neither the socket nor the stream:
/// <see cref="RemoteAddress"/>, <see cref="PeerCredentials"/> of a unix socket's peer, <see cref="PeerCertificate"/>
/// of a TLS peer, and <see cref="TryDeferToEndOfBatch"/> on the native transport. Each costs nothing until asked
/// for. <see cref="Socket"/> and <see cref="Stream"/> remain for code that sets socket options or brings its own
/// stream handling.</para>
/// <para>As with any pipe, one reader and one writer may work at the same time, but each pipe must not be
/// used by two callers at once. <see cref="Abort"/> may be called from any thread at any time.</para>
/// </remarks>
public sealed class NetworkConnection : IAsyncDisposable
{
    private readonly Lock _gate = new();
    private readonly ILogger _logger;

    // Asked for by the listener or the connect; whether the pipes go on it is decided when they are made.
    private readonly bool _nativeRequested;
    private Stream? _stream;

    // Made at the first use of Input or Output. The pipes are its own, kept here too so that Input and Output are
    // a field read.
    private ConnectionTransport? _transport;
    private PipeReader? _input;
    private PipeWriter? _output;
    private bool _wrapping;
    private int _disposed;
    private int _aborted;
    private TimeSpan _closeTimeout = TimeSpan.FromSeconds(5);
    private Address? _remoteAddress;
    private PeerCredentials? _peerCredentials;
    private bool _peerCredentialsKnown;

    // A socket accepted on an event loop: owned here, with no runtime Socket around it until one is asked for.
    private readonly NativeSocketHandle? _native;
    private readonly bool _nativeIsUnix;
    private Socket? _socket;

    private NetworkConnection(Socket? socket, Stream? stream, string peerDescription, ILogger? logger, bool nativeRequested = false, PeerCredentials? peerCredentials = null)
    {
        _socket = socket;
        _stream = stream;
        _nativeRequested = nativeRequested;
        PeerDescription = peerDescription;
        _logger = logger ?? NullLogger.Instance;
        _peerCredentials = peerCredentials;
        _peerCredentialsKnown = peerCredentials is not null;
    }

    // Accepted natively (NativeAcceptor): the descriptor, the peer's address from the accept, and whether it is a
    // unix socket; the stream is made on demand.
    private NetworkConnection(NativeSocketHandle native, bool isUnix, Address? remoteAddress, string peerDescription, ILogger logger, PeerCredentials? peerCredentials)
        : this(null, null, peerDescription, logger, nativeRequested: true, peerCredentials)
    {
        _native = native;
        _nativeIsUnix = isUnix;
        _remoteAddress = remoteAddress;
    }

    /// <summary>
    /// The socket under the connection, for socket options and end points; null for a connection made with
    /// <see cref="FromStream"/>. Reading or writing it directly bypasses the pipes and any stream wrapper. A
    /// connection accepted on the native transport's event loops has no runtime socket until this is first read: it
    /// is then made over a duplicate of the connection's descriptor, and closed with the connection.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The connection was closed or aborted before a socket was made for it.</exception>
    public Socket? Socket
    {
        get
        {
            Socket? made = Volatile.Read(ref _socket);
            if (made is not null || _native is null)
            {
                return made;
            }

            lock (_gate)
            {
                return NativeViewUnderLock();
            }
        }
    }

    /// <summary>
    /// Who is at the other end, for logs: <c>IP:127.0.0.1:43512</c>, <c>IPv6:[::1]:43512</c>, <c>UNIX:/path</c>;
    /// a peer on an unnamed unix socket is shown as the listener's path followed by <c>#</c> and the listener's
    /// connection number (<c>UNIX:/var/run/dc.sock#12</c>).
    /// </summary>
    public string PeerDescription { get; }

    /// <summary>
    /// The stream under the pipes: the socket's stream, or what <see cref="WrapStreamAsync"/> put in its place. A
    /// connection accepted on the event loops makes it when first asked (over <see cref="Socket"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection was accepted on the event loops and its pipes run on
    /// the native transport, which has no stream.</exception>
    public Stream Stream
    {
        get
        {
            lock (_gate)
            {
                return StreamUnderLock();
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
    public bool UsesNativeTransport => Volatile.Read(ref _transport) is SocketPipes;

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

    /// <summary>
    /// The peer's address: <c>IP:</c> or <c>IPv6:</c> with its port for TCP, <c>UNIX:</c> with the path a connected
    /// unix socket reached; null when the peer has none (a client on an unnamed unix socket, a connection made with
    /// <see cref="FromStream"/>) or the connection is closed. Worked out on first use from the end point the accept or
    /// connect already returned, without a system call.
    /// </summary>
    public Address? RemoteAddress
    {
        get
        {
            if (Volatile.Read(ref _remoteAddress) is { } known)
            {
                return known;
            }

            Address? address;
            try
            {
                // A natively accepted connection had its address from the accept (set at construction, or null).
                address = _native is null && Socket is { } socket ? SocketHelpers.AddressOf(socket.RemoteEndPoint) : null;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return null;
            }

            Volatile.Write(ref _remoteAddress, address);
            return address;
        }
    }

    /// <summary>
    /// The process at the other end of a unix socket, as the kernel recorded it when the connection was made
    /// (<c>SO_PEERCRED</c>). A listener that checks peers (<see cref="ListenerOptions.AllowedPeerUserIds"/>) has read
    /// them already; otherwise they are read on first use, one <c>getsockopt</c>, and kept. Null for TCP, for a
    /// connection made with <see cref="FromStream"/>, off Linux, or when the kernel cannot tell.
    /// </summary>
    public PeerCredentials? PeerCredentials
    {
        get
        {
            lock (_gate)
            {
                if (!_peerCredentialsKnown)
                {
                    _peerCredentialsKnown = true;
                    PeerCredentials read = default;
                    _peerCredentials = OperatingSystem.IsLinux()
                        && (_native is not null
                            ? _nativeIsUnix && Networking.PeerCredentials.TryRead(_native, out read, out _)
                            : _socket is { AddressFamily: AddressFamily.Unix } socket && Networking.PeerCredentials.TryRead(socket, out read, out _))
                            ? read
                            : null;
                }

                return _peerCredentials;
            }
        }
    }

    /// <summary>
    /// The certificate the peer presented in the TLS handshake of <see cref="WrapStreamAsync"/>: on an accepted
    /// connection the client's (verified against the client CA when <see cref="TlsServerSettings.RequiresClientCertificate"/>),
    /// on a connection made with TLS the server's. Null when the connection has no TLS, the peer presented none, or
    /// the connection is closed. The TLS session owns it: it stays usable while the connection is open, and the
    /// caller must not dispose it.
    /// </summary>
    public X509Certificate2? PeerCertificate
    {
        get
        {
            Stream? stream;
            lock (_gate)
            {
                // The stream as it is: asking for a certificate must not make one over a natively accepted socket.
                stream = _stream;
            }

            return stream is SslStream { IsAuthenticated: true } tls ? tls.RemoteCertificate as X509Certificate2 : null;
        }
    }

    /// <summary>
    /// On the native transport, called on an event loop thread (as this connection's read and flush continuations
    /// are): queues <paramref name="work"/> to run on that thread once the loop has dispatched every event of its
    /// current batch, before it waits for more, and returns true. Otherwise (the runtime's sockets, a stream, TLS, or
    /// a caller on another thread) returns false and does nothing.
    /// </summary>
    /// <remarks>
    /// The loop's equivalent of Redis's "before sleep": work that many connections' events feed, such as one write on
    /// a connection shared by all of them (<see cref="CoalescingWriter.Flush"/>), is done once per batch instead of
    /// once per event, and without waking another thread to do it. <see cref="IThreadPoolWorkItem.Execute"/> must not
    /// block, and should catch and report its own failures: the loop only swallows them.
    /// </remarks>
    /// <param name="work">What to run.</param>
    /// <returns>True if queued.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="work"/> is null.</exception>
    public bool TryDeferToEndOfBatch(IThreadPoolWorkItem work)
    {
        ArgumentNullException.ThrowIfNull(work);
        return Volatile.Read(ref _transport) is { } transport && transport.TryDeferToEndOfBatch(work);
    }

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
        (Socket socket, string? peer) = await SocketHelpers.ConnectAsync(address, native, logger, cancellationToken).ConfigureAwait(false);
        var connection = FromSocket(socket, peer, logger, native);

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
            if (_transport is not null)
            {
                throw new InvalidOperationException("the stream can only be wrapped before Input or Output is first used");
            }

            if (_wrapping)
            {
                throw new InvalidOperationException("the stream is already being wrapped");
            }

            _wrapping = true;
            current = StreamUnderLock();
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
        (PipeReader? input, PipeWriter? output, Stream? stream, ConnectionTransport? transport) = Snapshot();

        if (_native is not null)
        {
            // Linger on with a zero timeout makes close() send RST instead of FIN and drop unsent data. A failure
            // (already closed, a unix socket's linger) leaves closing as all that can be done.
            SetZeroLinger(_native);
            transport?.Detach();
            CloseNativeView(stream);
            _native.Dispose();
            transport?.Fail("aborted");
        }
        else if (_socket is { } socket)
        {
            try
            {
                // Linger on with a zero timeout makes close() send RST instead of FIN and drop unsent data.
                socket.LingerState = new LingerOption(true, 0);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Already closed, or a socket type without linger: closing below is all that can be done.
            }

            // The transport must let go of the descriptor before it is closed and its number can be reused.
            transport?.Detach();
            socket.Dispose();
            transport?.Fail("aborted");
        }
        else if (stream is not null)
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

        (PipeReader? input, PipeWriter? output, Stream? stream, ConnectionTransport? transport) = Snapshot();

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

        transport?.Detach();
        if (_native is not null)
        {
            CloseNativeView(stream);
            _native.Dispose();
        }
        else if (transport is SocketPipes && _socket is not null)
        {
            // The native transport never used the socket's stream, whose disposal would add a shutdown(2) before
            // the close: closing the socket alone ends the connection the same way (FIN, all data sent).
            _socket.Dispose();
        }
        else
        {
            if (stream is not null)
            {
                DisposeQuietly(stream);
            }

            _socket?.Dispose();
        }

        transport?.Fail("closed");
    }

    /// <inheritdoc/>
    public override string ToString() => PeerDescription;

    /// <summary>Wraps an accepted or connected socket; TCP sockets get TCP_NODELAY (unless they have it already).</summary>
    /// <param name="socket">The socket; the connection owns it from now on.</param>
    /// <param name="peerDescription">What <see cref="PeerDescription"/> shows; null to describe the socket's peer.</param>
    /// <param name="logger">Where the connection logs.</param>
    /// <param name="nativeTransport">Put the pipes on the native transport if the socket can go there.</param>
    /// <param name="peerCredentials">The peer's credentials, when the listener has read them already.</param>
    /// <param name="noDelayInherited">True when the socket was accepted from a listener that has TCP_NODELAY and the
    /// system copies it to accepted sockets (Linux).</param>
    internal static NetworkConnection FromSocket(Socket socket, string? peerDescription, ILogger logger, bool nativeTransport = false, PeerCredentials? peerCredentials = null, bool noDelayInherited = false)
    {
        try
        {
            if (!noDelayInherited && socket.ProtocolType == ProtocolType.Tcp)
            {
                socket.NoDelay = true;
            }

            peerDescription ??= SocketHelpers.Describe(socket.RemoteEndPoint) ?? "FD:" + socket.Handle;
            return new NetworkConnection(socket, new NetworkStream(socket, ownsSocket: true), peerDescription, logger, nativeTransport, peerCredentials);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Wraps a socket accepted on an event loop (see <see cref="NativeAcceptor"/>).</summary>
    /// <param name="handle">The accepted, non-blocking descriptor; the connection owns it from now on.</param>
    /// <param name="isUnix">A unix socket (its peer credentials can be read), not TCP.</param>
    /// <param name="remoteAddress">The peer's address as the accept returned it; null for an unnamed unix socket.</param>
    /// <param name="peerDescription">What <see cref="PeerDescription"/> shows.</param>
    /// <param name="logger">Where the connection logs.</param>
    /// <param name="peerCredentials">The peer's credentials, when the listener has read them already.</param>
    internal static NetworkConnection FromNativeSocket(NativeSocketHandle handle, bool isUnix, Address? remoteAddress, string peerDescription, ILogger logger, PeerCredentials? peerCredentials) =>
        new(handle, isUnix, remoteAddress, peerDescription, logger, peerCredentials);

    private static void SetZeroLinger(NativeSocketHandle handle)
    {
        // struct linger { int l_onoff; int l_linger; }
        Span<byte> linger = stackalloc byte[8];
        linger.Clear();
        linger[0] = 1;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            _ = NativeMethods.SetSocketOption(handle.Descriptor, NativeMethods.SolSocket, NativeMethods.SoLinger, ref linger[0], linger.Length);
        }
        catch (ObjectDisposedException)
        {
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    // Under _gate. A natively accepted connection gets its stream when first asked: a NetworkStream over its runtime
    // Socket. Not once the native transport carries it: the runtime refuses a stream over a non-blocking socket, and
    // the bytes go through Input and Output.
    private Stream StreamUnderLock()
    {
        if (_stream is null)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            if (_transport is SocketPipes)
            {
                throw new InvalidOperationException("a connection on the native transport has no stream: its bytes go through Input and Output");
            }

            _stream = new NetworkStream(NativeViewUnderLock(), ownsSocket: true);
        }

        return _stream;
    }

    // Under _gate: the runtime Socket of a natively accepted connection, made once, over a duplicate of the
    // descriptor that the Socket owns. Owning it lets the runtime do its own bookkeeping at the close (take the
    // number out of its epoll set, wake its pending operations), which it skips for a handle it does not own; the
    // connection closes both. The runtime reads the descriptor's flags when it makes the Socket, and refuses
    // synchronous calls on one that is non-blocking: unless the native transport already runs on it, the socket is
    // made blocking first, as every socket the runtime makes starts out, so that a stream over it (TLS) works as on
    // any accepted socket. (The flag belongs to the open socket, which both descriptors share.)
    private Socket NativeViewUnderLock()
    {
        if (_socket is null)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0 || IsAborted, this);
            bool added = false;
            try
            {
                // Throws ObjectDisposedException once the descriptor is closed: its number may be another's by now.
                _native!.DangerousAddRef(ref added);
                if (_transport is not SocketPipes)
                {
                    _ = NativeMethods.SetNonBlocking(_native.Descriptor, on: false);
                }

                int copy = NativeMethods.DuplicateCloseOnExec(_native.Descriptor);
                if (copy < 0)
                {
                    int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
                    throw new NetworkException($"cannot make a socket of {PeerDescription}: {NativeMethods.Describe(errno)}", null, NativeMethods.ToSocketError(errno), null);
                }

                var handle = new SafeSocketHandle(copy, ownsHandle: true);
                try
                {
                    Volatile.Write(ref _socket, new Socket(handle));
                }
                catch
                {
                    handle.Dispose();
                    throw;
                }
            }
            finally
            {
                if (added)
                {
                    _native!.DangerousRelease();
                }
            }
        }

        return _socket;
    }

    // The runtime Socket of a natively accepted connection and the stream over it, if they were made: each owns the
    // duplicate descriptor, which must close with the connection's own.
    private void CloseNativeView(Stream? stream)
    {
        if (stream is not null)
        {
            DisposeQuietly(stream);
        }

        Volatile.Read(ref _socket)?.Dispose();
    }

    private static async ValueTask CompleteQuietlyAsync(PipeWriter output)
    {
        try
        {
            await output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (NetworkErrors.IsConnectionFailure(e))
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
        catch (Exception e) when (NetworkErrors.IsConnectionFailure(e))
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
        catch (Exception e) when (NetworkErrors.IsConnectionFailure(e))
        {
            // A wrapper stream may try to send on a socket that is gone; the socket is closed regardless.
        }
    }

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
        catch (Exception e) when (NetworkErrors.IsConnectionFailure(e))
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
        catch (Exception e) when (NetworkErrors.IsConnectionFailure(e) || e is TimeoutException or AuthenticationException)
        {
            // close_notify is a courtesy; the TCP close that follows ends the session either way.
        }
    }

    // The pipes, the stream and the transport as they are now, read under the lock that CreatePipes and
    // WrapStreamAsync change them under.
    private (PipeReader? Input, PipeWriter? Output, Stream? Stream, ConnectionTransport? Transport) Snapshot()
    {
        lock (_gate)
        {
            return (_input, _output, _stream, _transport);
        }
    }

    // Null (logged) when the event loop refuses the socket: the connection then runs over a stream, as without the
    // native transport.
    private SocketPipes? AttachNative(NativeSocketHandle handle)
    {
        bool added = false;
        try
        {
            // Throws ObjectDisposedException once the descriptor is closed (an abort): registering its number then
            // could put another connection's socket in the loop.
            handle.DangerousAddRef(ref added);

            // A Socket made before the pipes made the socket blocking; the transport needs it non-blocking.
            if (_socket is not null && NativeMethods.SetNonBlocking(handle.Descriptor, on: true) != 0)
            {
                return null;
            }

            return SocketPipes.Attach(handle, PeerDescription, _logger);
        }
        catch (NetworkException e)
        {
            Log.NativeTransportUnavailable(_logger, PeerDescription, e.Message);
            return null;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    private ConnectionTransport CreatePipes()
    {
        lock (_gate)
        {
            if (_transport is null)
            {
                ObjectDisposedException.ThrowIf(_disposed != 0, this);
                if (_wrapping)
                {
                    throw new InvalidOperationException("Input and Output are available once WrapStreamAsync has completed");
                }

                ConnectionTransport? transport = null;
                if (_native is not null && (IsAborted || _native.IsClosed))
                {
                    throw new ObjectDisposedException(nameof(NetworkConnection), $"the connection to {PeerDescription} was aborted");
                }

                if (_native is not null && _stream is null)
                {
                    transport = AttachNative(_native);
                }
                else if (_nativeRequested && !IsAborted && _stream is not null)
                {
                    transport = SocketPipes.TryAttach(_socket, _stream, PeerDescription, _logger);
                }

                transport ??= new StreamPipes(StreamUnderLock());
                Volatile.Write(ref _transport, transport);
                Volatile.Write(ref _output, transport.Output);
                Volatile.Write(ref _input, transport.Input);
            }

            return _transport;
        }
    }
}
