using Microsoft.Extensions.Logging;

namespace Distcache.Proxy;

/// <summary>The log lines of <see cref="ShardedProxy"/> (event ids from 100, apart from the single-server proxy's).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Warning, Message = "Accepting a local connection failed: {Reason}")]
    public static partial void ShardedAcceptFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "Local connection {Peer} failed: {Reason}")]
    public static partial void LocalConnectionFailed(ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "Closing local connection {Peer}: protocol violation, {Violation}")]
    public static partial void LocalViolation(ILogger logger, string peer, string violation);
}
