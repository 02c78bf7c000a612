using System.Collections.Concurrent;

namespace Distcache.Apps.Test.Load;

/// <summary>
/// What all connection loops share: whether to keep sending, the measurement window, the request budget of
/// <c>-requests</c>, and the first few distinct error messages. Everything else is per connection.
/// </summary>
internal sealed class LoadControl
{
    private const int MaxErrorMessages = 5;

    private readonly ConcurrentDictionary<string, bool> _errorMessages = new(StringComparer.Ordinal);
    private readonly bool _budgeted;
    private long _remaining;
    private long _measureStart = long.MaxValue;
    private long _measureEnd = long.MaxValue;
    private volatile bool _stopSending;
    private int _prefillNext;

    public LoadControl(long? requests, int prefill)
    {
        _budgeted = requests is not null;
        _remaining = requests ?? 0;
        Prefill = prefill;
    }

    public int Prefill { get; }

    /// <summary>Requests whose send timestamp is at or after this are measured.</summary>
    public long MeasureStart => Volatile.Read(ref _measureStart);

    /// <summary>Responses received after this are not measured.</summary>
    public long MeasureEnd => Volatile.Read(ref _measureEnd);

    public bool StopSending => _stopSending;

    public void StartMeasuring(long timestamp) => Volatile.Write(ref _measureStart, timestamp);

    public void EndMeasuring(long timestamp) => Volatile.Write(ref _measureEnd, timestamp);

    public void Stop() => _stopSending = true;

    /// <summary>
    /// Whether another request may be sent now (<paramref name="now"/> is the batch's timestamp), and whether it
    /// is measured. The decision is made once, here, and travels with the request: deciding again from the
    /// timestamps when the response arrives raced with <see cref="StartMeasuring"/> (a request sent just after the
    /// start was taken but before it was published counted as measured without being taken from the budget).
    /// </summary>
    public bool TryTake(long now, out bool measured)
    {
        measured = false;
        if (_stopSending)
        {
            return false;
        }

        measured = now >= MeasureStart;

        // The budget counts measured requests only, so that a warm-up does not eat into -requests.
        if (!_budgeted || !measured)
        {
            return true;
        }

        if (Interlocked.Decrement(ref _remaining) >= 0)
        {
            return true;
        }

        _stopSending = true;
        measured = false;
        return false;
    }

    /// <summary>The next key to prefill, or -1 when all are taken.</summary>
    public int NextPrefillKey()
    {
        int key = Interlocked.Increment(ref _prefillNext) - 1;
        return key < Prefill ? key : -1;
    }

    /// <summary>Prints an error message on stderr the first time it is seen (and only the first few kinds), so a
    /// failing server produces a handful of lines rather than one per request.</summary>
    public void ReportError(string message)
    {
        if (_errorMessages.Count < MaxErrorMessages && _errorMessages.TryAdd(message, true))
        {
            Console.Error.WriteLine("Error, " + message);
        }
    }
}
