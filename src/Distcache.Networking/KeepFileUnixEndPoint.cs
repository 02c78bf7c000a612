using System.Net;
using System.Net.Sockets;

namespace Distcache.Networking;

/// <summary>
/// A unix socket path to bind to, which .NET does not remember as "a file to delete when the socket closes".
/// </summary>
/// <remarks>
/// A socket bound to a <see cref="UnixDomainSocketEndPoint"/> unlinks its path when disposed (measured on
/// .NET 10), whatever is at the path by then: a regular file that replaced the socket, or the socket of a
/// newer server. The listener must decide that itself (it checks the inode first), so it binds through this
/// end point, which serializes to the same sockaddr_un but is not a <see cref="UnixDomainSocketEndPoint"/>.
/// </remarks>
internal sealed class KeepFileUnixEndPoint(string path) : EndPoint
{
    private readonly UnixDomainSocketEndPoint _endPoint = new(path);

    public override AddressFamily AddressFamily => AddressFamily.Unix;

    public override SocketAddress Serialize() => _endPoint.Serialize();

    // Local and remote end points of the socket are made from this one; they come out as ordinary
    // UnixDomainSocketEndPoints, which only delete files they were bound with themselves.
    public override EndPoint Create(SocketAddress socketAddress) => _endPoint.Create(socketAddress);

    public override string ToString() => _endPoint.ToString();
}
