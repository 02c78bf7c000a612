using Microsoft.Extensions.Logging;

namespace Distcache.Server;

/// <summary>Every log line the server writes, in one place, so that each event is reported once and alike.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "Closing {Peer}: protocol violation, {Violation} (protocol violations since start: {Count})")]
    public static partial void ProtocolViolation(ILogger logger, string peer, string violation, long count);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "Connection from {Peer}")]
    public static partial void ConnectionOpened(ILogger logger, string peer);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Connection from {Peer} closed after {Requests} requests")]
    public static partial void ConnectionClosed(ILogger logger, string peer, long requests);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "Connection from {Peer} failed: {Reason}")]
    public static partial void ConnectionFailed(ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "Unexpected error serving {Peer}; closing that connection")]
    public static partial void ConnectionError(ILogger logger, string peer, Exception exception);

    [LoggerMessage(EventId = 6, Level = LogLevel.Error, Message = "Accepting on {Listener} failed; retrying")]
    public static partial void AcceptFailed(ILogger logger, string listener, Exception exception);

    [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "Shutting down: {Open} connections finishing their responses")]
    public static partial void ShuttingDown(ILogger logger, long open);

    [LoggerMessage(EventId = 8, Level = LogLevel.Warning, Message = "Refused {Count} connections (the latest from {Peer}): {Open} connections open, the limit is {Limit}")]
    public static partial void ConnectionsRefused(ILogger logger, long count, string peer, long open, int limit);

    [LoggerMessage(EventId = 9, Level = LogLevel.Information, Message = "Closing {Peer}: idle for {IdleMs} ms")]
    public static partial void IdleTimeout(ILogger logger, string peer, long idleMs);

    [LoggerMessage(EventId = 10, Level = LogLevel.Warning, Message = "Dropping {Peer}: it has not read its responses for {WriteMs} ms")]
    public static partial void WriteTimeout(ILogger logger, string peer, long writeMs);

    [LoggerMessage(EventId = 11, Level = LogLevel.Error, Message = "Checking the connections' timeouts failed; retrying at the next sweep")]
    public static partial void SweepFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "TLS handshake with {Peer} failed: {Reason}")]
    public static partial void HandshakeFailed(ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = 21, Level = LogLevel.Warning, Message = "Refused {Peer}: certificate subject '{Subject}' has no access")]
    public static partial void IdentityRefused(ILogger logger, string peer, string subject);

    [LoggerMessage(EventId = 22, Level = LogLevel.Information, Message = "{Peer} authenticated as '{Identity}' (partition '{Partition}', {Access})")]
    public static partial void Authenticated(ILogger logger, string peer, string identity, string partition, string access);
}
