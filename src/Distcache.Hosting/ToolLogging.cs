using Microsoft.Extensions.Logging;

namespace Distcache.Hosting;

/// <summary>
/// The logging of dc_snoop: one line per event on stderr, where 1.5.1 printed its messages. dc_server
/// and dc_client, which run as services, use <see cref="ToolLog"/> (files, syslog, the journal).
/// </summary>
public static class ToolLogging
{
    /// <summary>
    /// Creates a logger factory that writes single-line entries of <see cref="LogLevel.Information"/> and above to
    /// stderr (stdout stays for output that scripts read, such as dc_snoop's lines).
    /// </summary>
    /// <param name="configure">Further settings, e.g. a filter that quietens a chatty category.</param>
    public static ILoggerFactory CreateFactory(Action<ILoggingBuilder>? configure = null) =>
        LoggerFactory.Create(logging =>
        {
            logging
                .SetMinimumLevel(LogLevel.Information)
                .AddSimpleConsole(console => console.SingleLine = true)
                .AddConsole(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
            configure?.Invoke(logging);
        });
}
