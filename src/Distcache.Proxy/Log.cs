using Distcache.Networking;
using Microsoft.Extensions.Logging;

namespace Distcache.Proxy;

/// <summary>Every log line the proxy writes, in one place, so that each event is reported once and alike.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Connected to the server at {Server}")]
    public static partial void ServerConnected(ILogger logger, Address server);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "No link to the server at {Server}: {Reason}; retrying every {RetryMilliseconds} ms")]
    public static partial void ServerUnreachable(ILogger logger, Address server, string reason, long retryMilliseconds);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Still no link to the server at {Server}: {Reason}")]
    public static partial void ServerStillUnreachable(ILogger logger, Address server, string reason);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Lost the link to the server at {Server}: {Reason}; {InFlight} requests in flight answered DISCONNECTED")]
    public static partial void ServerLinkLost(ILogger logger, Address server, string reason, int inFlight);

    [LoggerMessage(EventId = 17, Level = LogLevel.Information, Message = "Closed the link to the server at {Server}: {Reason}; {InFlight} requests in flight answered DISCONNECTED")]
    public static partial void ServerLinkClosed(ILogger logger, Address server, string reason, int inFlight);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "Dropped {Count} responses from the server at {Server} with no request in flight, the first with uid {Uid} ({Operation})")]
    public static partial void UnknownResponses(ILogger logger, Address server, int count, uint uid, string operation);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "Dropping local connection {Peer}: protocol violation, {Violation}")]
    public static partial void ClientViolation(ILogger logger, string peer, string violation);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "Dropping local connection {Peer}: {Bytes} bytes of answers are waiting unread, over the limit of {Limit}")]
    public static partial void ClientOverflow(ILogger logger, string peer, long bytes, int limit);

    [LoggerMessage(EventId = 8, Level = LogLevel.Debug, Message = "Local connection {Peer} opened")]
    public static partial void ClientOpened(ILogger logger, string peer);

    [LoggerMessage(EventId = 9, Level = LogLevel.Debug, Message = "Local connection {Peer} closed after {Requests} requests")]
    public static partial void ClientClosed(ILogger logger, string peer, long requests);

    [LoggerMessage(EventId = 10, Level = LogLevel.Debug, Message = "Closing local connection {Peer}: idle for {IdleMilliseconds} ms")]
    public static partial void ClientIdle(ILogger logger, string peer, long idleMilliseconds);

    [LoggerMessage(EventId = 11, Level = LogLevel.Debug, Message = "Local connection {Peer} failed: {Reason}")]
    public static partial void ClientFailed(ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = 12, Level = LogLevel.Debug, Message = "Local connection {Peer} closed in the middle of a request ({Pending} bytes pending)")]
    public static partial void ClientTruncated(ILogger logger, string peer, long pending);

    [LoggerMessage(EventId = 13, Level = LogLevel.Error, Message = "Accepting on {Listener} failed; retrying")]
    public static partial void AcceptFailed(ILogger logger, string listener, Exception exception);

    [LoggerMessage(EventId = 14, Level = LogLevel.Information, Message = "Shutting down: {Open} local connections, {InFlight} requests in flight")]
    public static partial void ShuttingDown(ILogger logger, long open, int inFlight);

    [LoggerMessage(EventId = 15, Level = LogLevel.Error, Message = "Unexpected error on local connection {Peer}; closing that connection")]
    public static partial void ClientError(ILogger logger, string peer, Exception exception);

    [LoggerMessage(EventId = 16, Level = LogLevel.Error, Message = "Unexpected error on the link to the server at {Server}; closing the link")]
    public static partial void ServerLinkError(ILogger logger, Address server, Exception exception);

    [LoggerMessage(EventId = 17, Level = LogLevel.Warning, Message = "Refused {Count} local connections: {Max} were open, as many as fit under the descriptor limit")]
    public static partial void ConnectionsRefused(ILogger logger, long count, int max);
}
