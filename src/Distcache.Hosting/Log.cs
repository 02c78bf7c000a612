using Microsoft.Extensions.Logging;

namespace Distcache.Hosting;

/// <summary>Every log message of the hosting layer, source-generated so that disabled levels cost nothing.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "{Signal} received; shutting down")]
    public static partial void ShutdownRequested(ILogger logger, string signal);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "{Signal} received again during shutdown; terminating at once")]
    public static partial void ForcedExit(ILogger logger, string signal);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "{Signal} received and ignored (not -killable)")]
    public static partial void UserSignalIgnored(ILogger logger, string signal);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "SIGHUP received; nothing to reload, ignored")]
    public static partial void HangupIgnored(ILogger logger);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "A SIGHUP handler failed; the process keeps running")]
    public static partial void HangupHandlerFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "A shutdown callback failed")]
    public static partial void CancellationCallbackFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "Accepting a metrics connection failed: {Reason}; retrying")]
    public static partial void MetricsAcceptFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 8, Level = LogLevel.Error, Message = "Answering the metrics scrape of {Peer} failed")]
    public static partial void MetricsScrapeFailed(ILogger logger, string peer, Exception exception);
}
