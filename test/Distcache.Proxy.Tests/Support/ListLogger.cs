using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Distcache.Proxy.Tests.Support;

/// <summary>Keeps every formatted log line, to check what the proxy tells operators.</summary>
internal sealed class ListLogger<T> : ILogger<T>
{
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    public ConcurrentQueue<(LogLevel Level, string Message, TimeSpan At)> Entries { get; } = new();

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Enqueue((logLevel, formatter(state, exception), _clock.Elapsed));

    public bool Contains(LogLevel level, string text) => Entries.Any(e => e.Level == level && e.Message.Contains(text, StringComparison.Ordinal));

    public override string ToString() => string.Join(Environment.NewLine, Entries.Select(e => $"{e.At.TotalMilliseconds,8:0.0} ms {e.Level}: {e.Message}"));
}
