using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Networking;

/// <summary>
/// A listening socket on an <see cref="Networking.Address"/>, handing out accepted connections as
/// <see cref="NetworkConnection"/>s. Disposing it stops listening and removes the unix socket file it created.
/// </summary>
public sealed class NetworkListener : IAsyncDisposable, IDisposable
{
    private readonly ILogger _logger;
    private readonly string? _socketFile;
    private readonly FileIdentity? _socketFileIdentity;
    private readonly string _anonymousPeerPrefix;
    private readonly PeerCredentialPolicy? _peerPolicy;
    private long _acceptedCount;
    private long _peersRefused;
    private int _disposed;
    private bool _nativeTransport;

    private readonly bool _noDelayInherited;
    private readonly bool _isTcp;
    private readonly List<NativeAcceptor> _acceptors = [];

    private NetworkListener(Address address, Socket socket, ILogger logger, string? socketFile, FileIdentity? socketFileIdentity, PeerCredentialPolicy? peerPolicy = null)
    {
        _peerPolicy = peerPolicy;
        Address = address;
        Socket = socket;
        _logger = logger;
        _socketFile = socketFile;
        _socketFileIdentity = socketFileIdentity;
        LocalAddress = address.Kind == AddressKind.Unix
            ? address
            : SocketHelpers.AddressOf(socket.LocalEndPoint) ?? address;
        _anonymousPeerPrefix = LocalAddress.ToString();

        // Linux copies TCP_NODELAY from a listening socket to the sockets accepted from it; asked once here (an
        // inherited descriptor may or may not have it), it spares a setsockopt per connection.
        _isTcp = socket.ProtocolType == ProtocolType.Tcp;
        _noDelayInherited = OperatingSystem.IsLinux() && _isTcp && socket.NoDelay;
    }

    /// <summary>The address as given to <see cref="Listen"/>.</summary>
    public Address Address { get; }

    /// <summary>
    /// The address actually bound: the system-chosen port when listening on port 0 (<c>IP:127.0.0.1:0</c>
    /// becomes for example <c>IP:127.0.0.1:40123</c>), the resolved address of a host name, the socket's own
    /// address for <c>FD:n</c> (or <c>FD:n</c> itself when it has none).
    /// </summary>
    public Address LocalAddress { get; }

    /// <summary>Connections closed on accept because the peer's user and group are not in
    /// <see cref="ListenerOptions.AllowedPeerUserIds"/> / <see cref="ListenerOptions.AllowedPeerGroupIds"/>.</summary>
    public long PeersRefused => Interlocked.Read(ref _peersRefused);

    /// <summary>The listening socket, for socket options. Accepting from it directly bypasses peer naming and TCP_NODELAY.</summary>
    public Socket Socket { get; }

    /// <summary>
    /// Starts listening on <paramref name="address"/>.
    /// </summary>
    /// <remarks>
    /// <para>TCP: the host name is resolved now (the first address of the address's family is used);
    /// <c>IP:port</c> binds 0.0.0.0 and <c>IPv6:port</c> binds :: for IPv6 only, so both can share a port.
    /// SO_REUSEADDR is set so that a restarted server can bind while old connections are in TIME_WAIT,
    /// but a second live listener on the same port still fails.</para>
    /// <para>UNIX: an existing socket file is probed with a connect. If nothing accepts (a dead process left it)
    /// it is removed and replaced; if a process accepts, listening fails and the file is left alone; anything
    /// other than a socket at the path is never removed. The owner, group and mode of
    /// <paramref name="options"/> are applied after bind() and before listen(), so no connection can arrive
    /// while the file still has the permissions the umask gave it.</para>
    /// <para>FD: the descriptor must be a listening stream socket; the listener owns and eventually closes it.</para>
    /// </remarks>
    /// <param name="address">Where to listen; every address kind can be listened on.</param>
    /// <param name="options">Backlog, unix socket owner/group/mode, logger; null for defaults.</param>
    /// <returns>The listener, ready for <see cref="AcceptAsync"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="address"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The backlog is less than 1.</exception>
    /// <exception cref="ArgumentException">
    /// Socket owner, group or mode were given for an address that is not <c>UNIX:</c>, or the owner or group
    /// names no known user or group.
    /// </exception>
    /// <exception cref="NetworkException">
    /// The address is in use (<see cref="SocketError.AddressAlreadyInUse"/>, including a unix socket a running
    /// process accepts on), a file that is not a socket is in the way, the host does not resolve, ownership or
    /// permissions cannot be set, or an <c>FD:n</c> descriptor is not a listening socket. The message names the address.
    /// </exception>
    public static NetworkListener Listen(Address address, ListenerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        options ??= ListenerOptions.Default;
        if (options.Backlog < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Backlog, "the listen backlog must be at least 1");
        }

        var setsFileAttributes = options.UnixSocketOwner is not null || options.UnixSocketGroup is not null || options.UnixSocketMode is not null;
        if (setsFileAttributes && address.Kind != AddressKind.Unix)
        {
            throw new ArgumentException($"socket owner, group and mode only apply to UNIX: addresses, not to {address}", nameof(options));
        }

        var peerPolicy = PeerCredentialPolicy.From(options, address);
        var logger = options.Logger ?? NullLogger.Instance;
        var listener = address.Kind switch
        {
            AddressKind.Unix => ListenUnix(address, options, logger, peerPolicy),
            AddressKind.FileDescriptor => new NetworkListener(address, SocketHelpers.AdoptDescriptor(address, listening: true), logger, null, null),
            _ => ListenTcp(address, options, logger),
        };
        listener._nativeTransport = options.NativeTransport;
        Log.Listening(logger, address, listener.LocalAddress, options.Backlog);
        return listener;
    }

    /// <summary>
    /// Waits for the next connection. TCP connections come with TCP_NODELAY set. A connection that the peer
    /// reset before it could be accepted is skipped rather than reported.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting; the listener stays usable.</param>
    /// <returns>The accepted connection.</returns>
    /// <exception cref="ObjectDisposedException">The listener was disposed, before or during the wait.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    /// <exception cref="NetworkException">
    /// Accepting failed, for example because the process ran out of file descriptors
    /// (<see cref="SocketError.TooManyOpenSockets"/>); the listener stays usable and a later accept may succeed.
    /// </exception>
    public async ValueTask<NetworkConnection> AcceptAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await Socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (IsDisposed && e is SocketException or ObjectDisposedException)
            {
                throw new ObjectDisposedException(nameof(NetworkListener), $"the listener on {Address} was disposed while accepting");
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
            {
                Log.AcceptSkipped(_logger, Address, e.SocketErrorCode);
                continue;
            }
            catch (SocketException e)
            {
                cancellationToken.ThrowIfCancellationRequested();
                throw SocketHelpers.Failed("accept on", Address, e);
            }

            string peer = NamePeer(SocketHelpers.Describe(accepted.RemoteEndPoint));
            PeerCredentials? credentials = null;
            if (_peerPolicy is not null && _peerPolicy.Refusal(accepted, out credentials) is { } refusal)
            {
                Refuse(peer, refusal);
                accepted.Dispose();
                continue;
            }

            var connection = NetworkConnection.FromSocket(accepted, peer, _logger, _nativeTransport, credentials, _noDelayInherited);
            Log.Accepted(_logger, peer);
            return connection;
        }
    }

    /// <summary>
    /// Makes a connection of a socket that <see cref="NativeAcceptor"/> accepted, as <see cref="AcceptAsync"/> does of
    /// the runtime's: names the peer, applies the peer credential policy and TCP_NODELAY. Null, with the socket
    /// closed, when the peer is refused or the connection cannot be set up (logged). Never throws.
    /// </summary>
    /// <param name="handle">The accepted socket, non-blocking; owned by the connection, or closed here.</param>
    /// <param name="peerAddress">The peer's <c>struct sockaddr</c> as the accept filled it in.</param>
    internal NetworkConnection? Admit(NativeSocketHandle handle, ReadOnlySpan<byte> peerAddress)
    {
        try
        {
            return AdmitOrRefuse(handle, peerAddress);
        }
#pragma warning disable CA1031 // Called on an event loop, which must outlive whatever one peer brings.
        catch (Exception e)
#pragma warning restore CA1031
        {
            handle.Dispose();
            Log.AdmitFailed(_logger, Address, e);
            return null;
        }
    }

    /// <summary>
    /// Gives <paramref name="connection"/> to <paramref name="accepted"/>; if that throws, closes the connection
    /// (reset) first and then reports the exception, which must not escape either: the caller is an event loop or a
    /// thread-pool item, which serve every other connection.
    /// </summary>
    internal static void HandOver(NetworkConnection connection, Action<NetworkConnection> accepted, Action<Exception> acceptFailed)
    {
        try
        {
            accepted(connection);
        }
#pragma warning disable CA1031 // One connection's failing hand-over must not stop the loop that accepts all the others.
        catch (Exception e)
#pragma warning restore CA1031
        {
            connection.Abort();
            _ = connection.DisposeAsync().AsTask();
            try
            {
                acceptFailed(e);
            }
#pragma warning disable CA1031 // The reporter itself failing leaves nothing to report to.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }
    }

    private NetworkConnection? AdmitOrRefuse(NativeSocketHandle handle, ReadOnlySpan<byte> peerAddress)
    {
        System.Net.EndPoint? endPoint = SocketHelpers.EndPointOf(peerAddress);
        Address? remote = SocketHelpers.AddressOf(endPoint);
        string peer = NamePeer(remote?.ToString());
        PeerCredentials? credentials = null;
        if (_peerPolicy is not null && _peerPolicy.Refusal(handle, out credentials) is { } refusal)
        {
            Refuse(peer, refusal);
            handle.Dispose();
            return null;
        }

        if (_isTcp && !_noDelayInherited)
        {
            // Nagle would hold back each small answer; a failure leaves the connection slower, not broken.
            int on = 1;
            _ = NativeMethods.SetSocketOption(handle.Descriptor, NativeMethods.IpProtoTcp, NativeMethods.TcpNoDelay, ref on, sizeof(int));
        }

        var connection = NetworkConnection.FromNativeSocket(handle, isUnix: !_isTcp, remote, peer, _logger, credentials);
        Log.Accepted(_logger, peer);
        return connection;
    }

    // The peer's description: its address, or for an unnamed unix socket the listener's and the connection's number.
    private string NamePeer(string? address)
    {
        long number = Interlocked.Increment(ref _acceptedCount);
        return address ?? string.Create(CultureInfo.InvariantCulture, $"{_anonymousPeerPrefix}#{number}");
    }

    private void Refuse(string peer, string refusal)
    {
        Interlocked.Increment(ref _peersRefused);
        Log.PeerRefused(_logger, Address, peer, refusal);
    }

    /// <summary>
    /// Accepts connections and hands each to <paramref name="accepted"/> until <paramref name="cancellationToken"/> is
    /// cancelled or the listener is disposed, then returns. An accept that fails for want of a resource (EMFILE under
    /// a flood of connections) is reported to <paramref name="acceptFailed"/> and tried again after a pause of 50 ms
    /// instead of spinning.
    /// </summary>
    /// <param name="accepted">
    /// Takes over each connection, on a thread where it may serve the connection until its first wait: with
    /// <see cref="ListenerOptions.NativeTransport"/> on Linux, the event loop's thread that accepted it and will run
    /// its reads and writes (the connection's first request is usually there already, and is answered without
    /// waking another thread); otherwise a thread-pool thread. Calls for different connections may run at the same
    /// time. It must not block: work that can wait on the peer (a TLS handshake a slow client could stall) belongs
    /// after an await. An exception it throws is reported to <paramref name="acceptFailed"/>, and that connection is
    /// aborted.
    /// </param>
    /// <param name="acceptFailed">Reports a failed accept, typically as a log line.</param>
    /// <param name="cancellationToken">Stops accepting.</param>
    /// <returns>A task that completes when the loop has stopped and no connection is being handed over any more.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="accepted"/> or <paramref name="acceptFailed"/> is null.</exception>
    public Task AcceptLoopAsync(Action<NetworkConnection> accepted, Action<Exception> acceptFailed, CancellationToken cancellationToken) =>
        AcceptLoopAsync(accepted, acceptFailed, DefaultAcceptRetryDelay, cancellationToken);

    /// <summary>
    /// Accepts connections as <see cref="AcceptLoopAsync(Action{NetworkConnection}, Action{Exception}, CancellationToken)"/>
    /// does, pausing <paramref name="retryDelay"/> after a failed accept.
    /// </summary>
    /// <param name="accepted">Takes over each connection; see the other overload.</param>
    /// <param name="acceptFailed">Reports a failed accept, typically as a log line.</param>
    /// <param name="retryDelay">How long to wait after a failed accept before the next.</param>
    /// <param name="cancellationToken">Stops accepting.</param>
    /// <returns>A task that completes when the loop has stopped and no connection is being handed over any more.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="accepted"/> or <paramref name="acceptFailed"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="retryDelay"/> is negative.</exception>
    public Task AcceptLoopAsync(Action<NetworkConnection> accepted, Action<Exception> acceptFailed, TimeSpan retryDelay, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(accepted);
        ArgumentNullException.ThrowIfNull(acceptFailed);
        ArgumentOutOfRangeException.ThrowIfLessThan(retryDelay, TimeSpan.Zero);
        if (_nativeTransport && EventLoop.IsSupported && !IsDisposed && !cancellationToken.IsCancellationRequested)
        {
            lock (_acceptors)
            {
                NativeAcceptor? acceptor = null;
                try
                {
                    acceptor = IsDisposed ? null : NativeAcceptor.TryStart(this, Socket.SafeHandle, accepted, acceptFailed, retryDelay, cancellationToken);
                }
                catch (NetworkException e)
                {
                    // No event loop could be made (epoll_create1 failed): accept the runtime's way.
                    Log.NativeTransportUnavailable(_logger, Address.ToString(), e.Message);
                }

                if (acceptor is not null)
                {
                    _acceptors.Add(acceptor);
                    acceptor.Stopped.ContinueWith(
                        (_, state) =>
                        {
                            var (listener, stopped) = ((NetworkListener, NativeAcceptor))state!;
                            lock (listener._acceptors)
                            {
                                listener._acceptors.Remove(stopped);
                            }
                        },
                        (this, acceptor),
                        CancellationToken.None,
                        TaskContinuationOptions.ExecuteSynchronously,
                        TaskScheduler.Default);
                    return acceptor.Stopped;
                }
            }
        }

        return RuntimeAcceptLoopAsync(accepted, acceptFailed, retryDelay, cancellationToken);
    }

    /// <summary>
    /// Stops listening: removes the unix socket file this listener created (only if the file at the path is still
    /// that socket, never one that replaced it) and closes the socket. Pending <see cref="AcceptAsync"/> calls
    /// fail with <see cref="ObjectDisposedException"/>. Connections already accepted are not affected.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Out of the event loops first, so that no loop accepts on a descriptor number about to be freed.
        lock (_acceptors)
        {
            foreach (NativeAcceptor acceptor in _acceptors)
            {
                acceptor.Stop();
            }

            _acceptors.Clear();
        }

        // Unlink before close: once the name is gone, no new client can queue on a socket about to close.
        RemoveSocketFile();
        Socket.Dispose();
        Log.StoppedListening(_logger, Address);
    }

    /// <inheritdoc cref="Dispose"/>
    /// <returns>A completed task: stopping a listener does not wait for anything.</returns>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public override string ToString() => LocalAddress.ToString();

    private static TimeSpan DefaultAcceptRetryDelay => TimeSpan.FromMilliseconds(50);

    // The accept loop on the runtime's sockets: each connection goes to a thread-pool thread, so that accepted may
    // serve it there while this loop goes back to accepting. Returns once every hand-over has run.
    private async Task RuntimeAcceptLoopAsync(Action<NetworkConnection> accepted, Action<Exception> acceptFailed, TimeSpan retryDelay, CancellationToken cancellationToken)
    {
        var handOvers = new HandOvers(accepted, acceptFailed);
        try
        {
            await RuntimeAcceptAsync(handOvers, acceptFailed, retryDelay, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await handOvers.AllDoneAsync().ConfigureAwait(false);
        }
    }

    private async Task RuntimeAcceptAsync(HandOvers handOvers, Action<Exception> acceptFailed, TimeSpan retryDelay, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            NetworkConnection connection;
            try
            {
                connection = await AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (Exception e) when (e is NetworkException or SocketException or IOException)
            {
                acceptFailed(e);
                await Task.Delay(retryDelay, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }

            handOvers.Queue(connection);
        }
    }

    // The runtime path's hand-overs, each on a thread-pool thread, counted so that the loop ends after the last.
    private sealed class HandOvers(Action<NetworkConnection> accepted, Action<Exception> acceptFailed)
    {
        private int _pending;

        public void Queue(NetworkConnection connection)
        {
            Interlocked.Increment(ref _pending);
            ThreadPool.UnsafeQueueUserWorkItem(
                static state =>
                {
                    try
                    {
                        HandOver(state.Connection, state.Owner.Accepted, state.Owner.AcceptFailed);
                    }
                    finally
                    {
                        Interlocked.Decrement(ref state.Owner._pending);
                    }
                },
                (Owner: this, Connection: connection),
                preferLocal: false);
        }

        private Action<NetworkConnection> Accepted => accepted;

        private Action<Exception> AcceptFailed => acceptFailed;

        public async Task AllDoneAsync()
        {
            while (Volatile.Read(ref _pending) > 0)
            {
                await Task.Delay(1, CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    private bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    private static NetworkListener ListenTcp(Address address, ListenerOptions options, ILogger logger)
    {
        var ip = address.IsAnyInterface
            ? (address.Kind == AddressKind.IPv6 ? IPAddress.IPv6Any : IPAddress.Any)
            : SocketHelpers.Resolve(address)[0];
        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (ip.AddressFamily == AddressFamily.InterNetworkV6)
            {
                // IPv6 only, so that IP:port and IPv6:port are separate listeners that can share a port number.
                socket.DualMode = false;
            }

            SocketHelpers.SetReuseAddressOnly(socket);
            if (OperatingSystem.IsLinux())
            {
                // Linux copies TCP_NODELAY to every socket accepted from this one: set once here, it costs no
                // system call per connection (see _noDelayInherited).
                socket.NoDelay = true;
            }

            socket.Bind(new IPEndPoint(ip, address.Port));
            socket.Listen(options.Backlog);
            return new NetworkListener(address, socket, logger, null, null);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw SocketHelpers.Failed("listen on", address, e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static NetworkListener ListenUnix(Address address, ListenerOptions options, ILogger logger, PeerCredentialPolicy? peerPolicy)
    {
        var uid = ResolveId(options, isGroup: false, address);
        var gid = ResolveId(options, isGroup: true, address);

        // The file checks use the full path so that they still name the same file if the working directory
        // changes before Dispose; bind() gets the path as written, which may be shorter than the full one.
        var fullPath = System.IO.Path.GetFullPath(address.Path!);
        ClearStaleSocket(address, fullPath, logger);

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var bound = false;
        try
        {
            try
            {
                socket.Bind(new KeepFileUnixEndPoint(address.Path!));
                bound = true;
            }
            catch (SocketException e)
            {
                throw SocketHelpers.Failed("listen on", address, e);
            }

            // Still between bind() and listen(): every connect() to the file is refused until listen(), so
            // nobody can get in while the owner and mode are still the defaults.
            if (uid is not null || gid is not null)
            {
                if (NativeMethods.ChangeOwner(fullPath, uid, gid) is { } chownError)
                {
                    throw new NetworkException(
                        $"cannot give {address} owner {options.UnixSocketOwner ?? "(unchanged)"} and group {options.UnixSocketGroup ?? "(unchanged)"}: {chownError}",
                        address,
                        SocketError.SocketError,
                        null);
                }
            }

            if (options.UnixSocketMode is { } mode)
            {
                SetMode(address, fullPath, mode);
            }

            var kind = NativeMethods.Probe(fullPath, out var identity);
            try
            {
                socket.Listen(options.Backlog);
            }
            catch (SocketException e)
            {
                throw SocketHelpers.Failed("listen on", address, e);
            }

            return new NetworkListener(address, socket, logger, fullPath, kind == FileKind.Socket ? identity : null, peerPolicy);
        }
        catch
        {
            if (bound)
            {
                TryDelete(fullPath);
            }

            socket.Dispose();
            throw;
        }
    }

    private static void SetMode(Address address, string fullPath, UnixFileMode mode)
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("unix socket permissions cannot be set on Windows");
        }

        try
        {
            File.SetUnixFileMode(fullPath, mode);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new NetworkException($"cannot set the permissions of {address}: {e.Message}", address, SocketError.SocketError, e);
        }
    }

    private static uint? ResolveId(ListenerOptions options, bool isGroup, Address address)
    {
        var nameOrId = isGroup ? options.UnixSocketGroup : options.UnixSocketOwner;
        if (nameOrId is null)
        {
            return null;
        }

        var what = isGroup ? "group" : "user";
        if (nameOrId.Length > 0 && nameOrId.All(char.IsAsciiDigit))
        {
            return uint.TryParse(nameOrId, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id != uint.MaxValue
                ? id
                : throw new ArgumentException($"{what} id {nameOrId} for {address} is out of range", nameof(options));
        }

        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("unix socket ownership cannot be set on Windows");
        }

        uint found;
        string? error;
        LookupStatus status;
        if (isGroup)
        {
            status = NativeMethods.GetGroupByName(nameOrId, out found, out error);
        }
        else
        {
            status = NativeMethods.GetUserByName(nameOrId, out PasswdEntry user, out error);
            found = user.UserId;
        }

        return status == LookupStatus.Found
            ? found
            : throw new ArgumentException($"unknown {what} '{nameOrId}' for the owner{(isGroup ? " group" : string.Empty)} of {address} ({error ?? "no such name"})", nameof(options));
    }

    private static void ClearStaleSocket(Address address, string fullPath, ILogger logger)
    {
        FileKind kind;
        try
        {
            kind = NativeMethods.Probe(fullPath, out _);
        }
        catch (IOException e)
        {
            throw new NetworkException($"cannot listen on {address}: {e.Message}", address, SocketError.SocketError, e);
        }

        switch (kind)
        {
            case FileKind.Missing:
                return;
            case FileKind.Other:
                throw new NetworkException($"{address} exists and is not a socket; refusing to replace it", address, SocketError.AddressAlreadyInUse, null);
            case FileKind.Unknown:
                throw new NetworkException(
                    $"{address} already exists and this platform cannot tell whether it is a stale socket; remove it if it is",
                    address,
                    SocketError.AddressAlreadyInUse,
                    null);
        }

        using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            // Non-blocking, so that a live server with a full backlog answers EAGAIN at once instead of blocking.
            probe.Blocking = false;
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(address.Path!));
                throw new NetworkException($"{address} is in use by a running process", address, SocketError.AddressAlreadyInUse, null);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress or SocketError.TryAgain)
            {
                throw new NetworkException($"{address} is in use by a running process", address, SocketError.AddressAlreadyInUse, e);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused)
            {
                // Nobody accepts: the process that made the file is gone (1.5.1 unlinked unconditionally, which
                // could steal a live server's name).
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.AddressNotAvailable)
            {
                // The file vanished between the two checks; there is nothing left to remove.
                return;
            }
            catch (SocketException e)
            {
                throw new NetworkException(
                    $"{address} exists and whether a process is using it cannot be checked: {e.Message}",
                    address,
                    e.SocketErrorCode,
                    e);
            }
        }

        try
        {
            File.Delete(fullPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new NetworkException($"cannot remove the stale socket file of {address}: {e.Message}", address, SocketError.SocketError, e);
        }

        Log.RemovedStaleSocket(logger, fullPath);
    }

    private static void TryDelete(string fullPath)
    {
        try
        {
            File.Delete(fullPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Set-up already failed with a better error; a leftover file is found stale by the next attempt.
        }
    }

    private void RemoveSocketFile()
    {
        if (_socketFile is null)
        {
            return;
        }

        try
        {
            var kind = NativeMethods.Probe(_socketFile, out var identity);
            var ours = kind switch
            {
                FileKind.Socket => _socketFileIdentity is null || _socketFileIdentity == identity,
                FileKind.Unknown => true,
                _ => false,
            };
            if (ours)
            {
                File.Delete(_socketFile);
            }
            else if (kind != FileKind.Missing)
            {
                Log.SocketFileReplaced(_logger, _socketFile);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.SocketFileRemoveFailed(_logger, _socketFile, e);
        }
    }
}
