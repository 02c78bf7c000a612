using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Distcache.Networking;

/// <summary>Socket set-up shared by listeners and connections.</summary>
internal static class SocketHelpers
{
    /// <summary>Resolves the host of an IP address to addresses of the address's own family.</summary>
    /// <exception cref="NetworkException">The name does not resolve, or has no address of that family.</exception>
    public static async ValueTask<IPAddress[]> ResolveAsync(Address address, CancellationToken cancellationToken)
    {
        if (address.IPLiteral is { } literal)
        {
            return [literal];
        }

        IPAddress[] found;
        try
        {
            found = await Dns.GetHostAddressesAsync(address.Host!, FamilyOf(address), cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw ResolveFailed(address, e);
        }

        return found.Length > 0 ? found : throw NoAddress(address);
    }

    /// <summary>Synchronous <see cref="ResolveAsync"/> for <see cref="NetworkListener.Listen"/>, which is synchronous.</summary>
    public static IPAddress[] Resolve(Address address)
    {
        if (address.IPLiteral is { } literal)
        {
            return [literal];
        }

        IPAddress[] found;
        try
        {
            found = Dns.GetHostAddresses(address.Host!, FamilyOf(address));
        }
        catch (SocketException e)
        {
            throw ResolveFailed(address, e);
        }

        return found.Length > 0 ? found : throw NoAddress(address);
    }

    /// <summary>
    /// Sets SO_REUSEADDR alone, so that a restarted server can bind while connections of its previous run
    /// linger in TIME_WAIT.
    /// </summary>
    /// <remarks>
    /// <para>.NET 10's <see cref="Socket.Bind"/> on Linux already sets SO_REUSEADDR on stream sockets by itself
    /// (checked with getsockopt); that is an undocumented detail, so the option is set explicitly anyway.</para>
    /// <para><see cref="SocketOptionName.ReuseAddress"/> is not used: on Linux .NET maps it to SO_REUSEADDR plus
    /// SO_REUSEPORT (also checked with getsockopt), and with SO_REUSEPORT a second server binds the same port
    /// without error and silently shares its connections instead of failing with "address in use".</para>
    /// </remarks>
    public static void SetReuseAddressOnly(Socket socket)
    {
        if (OperatingSystem.IsLinux())
        {
            socket.SetRawSocketOption(1, 2, BitConverter.GetBytes(1));
        }
        else if (OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())
        {
            socket.SetRawSocketOption(0xffff, 4, BitConverter.GetBytes(1));
        }

        // Windows needs nothing: it lets a listener rebind over TIME_WAIT by default, and its SO_REUSEADDR
        // would allow port stealing.
    }

    /// <summary>
    /// Takes over the descriptor of an <c>FD:n</c> address after checking that it is a stream socket in the
    /// wanted state (listening, or connected).
    /// </summary>
    /// <exception cref="NetworkException">The descriptor is not open, not a socket, or not in the wanted state; it is left open.</exception>
    public static Socket AdoptDescriptor(Address address, bool listening)
    {
        // The checks use a handle that does not own the descriptor: if it is not what was asked for, it must
        // stay open for whoever really owns it. (An owning Socket cannot give its descriptor back: marking its
        // handle invalid makes Socket.Dispose spin forever waiting for a release that never comes.)
        var problem = Examine(address, listening, out var socketError, out var cause);
        if (problem is not null)
        {
            throw new NetworkException($"{address} {problem}", address, socketError, cause);
        }

        return new Socket(new SafeSocketHandle(address.FileDescriptor, ownsHandle: true));
    }

    /// <summary>
    /// Connects to <paramref name="address"/> (see <see cref="NetworkConnection.ConnectAsync(Address, ConnectionOptions, CancellationToken)"/>):
    /// the connected socket, and the peer's description when the address gives one (an <c>FD:n</c> socket is
    /// described from its end point by the connection).
    /// </summary>
    /// <param name="address">Where to connect; it can be connected to.</param>
    /// <param name="native">Connect without the runtime's socket engine, for the native transport.</param>
    /// <param name="logger">Where failed attempts at one of several addresses are logged.</param>
    /// <param name="cancellationToken">Cancels resolution and connecting.</param>
    /// <exception cref="NetworkException">The host does not resolve, nothing accepts, or the descriptor is unusable.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    public static async ValueTask<(Socket Socket, string? Peer)> ConnectAsync(Address address, bool native, ILogger logger, CancellationToken cancellationToken) =>
        address.Kind switch
        {
            AddressKind.FileDescriptor => (AdoptDescriptor(address, listening: false), null),
            AddressKind.Unix => await ConnectUnixAsync(address, native, cancellationToken).ConfigureAwait(false),
            _ => await ConnectTcpAsync(address, native, logger, cancellationToken).ConfigureAwait(false),
        };

    /// <summary>The address text of an end point, or null for an unnamed unix socket (or an unknown family).</summary>
    public static string? Describe(EndPoint? endPoint) => AddressOf(endPoint)?.ToString();

    /// <summary>The address of an end point, or null for an unnamed unix socket (or an unknown family).</summary>
    public static Address? AddressOf(EndPoint? endPoint)
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

    /// <summary>
    /// The end point in a Linux <c>struct sockaddr</c> as <c>accept4</c> filled it in: an <see cref="IPEndPoint"/> for
    /// IPv4 and IPv6, a <see cref="UnixDomainSocketEndPoint"/> for a named unix socket; null for an unnamed unix
    /// socket (what a client that did not bind has) or any other family.
    /// </summary>
    public static EndPoint? EndPointOf(ReadOnlySpan<byte> sockaddr)
    {
        const int Unix = 1, InterNetwork = 2, InterNetworkV6 = 10;
        if (sockaddr.Length < 2)
        {
            return null;
        }

        // sa_family is in the machine's byte order, the port in network order.
        int family = BitConverter.ToUInt16(sockaddr);
        switch (family)
        {
            case InterNetwork when sockaddr.Length >= 8:
                return new IPEndPoint(new IPAddress(sockaddr[4..8]), BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]));
            case InterNetworkV6 when sockaddr.Length >= 28:
                return new IPEndPoint(new IPAddress(sockaddr[8..24], BitConverter.ToUInt32(sockaddr[24..])), BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]));
            case Unix when sockaddr.Length > 2 && sockaddr[2] != 0:
                ReadOnlySpan<byte> path = sockaddr[2..];
                int end = path.IndexOf((byte)0);
                try
                {
                    return new UnixDomainSocketEndPoint(System.Text.Encoding.UTF8.GetString(end >= 0 ? path[..end] : path));
                }
                catch (ArgumentException)
                {
                    // A name that is not UTF-8 can decode longer than a unix socket name may be: shown as unnamed.
                    return null;
                }
            default:
                return null;
        }
    }

    /// <summary>Wraps a socket failure while listening or connecting in a <see cref="NetworkException"/> naming the address.</summary>
    public static NetworkException Failed(string operation, Address address, SocketException e) =>
        new($"cannot {operation} {address}: {e.Message}", address, e.SocketErrorCode, e);

    private static string? Examine(Address address, bool listening, out SocketError socketError, out Exception? cause)
    {
        socketError = SocketError.SocketError;
        cause = null;
        Socket probe;
        try
        {
            probe = new Socket(new SafeSocketHandle(address.FileDescriptor, ownsHandle: false));
        }
        catch (SocketException e)
        {
            socketError = e.SocketErrorCode;
            cause = e;
            return $"is not an open socket: {e.Message}";
        }

        using (probe)
        {
            if (probe.SocketType == SocketType.Unknown)
            {
                return "is not a socket";
            }

            if (probe.SocketType != SocketType.Stream)
            {
                return $"is a {probe.SocketType} socket, not a stream socket";
            }

            var isListening = probe.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.AcceptConnection) is int flag && flag != 0;
            if (listening && !isListening)
            {
                return probe.Connected
                    ? "is a connected socket, not a listening one; connect with it instead"
                    : "is not a listening socket";
            }

            if (!listening && isListening)
            {
                return "is a listening socket, not a connected one; listen with it instead";
            }

            if (!listening && !probe.Connected)
            {
                return "is not a connected socket";
            }

            return null;
        }
    }

    private static async ValueTask<(Socket, string?)> ConnectUnixAsync(Address address, bool native, CancellationToken cancellationToken)
    {
        try
        {
            return (await ConnectSocketAsync(new UnixDomainSocketEndPoint(address.Path!), native, cancellationToken).ConfigureAwait(false), address.ToString());
        }
        catch (SocketException e)
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw Failed("connect to", address, e);
        }
    }

    private static async ValueTask<(Socket, string?)> ConnectTcpAsync(Address address, bool native, ILogger logger, CancellationToken cancellationToken)
    {
        var candidates = await ResolveAsync(address, cancellationToken).ConfigureAwait(false);
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

            return (socket, Address.FromEndPoint(endPoint).ToString());
        }

        throw Failed("connect to", address, lastFailure!);
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

    private static AddressFamily FamilyOf(Address address) =>
        address.Kind == AddressKind.IPv6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;

    private static NetworkException ResolveFailed(Address address, SocketException e) =>
        new($"cannot resolve host '{address.Host}' of {address}: {e.Message}", address, e.SocketErrorCode, e);

    private static NetworkException NoAddress(Address address) =>
        new(
            $"host '{address.Host}' of {address} has no {(address.Kind == AddressKind.IPv6 ? "IPv6" : "IPv4")} address",
            address,
            SocketError.HostNotFound,
            null);
}
