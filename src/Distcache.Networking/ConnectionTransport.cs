using System.IO.Pipelines;

namespace Distcache.Networking;

/// <summary>
/// What carries a <see cref="NetworkConnection"/>'s pipes to the peer: <see cref="StreamPipes"/>, pipes over the
/// connection's stream (the runtime's sockets, TLS, any stream), or <see cref="SocketPipes"/>, the native transport.
/// </summary>
/// <remarks>
/// The connection makes its transport when its pipes are first used, and owns what lies under it (the socket, the
/// stream): closing stays the connection's, in one order for every transport, and the transport is told before and
/// after the socket goes. Whatever differs between transports is here, so that the connection asks no question of
/// which one it runs on.
/// </remarks>
internal abstract class ConnectionTransport
{
    /// <summary>Bytes from the peer.</summary>
    public abstract PipeReader Input { get; }

    /// <summary>Bytes to the peer.</summary>
    public abstract PipeWriter Output { get; }

    /// <summary>
    /// Called before the connection closes its socket: the transport stops using the descriptor, whose number the
    /// system may hand to another connection once it is closed. Never throws.
    /// </summary>
    public virtual void Detach()
    {
    }

    /// <summary>
    /// Called once the connection has closed its socket: fails a read or flush still waiting, which the closed socket
    /// will never complete, and every later one. Never throws.
    /// </summary>
    /// <param name="how">How it was closed, for the message: "aborted", "closed".</param>
    public virtual void Fail(string how)
    {
    }

    /// <summary>
    /// Queues <paramref name="work"/> to run on the calling thread at the end of its event loop's current batch of
    /// events; false, doing nothing, when the transport has no event loop or the caller is not on one.
    /// </summary>
    public virtual bool TryDeferToEndOfBatch(IThreadPoolWorkItem work) => false;
}
