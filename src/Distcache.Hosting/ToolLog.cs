using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;

namespace Distcache.Hosting;

/// <summary>
/// The log of dc_server and dc_client: <c>-log FILE</c>, <c>-loglevel</c>, <c>-logformat</c>, and where the log goes
/// without them.
/// </summary>
/// <remarks>
/// <para>
/// Destination: the file of <c>-log</c> if given (with or without <c>-daemon</c>); otherwise, for a daemon, whose
/// standard error is <c>/dev/null</c> once it runs, syslog through <c>/dev/log</c> (and a start-up error when there
/// is no such socket); otherwise standard error, as always. When standard error is the journal's stream (a systemd
/// service), each line there starts with its syslog priority, which journald records as the entry's level.
/// </para>
/// <para>
/// The tools' 1.5.1-style lines (<c>Info, listening on ...</c>, <c>Warning, ...</c>) go through <see cref="Info"/>,
/// <see cref="Warning"/> and <see cref="Error"/>: on standard error unchanged, whatever <c>-loglevel</c> says
/// (scripts wait for them), and also into the log, as entries of the tool's own category, when the log is
/// elsewhere.
/// </para>
/// </remarks>
public sealed class ToolLog : IDisposable
{
    /// <summary><c>-log FILE</c>.</summary>
    public static readonly ValueOption<string> FileOption = new("log", "file",
        "append the log to this file (created with mode 0640, reopened on SIGHUP); without it -daemon logs to syslog",
        ParseFile);

    /// <summary><c>-loglevel LEVEL</c>.</summary>
    public static readonly ValueOption<LogLevel> LevelOption = new("loglevel", "level",
        "log entries of this level and the more severe ones: error, warning, info or debug", ParseLevel)
    {
        DefaultValue = LogLevel.Information,
        DefaultText = "info",
    };

    /// <summary><c>-logformat text|json</c>.</summary>
    public static readonly ValueOption<LogFormat> FormatOption = new("logformat", "format",
        "text, or json: one JSON object per line (time, level, category, message, exception)", ParseFormat)
    {
        DefaultValue = LogFormat.Text,
        DefaultText = "text",
    };

    private readonly SinkLoggerProvider _provider;
    private readonly ILogger _toolLogger;
    private readonly bool _journal;

    private ToolLog(SinkLoggerProvider provider, ILoggerFactory factory, string tool, bool journal)
    {
        _provider = provider;
        Factory = factory;
        _toolLogger = factory.CreateLogger(tool);
        _journal = journal;
    }

    /// <summary>The three options, for a tool's <see cref="CommandLineSpec"/>.</summary>
    public static IReadOnlyList<CommandLineOption> Options { get; } = [FileOption, LevelOption, FormatOption];

    /// <summary>The tool's logger factory.</summary>
    public ILoggerFactory Factory { get; }

    /// <summary>Where the log goes, for messages: "standard error", "the file ...", "syslog at /dev/log".</summary>
    public string Destination => _provider.Sink.Description;

    /// <summary>Opens the log the command line asks for.</summary>
    /// <param name="tool">The tool's name: the syslog tag and the category of its own lines.</param>
    /// <param name="options">The parsed command line, with <see cref="Options"/> among its options.</param>
    /// <param name="daemon">Whether the process runs as a daemon (its standard error goes nowhere).</param>
    /// <param name="defaultFilters">Filters that apply only when <c>-loglevel</c> is not given, e.g. one that keeps
    /// a chatty category to warnings; an explicit level applies to every category.</param>
    /// <returns>The log; dispose it last.</returns>
    /// <exception cref="HostingException">The file cannot be opened.</exception>
    public static ToolLog Open(string tool, ParseResult options, bool daemon, Action<ILoggingBuilder>? defaultFilters = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(tool);
        ArgumentNullException.ThrowIfNull(options);
        var journal = Systemd.StandardErrorIsJournal();
        LogSink sink = options.TryGetValue(FileOption, out string? path) ? FileSink.Open(path)
            : daemon ? SyslogOrNowhere(tool, journal)
            : new StandardErrorSink(journal);
        var provider = new SinkLoggerProvider(sink, options.GetValue(FormatOption));
        var explicitLevel = options.TryGetValue(LevelOption, out LogLevel level);
        var factory = LoggerFactory.Create(logging =>
        {
            logging.ClearProviders();
            logging.SetMinimumLevel(explicitLevel ? level : LogLevel.Information);
            logging.AddProvider(provider);
            if (!explicitLevel)
            {
                defaultFilters?.Invoke(logging);
            }
        });
        return new ToolLog(provider, factory, tool, journal);
    }

    // A daemon without -log logs to syslog. Where there is none (a container, a host without a syslog daemon), it
    // still starts, as 1.5.1's -daemon command lines expect, and says on standard error, while the operator still
    // sees it, that its log will go nowhere once it has detached.
    private static LogSink SyslogOrNowhere(string tool, bool journal)
    {
        try
        {
            return SyslogSink.Open(SyslogSink.SocketPath, tool);
        }
        catch (HostingException e)
        {
            Console.Error.WriteLine($"Warning, {e.Message}; until then the log is discarded once detached, as 1.5.1's was");
            return new StandardErrorSink(journal);
        }
    }

    /// <summary>An <c>Info, TEXT</c> line: on standard error, and in the log when that is elsewhere.</summary>
    /// <param name="text">The line after <c>Info, </c>.</param>
    public void Info(string text) => Line(LogLevel.Information, "Info, ", text);

    /// <summary>A <c>Warning, TEXT</c> line: on standard error, and in the log when that is elsewhere.</summary>
    /// <param name="text">The line after <c>Warning, </c>.</param>
    public void Warning(string text) => Line(LogLevel.Warning, "Warning, ", text);

    /// <summary>An <c>Error, TEXT</c> line: on standard error, and in the log when that is elsewhere.</summary>
    /// <param name="text">The line after <c>Error, </c>.</param>
    public void Error(string text) => Line(LogLevel.Error, "Error, ", text);

    /// <summary>SIGHUP: reopens the log file by its name, so that logrotate can rename it and have the next line start a new one.</summary>
    /// <returns>What was done, or null when the log is not a file.</returns>
    /// <exception cref="HostingException">The file cannot be opened again; the log stays on the previous one.</exception>
    public string? Reopen() => _provider.Reopen();

    /// <summary>
    /// SIGHUP's part for the log: <see cref="Reopen"/>, reported as <c>Info, SIGHUP: reopened the log file ...</c>
    /// (the first line of the new file) or as an error when the file cannot be opened again.
    /// </summary>
    /// <returns>Whether a log file was reopened; false when the log is not a file or it failed.</returns>
    public bool ReopenOnHangup()
    {
        try
        {
            if (Reopen() is { } done)
            {
                Info("SIGHUP: " + done);
                return true;
            }
        }
        catch (HostingException e)
        {
            Error($"SIGHUP: {e.Message}; still writing to the previous file");
        }

        return false;
    }

    /// <summary>Closes the log.</summary>
    public void Dispose()
    {
        Factory.Dispose();
        _provider.Close();
    }

    /// <summary>Parses a <c>-log</c> value: any path but an empty one.</summary>
    /// <param name="text">The path.</param>
    /// <param name="value">The same path.</param>
    /// <param name="reason">Why it is refused.</param>
    /// <returns>Whether it is not empty.</returns>
    public static bool ParseFile(string text, [MaybeNullWhen(false)] out string value, [NotNullWhen(false)] out string? reason) =>
        ValueParsers.NonEmptyText(text, out value, out reason);

    /// <summary>Parses a <c>-loglevel</c> value.</summary>
    /// <param name="text">error, warning, info or debug (any case).</param>
    /// <param name="value">The level.</param>
    /// <param name="reason">Why it is refused.</param>
    /// <returns>Whether the text names one.</returns>
    public static bool ParseLevel(string text, out LogLevel value, [NotNullWhen(false)] out string? reason)
    {
        LogLevel? level = text?.ToUpperInvariant() switch
        {
            "ERROR" => LogLevel.Error,
            "WARNING" => LogLevel.Warning,
            "INFO" => LogLevel.Information,
            "DEBUG" => LogLevel.Debug,
            _ => null,
        };
        value = level ?? LogLevel.None;
        reason = level is null ? $"'{text}' is not a level: use error, warning, info or debug" : null;
        return level is not null;
    }

    /// <summary>Parses a <c>-logformat</c> value.</summary>
    /// <param name="text">text or json (any case).</param>
    /// <param name="value">The format.</param>
    /// <param name="reason">Why it is refused.</param>
    /// <returns>Whether the text names one.</returns>
    public static bool ParseFormat(string text, out LogFormat value, [NotNullWhen(false)] out string? reason)
    {
        LogFormat? format = text?.ToUpperInvariant() switch
        {
            "TEXT" => LogFormat.Text,
            "JSON" => LogFormat.Json,
            _ => null,
        };
        value = format ?? LogFormat.Text;
        reason = format is null ? $"'{text}' is not a format: use text or json" : null;
        return format is not null;
    }

    private void Line(LogLevel level, string prefix, string text)
    {
        // Standard error carries the line whatever -loglevel says: it is the tool's report to whoever started it,
        // as in 1.5.1. Once a daemon runs that is /dev/null, and the copy in the log is the one that counts.
        try
        {
            Console.Error.WriteLine((_journal ? StandardErrorSink.Prefix(level) : string.Empty) + prefix + text);
        }
        catch (IOException)
        {
            // Nobody reads standard error any more; the log below still gets the line.
        }

        if (_provider.Sink is not StandardErrorSink)
        {
#pragma warning disable CA1848, CA2254 // These lines are texts already; there is no template to cache.
            _toolLogger.Log(level, text);
#pragma warning restore CA1848, CA2254
        }
    }

    /// <summary>Every logger of the tool writes through here to the one sink, a line at a time.</summary>
    private sealed class SinkLoggerProvider(LogSink sink, LogFormat format) : ILoggerProvider
    {
        private readonly Lock _lock = new();
        private long _lost;
        private string? _lossReason;
        private bool _closed;

        public LogSink Sink { get; } = sink;

        public ILogger CreateLogger(string categoryName) => new SinkLogger(this, categoryName);

        public void Dispose()
        {
            // The sink belongs to the ToolLog, which closes it after the factory.
        }

        public string? Reopen()
        {
            lock (_lock)
            {
                return _closed ? null : Sink.Reopen();
            }
        }

        /// <summary>Closes the sink; a thread still logging during shutdown finds it closed and writes nothing.</summary>
        public void Close()
        {
            lock (_lock)
            {
                _closed = true;
                Sink.Dispose();
            }
        }

        public void Write(LogLevel level, string category, int eventId, string message, Exception? exception)
        {
            var now = DateTimeOffset.Now;
            var line = LogLineFormat.Format(format, now, level, category, eventId, message, exception, Sink.TimestampsText);
            lock (_lock)
            {
                if (_closed)
                {
                    return;
                }

                if (_lost > 0)
                {
                    // The log works again: say first what it is missing, so a gap is never silent.
                    var note = LogLineFormat.Format(format, now, LogLevel.Warning, typeof(ToolLog).FullName!, 0,
                        $"{_lost} earlier log entries were lost: {_lossReason}", null, Sink.TimestampsText);
                    if (Sink.Write(LogLevel.Warning, note) is null)
                    {
                        _lost = 0;
                    }
                }

                if (Sink.Write(level, line) is { } problem)
                {
                    _lost++;
                    _lossReason = problem;
                }
            }
        }
    }

    private sealed class SinkLogger(SinkLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            ArgumentNullException.ThrowIfNull(formatter);
            provider.Write(logLevel, category, eventId.Id, formatter(state, exception), exception);
        }
    }
}
