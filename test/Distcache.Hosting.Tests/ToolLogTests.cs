using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Distcache.Hosting.Tests;

/// <summary>The layout of log lines, syslog datagrams and the systemd variables, as pure functions.</summary>
public sealed class ToolLogTests
{
    private static readonly DateTimeOffset When = new(2025, 6, 1, 12, 0, 3, 45, TimeSpan.FromHours(2));

    [Fact]
    public void Text_lines_keep_the_console_layout_and_files_get_a_utc_time_in_front()
    {
        Assert.Equal("warn: Distcache.Server.DistcacheServer[1] Closing x: protocol violation",
            LogLineFormat.Format(LogFormat.Text, When, LogLevel.Warning, "Distcache.Server.DistcacheServer", 1, "Closing x: protocol violation", null, withTime: false));
        Assert.Equal("2025-06-01T10:00:03.045Z fail: c[7] m",
            LogLineFormat.Format(LogFormat.Text, When, LogLevel.Error, "c", 7, "m", null, withTime: true));
    }

    [Fact]
    public void Text_entries_stay_on_one_line_exception_included()
    {
        var line = LogLineFormat.Format(LogFormat.Text, When, LogLevel.Error, "c", 2, "two\nlines", Thrown(), withTime: false);
        Assert.DoesNotContain('\n', line);
        Assert.StartsWith("fail: c[2] two lines System.InvalidOperationException: broken", line, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(LogLevel.Debug, "debug")]
    [InlineData(LogLevel.Information, "info")]
    [InlineData(LogLevel.Warning, "warning")]
    [InlineData(LogLevel.Error, "error")]
    public void Json_entries_carry_time_level_category_message_and_exception(LogLevel level, string name)
    {
        var line = LogLineFormat.Format(LogFormat.Json, When, level, "Cat<1>", 3, "say \"hi\"\n", Thrown(), withTime: false);
        Assert.DoesNotContain('\n', line);
        using var entry = JsonDocument.Parse(line);
        var root = entry.RootElement;
        Assert.Equal("2025-06-01T10:00:03.045Z", root.GetProperty("time").GetString());
        Assert.Equal(name, root.GetProperty("level").GetString());
        Assert.Equal("Cat<1>", root.GetProperty("category").GetString());
        Assert.Equal("say \"hi\"\n", root.GetProperty("message").GetString());
        Assert.StartsWith("System.InvalidOperationException: broken", root.GetProperty("exception").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Json_entries_without_an_exception_have_no_exception_field()
    {
        using var entry = JsonDocument.Parse(LogLineFormat.Format(LogFormat.Json, When, LogLevel.Information, "c", 0, "m", null, withTime: true));
        Assert.False(entry.RootElement.TryGetProperty("exception", out _));
    }

    [Theory]
    [InlineData(LogLevel.Error, 27)]
    [InlineData(LogLevel.Warning, 28)]
    [InlineData(LogLevel.Information, 30)]
    [InlineData(LogLevel.Debug, 31)]
    public void Syslog_datagrams_are_rfc_3164_with_facility_daemon(LogLevel level, int priority)
    {
        var datagram = Encoding.UTF8.GetString(SyslogSink.Datagram(level, "warn: c[1] m", "dc_server", 4321, new DateTime(2025, 6, 1, 9, 5, 7)));
        Assert.Equal($"<{priority}>Jun  1 09:05:07 dc_server[4321]: warn: c[1] m", datagram);
    }

    [Theory]
    [InlineData("error", LogLevel.Error)]
    [InlineData("warning", LogLevel.Warning)]
    [InlineData("INFO", LogLevel.Information)]
    [InlineData("debug", LogLevel.Debug)]
    public void Loglevel_takes_the_four_levels(string text, LogLevel level)
    {
        Assert.True(ToolLog.ParseLevel(text, out var parsed, out _));
        Assert.Equal(level, parsed);
    }

    [Theory]
    [InlineData("warn")]
    [InlineData("trace")]
    [InlineData("")]
    [InlineData("3")]
    public void Loglevel_refuses_anything_else_saying_what_it_takes(string text)
    {
        Assert.False(ToolLog.ParseLevel(text, out _, out var reason));
        Assert.Equal($"'{text}' is not a level: use error, warning, info or debug", reason);
    }

    [Theory]
    [InlineData("text", LogFormat.Text)]
    [InlineData("json", LogFormat.Json)]
    [InlineData("JSON", LogFormat.Json)]
    public void Logformat_takes_text_and_json(string text, LogFormat format)
    {
        Assert.True(ToolLog.ParseFormat(text, out var parsed, out _));
        Assert.Equal(format, parsed);
    }

    [Fact]
    public void Logformat_refuses_anything_else_saying_what_it_takes()
    {
        Assert.False(ToolLog.ParseFormat("xml", out _, out var reason));
        Assert.Equal("'xml' is not a format: use text or json", reason);
    }

    [Fact]
    public void Listen_sockets_are_taken_only_when_meant_for_this_process_and_the_variables_go_either_way()
    {
        Environment.SetEnvironmentVariable("LISTEN_FDNAMES", "x");
        Assert.Equal(1, Systemd.TakeListenSockets("100", "1", 100, out var problem));
        Assert.Null(problem);
        Assert.Null(Environment.GetEnvironmentVariable("LISTEN_FDNAMES"));

        Assert.Equal(0, Systemd.TakeListenSockets("99", "1", 100, out problem));
        Assert.Null(problem);
        Assert.Equal(0, Systemd.TakeListenSockets(null, null, 100, out problem));
        Assert.Null(problem);
        Assert.Equal(0, Systemd.TakeListenSockets("100", "two", 100, out problem));
        Assert.Contains("LISTEN_FDS='two'", problem, StringComparison.Ordinal);
    }

    private static InvalidOperationException Thrown()
    {
        try
        {
            throw new InvalidOperationException("broken");
        }
        catch (InvalidOperationException e)
        {
            return e;
        }
    }
}
