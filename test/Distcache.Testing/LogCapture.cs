using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Distcache.Testing;

/// <summary>One line a <see cref="LogCapture"/> kept.</summary>
/// <param name="Level">Its level.</param>
/// <param name="Category">The category of the logger that wrote it.</param>
/// <param name="Message">The formatted message.</param>
/// <param name="At">When it was written, from the capture's creation.</param>
public sealed record LogEntry(LogLevel Level, string Category, string Message, TimeSpan At);

/// <summary>
/// A logger factory that keeps every formatted line, to check what the code under test tells operators (and how
/// often). Pass it as an <see cref="ILoggerFactory"/>, or take a logger from it with <see cref="CreateLogger"/> or
/// <c>CreateLogger&lt;T&gt;()</c>.
/// </summary>
public sealed class LogCapture : ILoggerFactory
{
    private readonly ConcurrentQueue<LogEntry> _entries = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    /// <summary>Every line so far, in the order written.</summary>
    public IReadOnlyCollection<LogEntry> Entries => _entries;

    /// <summary>Every line so far as <c>Level: message</c>.</summary>
    public IReadOnlyList<string> Messages => [.. _entries.Select(e => $"{e.Level}: {e.Message}")];

    /// <summary>Whether a line of <paramref name="level"/> contains <paramref name="text"/>.</summary>
    /// <param name="level">The level.</param>
    /// <param name="text">The text (ordinal comparison).</param>
    /// <returns>Whether there is one.</returns>
    public bool Contains(LogLevel level, string text) => _entries.Any(e => e.Level == level && e.Message.Contains(text, StringComparison.Ordinal));

    /// <summary>A logger whose lines this capture keeps.</summary>
    /// <param name="categoryName">The category.</param>
    /// <returns>The logger.</returns>
    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    /// <summary>Providers are not needed: every logger writes to this capture.</summary>
    /// <param name="provider">Ignored.</param>
    public void AddProvider(ILoggerProvider provider)
    {
    }

    /// <summary>Nothing to release.</summary>
    public void Dispose()
    {
    }

    /// <summary>Every line with its time, for failure messages.</summary>
    /// <returns>The lines, one a line.</returns>
    public override string ToString() =>
        string.Join(Environment.NewLine, _entries.Select(e => string.Create(CultureInfo.InvariantCulture, $"{e.At.TotalMilliseconds,8:0.0} ms {e.Level}: {e.Message}")));

    private sealed class Logger(LogCapture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._entries.Enqueue(new LogEntry(logLevel, category, formatter(state, exception), owner._clock.Elapsed));
    }
}
