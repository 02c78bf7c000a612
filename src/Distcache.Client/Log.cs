using Distcache.Networking;
using Microsoft.Extensions.Logging;

namespace Distcache.Client;

/// <summary>Every log message of the client, source-generated so that disabled levels cost nothing.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Connected to distcache at {Address}")]
    public static partial void Connected(ILogger logger, Address address);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "Connecting to distcache at {Address} failed (attempt {Attempt}): {Reason}")]
    public static partial void ConnectFailed(ILogger logger, Address address, int attempt, string reason);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Lost the link to distcache at {Address}: {Reason}")]
    public static partial void LinkLost(ILogger logger, Address address, string reason);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "distcache at {Address} broke the protocol: {Detail}; dropping the connection")]
    public static partial void ProtocolViolation(ILogger logger, Address address, string detail);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "distcache at {Address} sent nothing for {TimeoutMs} ms while a request was waiting; dropping the connection")]
    public static partial void LinkUnresponsive(ILogger logger, Address address, int timeoutMs);

    [LoggerMessage(EventId = 6, Level = LogLevel.Debug, Message = "Reconnecting to distcache at {Address} in {DelayMs} ms")]
    public static partial void ReconnectScheduled(ILogger logger, Address address, long delayMs);

    [LoggerMessage(EventId = 7, Level = LogLevel.Debug, Message = "Closing the connection to distcache at {Address} failed: {Reason}")]
    public static partial void CloseFailed(ILogger logger, Address address, string reason);

    [LoggerMessage(EventId = 8, Level = LogLevel.Debug, Message = "DC_CTX {Operation} to {Address} failed (attempt {Attempt}): {Reason}")]
    public static partial void ContextOperationFailed(ILogger logger, Protocol.Operation operation, Address address, int attempt, string reason);
}
