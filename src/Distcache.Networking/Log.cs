using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Distcache.Networking;

/// <summary>Every log message of the networking layer, source-generated so that disabled levels cost nothing.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "Listening on {Address} (bound {LocalAddress}, backlog {Backlog})")]
    public static partial void Listening(ILogger logger, Address address, Address localAddress, int backlog);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Removed stale socket file {Path}: nothing was listening on it")]
    public static partial void RemovedStaleSocket(ILogger logger, string path);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Left socket file {Path} in place: it was replaced by another file since this listener created it")]
    public static partial void SocketFileReplaced(ILogger logger, string path);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Could not remove socket file {Path}")]
    public static partial void SocketFileRemoveFailed(ILogger logger, string path, Exception exception);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "Accept on {Address} skipped a connection that failed before it was accepted ({Error})")]
    public static partial void AcceptSkipped(ILogger logger, Address address, SocketError error);

    [LoggerMessage(EventId = 6, Level = LogLevel.Debug, Message = "Accepted connection from {Peer}")]
    public static partial void Accepted(ILogger logger, string peer);

    [LoggerMessage(EventId = 7, Level = LogLevel.Debug, Message = "Connected to {Peer}")]
    public static partial void Connected(ILogger logger, string peer);

    [LoggerMessage(EventId = 8, Level = LogLevel.Debug, Message = "Connecting to {EndPoint} for {Address} failed ({Error}); trying the next address")]
    public static partial void ConnectAttemptFailed(ILogger logger, EndPoint endPoint, Address address, SocketError error);

    [LoggerMessage(EventId = 9, Level = LogLevel.Debug, Message = "Connection {Peer} aborted")]
    public static partial void Aborted(ILogger logger, string peer);

    [LoggerMessage(EventId = 10, Level = LogLevel.Debug, Message = "Connection {Peer} could not drain its output while closing; resetting it")]
    public static partial void CloseDrainFailed(ILogger logger, string peer, Exception exception);

    [LoggerMessage(EventId = 11, Level = LogLevel.Debug, Message = "Stopped listening on {Address}")]
    public static partial void StoppedListening(ILogger logger, Address address);

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "Refused a connection to {Address} from {Peer}: {Reason}")]
    public static partial void PeerRefused(ILogger logger, Address address, string peer, string reason);

    [LoggerMessage(EventId = 21, Level = LogLevel.Error, Message = "Connection {Peer}: code run by the event loop failed")]
    public static partial void EventCallbackFailed(ILogger logger, string peer, Exception exception);

    [LoggerMessage(EventId = 22, Level = LogLevel.Warning, Message = "Connection {Peer} falls back to the runtime's sockets: {Reason}")]
    public static partial void NativeTransportUnavailable(ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = 23, Level = LogLevel.Error, Message = "Accept on {Address}: closed a connection that could not be set up")]
    public static partial void AdmitFailed(ILogger logger, Address address, Exception exception);
}
