using System.Numerics;

namespace Distcache.Tools;

/// <summary>
/// A log-linear histogram of non-negative values (typically latencies in nanoseconds), in the manner of
/// HdrHistogram: values below 2^<see cref="SubBucketBits"/> have a bucket each; above that, every power of two is
/// split into 2^<see cref="SubBucketBits"/> equal buckets, so a value is known to within 1/256 (0.4%) of itself
/// whatever its size. Recording is a few integer operations on a fixed array: no allocation, no locks.
/// </summary>
/// <remarks>
/// Not thread-safe: give each recording loop its own histogram and combine them with <see cref="Add"/>.
/// Values beyond <see cref="HighestTrackableValue"/> are counted in the top bucket (and in <see cref="Max"/> exactly).
/// </remarks>
public sealed class LatencyHistogram
{
    /// <summary>Bits of precision kept below a value's leading one: 8, so 256 buckets per power of two.</summary>
    public const int SubBucketBits = 8;

    /// <summary>The largest power of two that gets its own buckets: values up to 2^43 - 1 (about 2.4 hours in
    /// nanoseconds) are bucketed with full precision.</summary>
    public const int HighestExponent = 42;

    private const int SubBucketCount = 1 << SubBucketBits;
    private const long SubBucketMask = SubBucketCount - 1;

    private readonly long[] _counts = new long[BucketCount];

    /// <summary>The number of buckets: the linear part plus 256 per power of two above it.</summary>
    public static int BucketCount { get; } = IndexOf(HighestTrackableValue) + 1;

    /// <summary>The largest value that is bucketed with full precision.</summary>
    public static long HighestTrackableValue => (1L << (HighestExponent + 1)) - 1;

    /// <summary>How many values were recorded.</summary>
    public long Count { get; private set; }

    /// <summary>The smallest value recorded, exactly; 0 when empty.</summary>
    public long Min { get; private set; }

    /// <summary>The largest value recorded, exactly; 0 when empty.</summary>
    public long Max { get; private set; }

    /// <summary>The sum of all values recorded, for the mean.</summary>
    public long Sum { get; private set; }

    /// <summary>The mean of the values recorded; 0 when empty.</summary>
    public double Mean => Count == 0 ? 0 : (double)Sum / Count;

    /// <summary>Records one value. Negative values (a clock that went backwards) are recorded as 0.</summary>
    /// <param name="value">The value.</param>
    public void Record(long value)
    {
        if (value < 0)
        {
            value = 0;
        }

        _counts[IndexOf(value)]++;
        if (Count == 0 || value < Min)
        {
            Min = value;
        }

        if (value > Max)
        {
            Max = value;
        }

        Count++;
        Sum += value;
    }

    /// <summary>Adds every value recorded in <paramref name="other"/> to this histogram.</summary>
    /// <param name="other">Another histogram; it is not changed.</param>
    /// <exception cref="ArgumentNullException"><paramref name="other"/> is null.</exception>
    public void Add(LatencyHistogram other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (other.Count == 0)
        {
            return;
        }

        for (int i = 0; i < _counts.Length; i++)
        {
            _counts[i] += other._counts[i];
        }

        Min = Count == 0 ? other.Min : Math.Min(Min, other.Min);
        Max = Math.Max(Max, other.Max);
        Count += other.Count;
        Sum += other.Sum;
    }

    /// <summary>Forgets every value.</summary>
    public void Reset()
    {
        Array.Clear(_counts);
        Count = 0;
        Min = 0;
        Max = 0;
        Sum = 0;
    }

    /// <summary>
    /// The value at or below which <paramref name="percentile"/> percent of the recorded values lie: the highest value
    /// of the bucket where that rank falls (so the answer errs high by at most 0.4%, never low), capped at
    /// <see cref="Max"/>. 0 when empty.
    /// </summary>
    /// <param name="percentile">0 to 100; 0 gives <see cref="Min"/>, 100 gives <see cref="Max"/>.</param>
    /// <returns>The value.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="percentile"/> is outside 0..100 or not a number.</exception>
    public long ValueAtPercentile(double percentile)
    {
        if (double.IsNaN(percentile) || percentile < 0 || percentile > 100)
        {
            throw new ArgumentOutOfRangeException(nameof(percentile), percentile, "a percentile is between 0 and 100");
        }

        if (Count == 0)
        {
            return 0;
        }

        if (percentile == 0)
        {
            return Min;
        }

        if (percentile == 100)
        {
            return Max;
        }

        // The rank of the value wanted, 1-based: the smallest rank whose share of the count reaches the percentile.
        long rank = Math.Max(1, (long)Math.Ceiling(percentile / 100 * Count));
        long seen = 0;
        for (int i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                // The top bucket also holds every value beyond the trackable range; only Max is known there.
                return i == _counts.Length - 1 ? Max : Math.Min(Math.Max(HighestValueOf(i), Min), Max);
            }
        }

        return Max;
    }

    /// <summary>The bucket a value falls in.</summary>
    /// <param name="value">A non-negative value; values above <see cref="HighestTrackableValue"/> fall in the top bucket.</param>
    /// <returns>The bucket index.</returns>
    public static int IndexOf(long value)
    {
        if (value < SubBucketCount)
        {
            return (int)value;
        }

        int exponent = 63 - BitOperations.LeadingZeroCount((ulong)value);
        if (exponent > HighestExponent)
        {
            return ((HighestExponent - SubBucketBits + 2) << SubBucketBits) - 1;
        }

        // The SubBucketBits bits after the leading one pick the bucket within this power of two; bucket groups for
        // 2^8, 2^9, ... follow the 256 linear buckets, so the index is continuous across the boundary.
        long sub = (value >> (exponent - SubBucketBits)) & SubBucketMask;
        return ((exponent - SubBucketBits + 1) << SubBucketBits) + (int)sub;
    }

    /// <summary>The smallest value that falls in bucket <paramref name="index"/>.</summary>
    /// <param name="index">A bucket index.</param>
    /// <returns>The value.</returns>
    public static long LowestValueOf(int index)
    {
        if (index < SubBucketCount)
        {
            return index;
        }

        int group = index >> SubBucketBits;
        long sub = index & SubBucketMask;
        return (SubBucketCount + sub) << (group - 1);
    }

    /// <summary>The largest value that falls in bucket <paramref name="index"/>.</summary>
    /// <param name="index">A bucket index.</param>
    /// <returns>The value.</returns>
    public static long HighestValueOf(int index)
    {
        if (index < SubBucketCount)
        {
            return index;
        }

        int group = index >> SubBucketBits;
        return LowestValueOf(index) + (1L << (group - 1)) - 1;
    }
}
