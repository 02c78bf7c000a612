using Microsoft.Extensions.Logging;

namespace Distcache.Networking;

/// <summary>How <see cref="NetworkConnection.ConnectAsync(Address, ConnectionOptions, CancellationToken)"/> sets up a connection.</summary>
public sealed class ConnectionOptions
{
    /// <summary>The options used when none are given.</summary>
    public static ConnectionOptions Default { get; } = new();

    /// <summary>
    /// Optional hook that replaces the socket's stream before the pipes are created, for example with an
    /// authenticated <see cref="System.Net.Security.SslStream"/>. It is awaited as part of connecting, so its
    /// failure or cancellation fails the connect (and closes the socket). See <see cref="NetworkConnection.WrapStreamAsync"/>.
    /// </summary>
    public Func<Stream, CancellationToken, ValueTask<Stream>>? StreamWrapper { get; init; }

    /// <summary>
    /// Connect without the runtime's socket engine and read and write the connection on the native transport (as
    /// <see cref="ListenerOptions.NativeTransport"/> does for accepted connections): one <c>recv</c> per read that
    /// finds data, no <c>recv</c> that finds none. Linux only; elsewhere, and when <see cref="StreamWrapper"/> has
    /// replaced the socket's stream, the connection uses the runtime's sockets as usual. Default false.
    /// </summary>
    public bool NativeTransport { get; init; }

    /// <summary>Where the connection logs; null for no logging.</summary>
    public ILogger? Logger { get; init; }
}
