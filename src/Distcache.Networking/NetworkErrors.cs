using System.Net.Sockets;
using System.Security.Authentication;

namespace Distcache.Networking;

/// <summary>
/// Tells the exceptions that mean a connection failed or was torn down (the peer went away, reset it, the connection
/// was aborted or closed under the code using it) from those that mean a bug, so that code serving connections can
/// log the first as a routine end of one connection and report the second as an error.
/// </summary>
/// <remarks>
/// Three predicates, because code differs in what it may legitimately meet: <see cref="IsTransportFailure"/> for code
/// that alone owns its connection's pipes, <see cref="IsConnectionFailure"/> for code whose pipes another task may
/// complete while it uses them, <see cref="IsHandshakeFailure"/> around a TLS handshake.
/// </remarks>
public static class NetworkErrors
{
    /// <summary>
    /// True for what a connection's reader or writer sees when the peer goes away or the connection is torn down,
    /// including by another task: everything <see cref="IsTransportFailure"/> accepts, and
    /// <see cref="InvalidOperationException"/>, which a pipe throws when it is used after another task completed it
    /// (closing the connection while a read or write was under way).
    /// </summary>
    /// <param name="exception">What was caught; null is not a failure.</param>
    /// <returns>True when the exception is the connection's failure rather than a bug.</returns>
    public static bool IsConnectionFailure(Exception? exception) =>
        IsTransportFailure(exception) || exception is InvalidOperationException;

    /// <summary>
    /// True for what a connection's reader or writer sees when the peer goes away or the connection is aborted under
    /// it: <see cref="IOException"/> (a reset, a broken pipe, and <see cref="NetworkException"/>),
    /// <see cref="SocketException"/>, <see cref="ObjectDisposedException"/> (the socket or stream closed under the
    /// call) and <see cref="OperationCanceledException"/>. Other <see cref="InvalidOperationException"/>s are not
    /// included: where one task alone owns the pipes, a pipe used after completion is a bug, not the peer's doing.
    /// </summary>
    /// <param name="exception">What was caught; null is not a failure.</param>
    /// <returns>True when the exception is the connection's failure rather than a bug.</returns>
    public static bool IsTransportFailure(Exception? exception) =>
        exception is IOException or SocketException or ObjectDisposedException or OperationCanceledException;

    /// <summary>
    /// True for what a TLS handshake (<see cref="NetworkConnection.WrapStreamAsync"/> with
    /// <see cref="TlsServerSettings.AuthenticateAsync"/> or a client's stream wrapper) throws when it fails for the
    /// peer's or the network's doing: everything <see cref="IsTransportFailure"/> accepts, and
    /// <see cref="AuthenticationException"/> (a refused certificate, no protocol in common, a malformed handshake).
    /// </summary>
    /// <param name="exception">What was caught; null is not a failure.</param>
    /// <returns>True when the handshake failed rather than the code running it.</returns>
    public static bool IsHandshakeFailure(Exception? exception) =>
        IsTransportFailure(exception) || exception is AuthenticationException;
}
