using System.Globalization;

namespace Distcache.Server;

/// <summary>
/// Prints 1.5.1's activity line, <c>Info, total operations = %7lu  (+ %5lu), total sessions = %5u  (%c%3u)</c>,
/// when there has been cache activity: at most once a second, or sooner each time <c>-progress N</c> more
/// operations have happened. Nothing is printed while the server is idle.
/// </summary>
public sealed class ActivityReporter
{
    private readonly DistcacheServer _server;
    private readonly TextWriter _output;
    private readonly long _progressEvery;
    private readonly TimeProvider _time;
    private long _lastOperations;
    private long _lastSessions;
    private long _lastPrintedAt;

    /// <summary>Creates a reporter.</summary>
    /// <param name="server">The server whose counters are reported.</param>
    /// <param name="output">Where lines go (1.5.1 uses stderr).</param>
    /// <param name="progressEvery">Also print whenever this many more operations have happened; 0 turns that off.</param>
    /// <param name="time">The clock (tests use a fake one).</param>
    public ActivityReporter(DistcacheServer server, TextWriter output, long progressEvery = 0, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentOutOfRangeException.ThrowIfNegative(progressEvery);
        _server = server;
        _output = output;
        _progressEvery = progressEvery;
        _time = time ?? TimeProvider.System;
        _lastPrintedAt = _time.GetTimestamp();
    }

    /// <summary>Formats one line exactly as 1.5.1 does.</summary>
    public static string Format(long operations, long operationsDelta, long sessions, long sessionsDelta)
    {
        char sign = sessionsDelta > 0 ? '+' : sessionsDelta < 0 ? '-' : '=';
        return string.Create(CultureInfo.InvariantCulture,
            $"Info, total operations = {operations,7}  (+ {operationsDelta,5}), total sessions = {sessions,5}  ({sign}{Math.Abs(sessionsDelta),3})");
    }

    /// <summary>Checks the counters once and prints a line if one is due. Returns the line printed, if any.</summary>
    public async ValueTask<string?> TickAsync(CancellationToken cancellationToken = default)
    {
        long operations = _server.Statistics.Operations;
        long now = _time.GetTimestamp();
        bool secondPassed = _time.GetElapsedTime(_lastPrintedAt, now) >= TimeSpan.FromSeconds(1);
        bool progressDue = _progressEvery > 0 && operations - _lastOperations >= _progressEvery;
        if (!secondPassed && !progressDue)
        {
            return null;
        }

        long sessions = await _server.Store.CountAsync(cancellationToken).ConfigureAwait(false);
        if (operations == _lastOperations && sessions == _lastSessions)
        {
            return null;
        }

        string line = Format(operations, operations - _lastOperations, sessions, sessions - _lastSessions);
        await _output.WriteLineAsync(line.AsMemory(), cancellationToken).ConfigureAwait(false);
        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        _lastOperations = operations;
        _lastSessions = sessions;
        _lastPrintedAt = now;
        return line;
    }

    /// <summary>Ticks every 50 ms until cancelled (a short period so that <c>-progress N</c> lines are prompt).</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50), _time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                await TickAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }
}
