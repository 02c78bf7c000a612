namespace Distcache.Tools.Tests;

public sealed class LatencyHistogramTests
{
    [Fact]
    public void Buckets_are_contiguous_and_each_value_falls_in_its_own_bucket()
    {
        for (int index = 0; index < LatencyHistogram.BucketCount - 1; index++)
        {
            long low = LatencyHistogram.LowestValueOf(index);
            long high = LatencyHistogram.HighestValueOf(index);
            Assert.True(low <= high);
            Assert.Equal(high + 1, LatencyHistogram.LowestValueOf(index + 1));
            Assert.Equal(index, LatencyHistogram.IndexOf(low));
            Assert.Equal(index, LatencyHistogram.IndexOf(high));
        }
    }

    [Fact]
    public void Bucket_width_is_within_one_256th_of_the_value()
    {
        for (int index = 256; index < LatencyHistogram.BucketCount; index++)
        {
            long low = LatencyHistogram.LowestValueOf(index);
            long width = LatencyHistogram.HighestValueOf(index) - low + 1;
            Assert.True(width * 256 <= low, $"bucket {index} starts at {low} and is {width} wide");
        }
    }

    [Fact]
    public void Small_values_are_exact()
    {
        var histogram = new LatencyHistogram();
        foreach (long value in new long[] { 0, 1, 5, 255 })
        {
            histogram.Record(value);
        }

        Assert.Equal(0, histogram.ValueAtPercentile(25));
        Assert.Equal(1, histogram.ValueAtPercentile(50));
        Assert.Equal(5, histogram.ValueAtPercentile(75));
        Assert.Equal(255, histogram.ValueAtPercentile(100));
    }

    [Fact]
    public void Percentiles_match_the_sorted_values_within_the_bucket_precision()
    {
        var random = new Random(12345);
        var values = new long[100_000];
        var histogram = new LatencyHistogram();
        for (int i = 0; i < values.Length; i++)
        {
            // Log-normal-ish latencies from 1 microsecond to about 50 milliseconds, in nanoseconds.
            values[i] = (long)Math.Exp(7 + (random.NextDouble() * 10.8));
            histogram.Record(values[i]);
        }

        Array.Sort(values);
        foreach (double p in new[] { 1, 10, 50, 90, 99, 99.9, 99.99 })
        {
            long exact = values[(int)Math.Ceiling(p / 100 * values.Length) - 1];
            long reported = histogram.ValueAtPercentile(p);
            // Reported as the top of the exact value's bucket: never below it, at most 1/256 above.
            Assert.InRange(reported, exact, exact + (exact / 256) + 1);
        }

        Assert.Equal(values[0], histogram.Min);
        Assert.Equal(values[^1], histogram.Max);
        Assert.Equal(values[0], histogram.ValueAtPercentile(0));
        Assert.Equal(values[^1], histogram.ValueAtPercentile(100));
        Assert.Equal(values.Average(), histogram.Mean, 1e-6 * values.Average());
    }

    [Fact]
    public void Add_combines_two_histograms_as_if_all_values_were_recorded_in_one()
    {
        var all = new LatencyHistogram();
        var first = new LatencyHistogram();
        var second = new LatencyHistogram();
        for (long v = 1; v < 100_000; v += 7)
        {
            all.Record(v);
            (v % 2 == 0 ? first : second).Record(v);
        }

        var combined = new LatencyHistogram();
        combined.Add(first);
        combined.Add(second);
        Assert.Equal(all.Count, combined.Count);
        Assert.Equal(all.Min, combined.Min);
        Assert.Equal(all.Max, combined.Max);
        Assert.Equal(all.Sum, combined.Sum);
        foreach (double p in new[] { 50, 90, 99, 99.9 })
        {
            Assert.Equal(all.ValueAtPercentile(p), combined.ValueAtPercentile(p));
        }
    }

    [Fact]
    public void Empty_histogram_reports_zeros_and_Reset_empties()
    {
        var histogram = new LatencyHistogram();
        Assert.Equal(0, histogram.ValueAtPercentile(99));
        Assert.Equal(0, histogram.Mean);
        histogram.Record(1000);
        histogram.Reset();
        Assert.Equal(0, histogram.Count);
        Assert.Equal(0, histogram.Max);
        Assert.Equal(0, histogram.ValueAtPercentile(50));
        histogram.Add(new LatencyHistogram());
        Assert.Equal(0, histogram.Count);
    }

    [Fact]
    public void Out_of_range_values_are_clamped_but_min_and_max_stay_exact()
    {
        var histogram = new LatencyHistogram();
        histogram.Record(-5);
        histogram.Record(long.MaxValue / 2);
        Assert.Equal(0, histogram.Min);
        Assert.Equal(long.MaxValue / 2, histogram.Max);
        Assert.Equal(LatencyHistogram.BucketCount - 1, LatencyHistogram.IndexOf(long.MaxValue));
        Assert.Equal(long.MaxValue / 2, histogram.ValueAtPercentile(100));
        Assert.Throws<ArgumentOutOfRangeException>(() => histogram.ValueAtPercentile(100.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => histogram.ValueAtPercentile(double.NaN));
    }
}
