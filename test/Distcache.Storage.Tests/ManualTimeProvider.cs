namespace Distcache.Storage.Tests;

/// <summary>A clock that only moves when a test says so. Thread-safe.</summary>
public sealed class ManualTimeProvider : TimeProvider
{
    private static readonly DateTimeOffset Epoch = new(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly long _frequency;
    private readonly long _start;
    private long _timestamp;

    /// <param name="frequency">Timestamp ticks per second; the system clock's is 1e9 on Linux.</param>
    /// <param name="startTimestamp">Where the timestamp starts; non-zero so nothing relies on it starting at 0.</param>
    public ManualTimeProvider(long frequency = TimeSpan.TicksPerSecond, long startTimestamp = 123_456_789)
    {
        _frequency = frequency;
        _start = startTimestamp;
        _timestamp = startTimestamp;
    }

    public override long TimestampFrequency => _frequency;

    public override long GetTimestamp() => Volatile.Read(ref _timestamp);

    public override DateTimeOffset GetUtcNow() =>
        Epoch + TimeSpan.FromTicks((long)((Int128)(GetTimestamp() - _start) * TimeSpan.TicksPerSecond / _frequency));

    /// <summary>Moves the clock forward; <paramref name="by"/> must be a whole number of timestamp ticks.</summary>
    public void Advance(TimeSpan by)
    {
        Int128 scaled = (Int128)by.Ticks * _frequency;
        if (scaled % TimeSpan.TicksPerSecond != 0)
        {
            throw new ArgumentException("Not a whole number of timestamp ticks.", nameof(by));
        }

        Interlocked.Add(ref _timestamp, (long)(scaled / TimeSpan.TicksPerSecond));
    }

    public void AdvanceMilliseconds(long milliseconds) => Advance(TimeSpan.FromMilliseconds(milliseconds));
}
