using Distcache.Protocol;

namespace Distcache.Server;

/// <summary>How the server answered one request, as counted by <see cref="OperationCounts"/>.</summary>
public enum OperationOutcome
{
    /// <summary>ADD stored the session; GET, REMOVE or HAVE found it (for GET, a hit).</summary>
    Ok = 0,

    /// <summary>GET, REMOVE or HAVE found no live session with the id (for GET, a miss).</summary>
    NotFound = 1,

    /// <summary>ADD of an id that is already live: answered 101, the stored session kept.</summary>
    Exists = 2,

    /// <summary>The request was malformed but answerable (an ADD with a bad id, data or timeout, answered 100-104;
    /// a lookup with an id outside 1..64 bytes, answered NOTOK).</summary>
    Invalid = 3,

    /// <summary>The store could not carry it out (a remote store unreachable): answered NOTOK.</summary>
    Failed = 4,
}

/// <summary>
/// Requests answered, by operation and outcome, as one connection counts them. A connection answers its requests
/// one after another, so it is the only writer and counts with plain increments on memory of its own: nothing is
/// shared between connections on the request path. <see cref="ServerStatistics"/> sums the open connections' counts
/// with those of the closed ones, reading each slot atomically.
/// </summary>
internal sealed class OperationCounts
{
    /// <summary>The operations counted: ADD, GET, REMOVE and HAVE, by their wire numbers.</summary>
    internal const int Operations = 4;

    /// <summary>The outcomes counted, by <see cref="OperationOutcome"/>.</summary>
    internal const int Outcomes = 5;

    /// <summary>The number of slots, one per operation and outcome.</summary>
    internal const int Slots = Operations * Outcomes;

    private readonly long[] _counts = new long[Slots];

    internal static int Slot(Operation operation, OperationOutcome outcome) => ((int)operation * Outcomes) + (int)outcome;

    /// <summary>Counts one answered request. Only the connection that owns these counts calls it.</summary>
    internal void Count(Operation operation, OperationOutcome outcome)
    {
        // Not Interlocked: one writer per instance (its thread). A reader may see a value one increment stale, never torn
        // (aligned 64-bit stores are atomic on the 64-bit platforms .NET runs on).
        _counts[Slot(operation, outcome)]++;
    }

    /// <summary>Adds every count of these to <paramref name="totals"/> (<see cref="Slots"/> long).</summary>
    internal void AddTo(Span<long> totals)
    {
        for (int i = 0; i < _counts.Length; i++)
        {
            totals[i] += Volatile.Read(ref _counts[i]);
        }
    }
}

/// <summary>Requests answered since start, by operation and outcome: a snapshot from <see cref="ServerStatistics.GetOperationTotals"/>.</summary>
public sealed class OperationTotals
{
    private readonly long[] _counts;

    internal OperationTotals(long[] counts) => _counts = counts;

    /// <summary>Requests of <paramref name="operation"/> answered with <paramref name="outcome"/>.</summary>
    /// <param name="operation">ADD, GET, REMOVE or HAVE.</param>
    /// <param name="outcome">The outcome.</param>
    /// <returns>The count.</returns>
    /// <exception cref="ArgumentOutOfRangeException">Not one of the four operations or five outcomes.</exception>
    public long Get(Operation operation, OperationOutcome outcome)
    {
        if (!operation.IsDefined())
        {
            throw new ArgumentOutOfRangeException(nameof(operation), operation, "not a distcache operation");
        }

        if ((uint)outcome >= OperationCounts.Outcomes)
        {
            throw new ArgumentOutOfRangeException(nameof(outcome), outcome, "not an outcome");
        }

        return _counts[OperationCounts.Slot(operation, outcome)];
    }

    /// <summary>Requests of <paramref name="operation"/> answered, whatever the outcome.</summary>
    /// <param name="operation">ADD, GET, REMOVE or HAVE.</param>
    /// <returns>The count.</returns>
    public long Get(Operation operation) =>
        Get(operation, OperationOutcome.Ok) + Get(operation, OperationOutcome.NotFound) + Get(operation, OperationOutcome.Exists)
        + Get(operation, OperationOutcome.Invalid) + Get(operation, OperationOutcome.Failed);
}
