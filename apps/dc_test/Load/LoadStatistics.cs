using Distcache.Tools;

namespace Distcache.Apps.Test.Load;

/// <summary>
/// One connection's counters and latency histogram, written only by its own loop (no locks, no interlocked
/// operations on the hot path) and summed when the run is over. The progress line reads <see cref="Completed"/>
/// and <see cref="ErrorTotal"/> from another thread; a slightly stale value is fine there.
/// </summary>
internal sealed class LoadStatistics
{
    private const int Operations = 4;

    public LatencyHistogram Latency { get; } = new();

    /// <summary>Measured responses per operation.</summary>
    public long[] Count { get; } = new long[Operations];

    /// <summary>Measured responses that found (GET, REMOVE, HAVE) or stored (ADD) the session.</summary>
    public long[] Hits { get; } = new long[Operations];

    /// <summary>Measured responses that did not find the session, or (ADD) found it already there.</summary>
    public long[] Misses { get; } = new long[Operations];

    /// <summary>Unexpected answers per operation, over the whole run (prefill and warm-up included).</summary>
    public long[] Errors { get; } = new long[Operations];

    /// <summary>Connections lost or answered with a protocol violation.</summary>
    public long ConnectionErrors { get; set; }

    /// <summary>Every response, measured or not: the progress line's rate.</summary>
    public long Completed { get; set; }

    public long ErrorTotal => Errors.Sum() + ConnectionErrors;

    public long Measured => Count.Sum();

    public void Add(LoadStatistics other)
    {
        Latency.Add(other.Latency);
        for (int i = 0; i < Operations; i++)
        {
            Count[i] += other.Count[i];
            Hits[i] += other.Hits[i];
            Misses[i] += other.Misses[i];
            Errors[i] += other.Errors[i];
        }

        ConnectionErrors += other.ConnectionErrors;
        Completed += other.Completed;
    }
}
