using Microsoft.Extensions.Logging;

namespace Distcache.Storage.Redis;

/// <summary>Every log line of the Redis store, in one place.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "Redis operation failed ({Failures} failures so far), answering as a miss or failed ADD: {Reason}")]
    public static partial void OperationFailed(ILogger logger, long failures, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Redis operations succeed again")]
    public static partial void Recovered(ILogger logger);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Lost the connection to Redis at {Endpoint}: {Failure}; reconnecting in the background")]
    public static partial void ConnectionFailed(ILogger logger, System.Net.EndPoint? endpoint, StackExchange.Redis.ConnectionFailureType failure);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "Reconnected to Redis at {Endpoint}")]
    public static partial void ConnectionRestored(ILogger logger, System.Net.EndPoint? endpoint);
}
