using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Distcache.Hosting;

/// <summary>How <c>-logformat</c> lays out one log entry.</summary>
public enum LogFormat
{
    /// <summary>One line of text: <c>warn: Category[event] message exception</c>, after a timestamp in files.</summary>
    Text,

    /// <summary>One JSON object per line: <c>time</c>, <c>level</c>, <c>category</c>, <c>message</c>, and <c>exception</c> when there is one.</summary>
    Json,
}

/// <summary>
/// Turns a log entry into the one line that is written for it. Pure functions of their arguments, so the layout is
/// tested without a process around it.
/// </summary>
public static class LogLineFormat
{
    // Messages carry addresses and paths with '<', '>', '+' and '&', which the default encoder escapes for HTML;
    // these lines never go into HTML, and the relaxed encoder still escapes everything JSON requires.
    private static readonly JsonWriterOptions RelaxedJson = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The level's word in <c>-loglevel</c> and in JSON entries: error, warning, info, debug (and critical, trace).</summary>
    /// <param name="level">The level.</param>
    /// <returns>Its name.</returns>
    public static string LevelName(LogLevel level) => level switch
    {
        LogLevel.Trace => "trace",
        LogLevel.Debug => "debug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warning",
        LogLevel.Error => "error",
        LogLevel.Critical => "critical",
        _ => "none",
    };

    /// <summary>
    /// The syslog severity of a level (RFC 5424: 2 critical, 3 error, 4 warning, 6 informational, 7 debug), which is
    /// also the journal's <c>&lt;N&gt;</c> line prefix.
    /// </summary>
    /// <param name="level">The level.</param>
    /// <returns>The severity, 0..7.</returns>
    public static int SyslogSeverity(LogLevel level) => level switch
    {
        LogLevel.Critical => 2,
        LogLevel.Error => 3,
        LogLevel.Warning => 4,
        LogLevel.Information => 6,
        _ => 7,
    };

    /// <summary>
    /// Formats one entry, without a line end. Text is the layout the tools have always written on stderr
    /// (<c>warn: Category[1] message</c>), preceded by the UTC time when <paramref name="withTime"/> is set (a
    /// file has no other record of it); newlines in the message and exception become spaces, so every entry is
    /// one line. JSON always carries the time.
    /// </summary>
    /// <param name="format">Text or JSON.</param>
    /// <param name="time">When it happened.</param>
    /// <param name="level">Its level.</param>
    /// <param name="category">The logger's category.</param>
    /// <param name="eventId">The event's number (text only).</param>
    /// <param name="message">The formatted message.</param>
    /// <param name="exception">The exception logged with it, if any.</param>
    /// <param name="withTime">Whether a text line starts with the time.</param>
    /// <returns>The line.</returns>
    public static string Format(LogFormat format, DateTimeOffset time, LogLevel level, string category, int eventId, string message, Exception? exception, bool withTime)
    {
        ArgumentNullException.ThrowIfNull(category);
        ArgumentNullException.ThrowIfNull(message);
        return format == LogFormat.Json
            ? Json(time, level, category, message, exception)
            : Text(time, level, category, eventId, message, exception, withTime);
    }

    /// <summary>The timestamp of text lines and JSON entries: ISO 8601 in UTC, to the millisecond.</summary>
    /// <param name="time">The time.</param>
    /// <returns>For example <c>2025-06-01T12:00:00.123Z</c>.</returns>
    public static string Timestamp(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fff'Z'", CultureInfo.InvariantCulture);

    private static string Text(DateTimeOffset time, LogLevel level, string category, int eventId, string message, Exception? exception, bool withTime)
    {
        var line = new StringBuilder(message.Length + category.Length + 48);
        if (withTime)
        {
            line.Append(Timestamp(time)).Append(' ');
        }

        // The level words of Microsoft.Extensions.Logging's simple console, which these lines replaced unchanged.
        line.Append(level switch
        {
            LogLevel.Trace => "trce",
            LogLevel.Debug => "dbug",
            LogLevel.Information => "info",
            LogLevel.Warning => "warn",
            LogLevel.Error => "fail",
            _ => "crit",
        });
        line.Append(": ").Append(category).Append('[').Append(eventId.ToString(CultureInfo.InvariantCulture)).Append("] ");
        AppendOneLine(line, message);
        if (exception is not null)
        {
            line.Append(' ');
            AppendOneLine(line, exception.ToString());
        }

        return line.ToString();
    }

    private static void AppendOneLine(StringBuilder line, string text)
    {
        foreach (var c in text)
        {
            line.Append(c is '\n' or '\r' ? ' ' : c);
        }
    }

    private static string Json(DateTimeOffset time, LogLevel level, string category, string message, Exception? exception)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, RelaxedJson))
        {
            json.WriteStartObject();
            json.WriteString("time", Timestamp(time));
            json.WriteString("level", LevelName(level));
            json.WriteString("category", category);
            json.WriteString("message", message);
            if (exception is not null)
            {
                json.WriteString("exception", exception.ToString());
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }
}
