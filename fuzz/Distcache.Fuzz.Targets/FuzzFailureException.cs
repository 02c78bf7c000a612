namespace Distcache.Fuzz;

/// <summary>A fuzz target found behaviour the protocol code must never show: a broken invariant, two answers
/// that must agree and do not, or an allocation beyond the protocol's limits.</summary>
public sealed class FuzzFailureException : Exception
{
    public FuzzFailureException()
        : base("fuzz target failure")
    {
    }

    public FuzzFailureException(string message)
        : base(message)
    {
    }

    public FuzzFailureException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The checks the targets make; each throws <see cref="FuzzFailureException"/>, which the fuzzer records as a crash.</summary>
internal static class Check
{
    public static void That(bool condition, string what)
    {
        if (!condition)
        {
            throw new FuzzFailureException(what);
        }
    }

    public static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
        {
            throw new FuzzFailureException($"{what}: expected {expected}, got {actual}");
        }
    }
}

/// <summary>
/// Measures the managed allocation of one decoder call. A decoder may allocate at most one message's worth of
/// reassembly buffer (32 KiB) and a small fixed amount besides, however hostile its input.
/// </summary>
internal static class Allocation
{
    /// <summary>The fixed overhead allowed on top of one maximum-size message.</summary>
    public const long Overhead = 4096;

    /// <summary>The most bytes one decoder call may allocate.</summary>
    public const long Budget = Distcache.Protocol.ProtocolConstants.MaxMessagePayload + Overhead;

    public static long Start() => GC.GetAllocatedBytesForCurrentThread();

    public static void End(long start, string what)
    {
        long used = GC.GetAllocatedBytesForCurrentThread() - start;
        if (used > Budget)
        {
            throw new FuzzFailureException($"{what} allocated {used} bytes, over the budget of {Budget}");
        }
    }
}
