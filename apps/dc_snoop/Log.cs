using Microsoft.Extensions.Logging;

namespace Distcache.Apps.Snoop;

/// <summary>Every diagnostic dc_snoop writes to stderr; the traffic itself goes to stdout through <see cref="OutputSink"/>.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "Connection #{Number} from {Peer}: cannot connect to the server {Server}: {Reason}; closing it")]
    public static partial void ServerConnectFailed(ILogger logger, long number, string peer, string server, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Error, Message = "Accepting on {Listener} failed; retrying")]
    public static partial void AcceptFailed(ILogger logger, string listener, Exception exception);

    [LoggerMessage(EventId = 3, Level = LogLevel.Error, Message = "Connection #{Number}: unexpected error; closing both sides")]
    public static partial void ConnectionError(ILogger logger, long number, Exception exception);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Standard output failed ({Reason}); traffic is still forwarded but no longer shown")]
    public static partial void OutputFailed(ILogger logger, string reason);
}
