using Microsoft.Extensions.Logging;

namespace Distcache.Networking;

/// <summary>How <see cref="NetworkListener.Listen"/> sets up a listening socket.</summary>
public sealed class ListenerOptions
{
    /// <summary>The options used when none are given.</summary>
    public static ListenerOptions Default { get; } = new();

    /// <summary>
    /// The length of the queue of connections waiting to be accepted (the <c>listen(2)</c> backlog). Defaults to
    /// 511, 1.5.1's value; the kernel may cap it (Linux: <c>net.core.somaxconn</c>). Must be at least 1.
    /// </summary>
    public int Backlog { get; init; } = 511;

    /// <summary>
    /// Owner to give a unix socket file: a user name, or a numeric uid (all digits). Null leaves the owner as
    /// created (the process's user). Only valid with <c>UNIX:</c> addresses; an unknown user name makes
    /// <see cref="NetworkListener.Listen"/> throw <see cref="ArgumentException"/>.
    /// </summary>
    public string? UnixSocketOwner { get; init; }

    /// <summary>
    /// Group to give a unix socket file: a group name, or a numeric gid (all digits). Null leaves the group as
    /// created. Only valid with <c>UNIX:</c> addresses; an unknown group name makes
    /// <see cref="NetworkListener.Listen"/> throw <see cref="ArgumentException"/>.
    /// </summary>
    public string? UnixSocketGroup { get; init; }

    /// <summary>
    /// Permissions to give a unix socket file (connecting needs write permission on it). Null leaves the
    /// permissions the umask produced. Only valid with <c>UNIX:</c> addresses.
    /// </summary>
    public UnixFileMode? UnixSocketMode { get; init; }

    /// <summary>
    /// User ids whose processes may connect (checked with SO_PEERCRED on each accepted connection). When this or
    /// <see cref="AllowedPeerGroupIds"/> is set, a peer is accepted if its user id is in this list or its group id
    /// is in that one; anyone else is closed at once, logged and counted in <see cref="NetworkListener.PeersRefused"/>.
    /// Null (the default) checks nothing. Only valid with <c>UNIX:</c> addresses, on Linux.
    /// </summary>
    public IReadOnlyCollection<uint>? AllowedPeerUserIds { get; init; }

    /// <summary>
    /// Group ids whose processes may connect; see <see cref="AllowedPeerUserIds"/>. SO_PEERCRED reports the peer's
    /// effective group id only, not its supplementary groups.
    /// </summary>
    public IReadOnlyCollection<uint>? AllowedPeerGroupIds { get; init; }

    /// <summary>
    /// Serve the accepted connections' <see cref="NetworkConnection.Input"/> and <see cref="NetworkConnection.Output"/>
    /// from this library's own epoll event loops (one thread per core) instead of the runtime's socket engine: one
    /// <c>recv</c> when the socket becomes readable and one <c>send</c> per flush, with no stream or pipe in
    /// between. Worth it for a server answering many small requests; see docs/performance.md. With it,
    /// <see cref="NetworkListener.AcceptLoopAsync(Action{NetworkConnection}, Action{Exception}, CancellationToken)"/>
    /// accepts on those loops too (and leaves the listening socket non-blocking). Linux only: elsewhere the runtime's
    /// sockets are used as without it. A connection whose stream is wrapped (TLS) runs over the runtime's sockets;
    /// a TLS server should leave this off, so that no handshake starts on an event loop's thread. Default false.
    /// </summary>
    public bool NativeTransport { get; init; }

    /// <summary>Where the listener and the connections it accepts log; null for no logging.</summary>
    public ILogger? Logger { get; init; }
}
