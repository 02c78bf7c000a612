using System.Text;

namespace Distcache.TicketKeys.Tests;

public class KeyScheduleTests
{
    [Fact]
    public void Periods_are_counted_from_the_epoch_and_change_exactly_at_the_boundary()
    {
        var schedule = new KeySchedule("default", 3600);
        DateTimeOffset start = DateTimeOffset.FromUnixTimeSeconds(3600L * 500_000);
        Assert.Equal(500_000, schedule.PeriodAt(start));
        Assert.Equal(499_999, schedule.PeriodAt(start.AddTicks(-TimeSpan.TicksPerMillisecond)));
        Assert.Equal(500_000, schedule.PeriodAt(start.AddSeconds(3599.999)));
        Assert.Equal(500_001, schedule.PeriodAt(start.AddSeconds(3600)));
        Assert.Equal(start, schedule.StartOf(500_000));
    }

    [Fact]
    public void The_cache_id_names_the_farm_the_period_length_and_the_period_within_64_bytes()
    {
        Assert.Equal("dctk1:shop:43200:12345", Encoding.ASCII.GetString(new KeySchedule("shop", 43200).CacheId(12345)));

        // The longest: a 32-character name, the shortest period (the most digits) a century from now.
        var longest = new KeySchedule(new string('n', 32), KeySchedule.MinPeriodSeconds);
        long period = longest.PeriodAt(DateTimeOffset.UtcNow.AddYears(100));
        Assert.InRange(longest.CacheId(period).Length, 1, 64);
        Assert.InRange(new KeySchedule(new string('n', 32), KeySchedule.MaxPeriodSeconds).CacheId(long.MaxValue / KeySchedule.MaxPeriodSeconds).Length, 1, 64);
    }

    [Fact]
    public void The_cache_keeps_a_key_one_period_past_its_last_use_within_seven_days()
    {
        var schedule = new KeySchedule("default", 3600);
        DateTimeOffset madeEarly = schedule.StartOf(99);
        Assert.Equal(TimeSpan.FromHours(4), schedule.CacheLifetime(100, madeEarly));
        Assert.Equal(TimeSpan.FromHours(2.5), schedule.CacheLifetime(100, schedule.StartOf(100).AddMinutes(30)));
        Assert.Equal(TimeSpan.Zero, schedule.CacheLifetime(100, schedule.StartOf(103)));

        var longest = new KeySchedule("default", KeySchedule.MaxPeriodSeconds);
        TimeSpan lifetime = longest.CacheLifetime(100, longest.StartOf(99));
        Assert.Equal(TimeSpan.FromDays(7), lifetime);
        Assert.True(longest.StartOf(99) + lifetime >= longest.StartOf(102), "the key must outlive its last use");
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("slash/")]
    [InlineData("colon:")]
    [InlineData("é")]
    [InlineData("123456789012345678901234567890123")]
    public void Farm_names_outside_the_rule_are_refused(string name)
    {
        Assert.False(KeySchedule.IsValidName(name, out string? reason));
        Assert.Equal($"'{name}' is not a farm name: 1 to 32 letters, digits, '.', '_' or '-'", reason);
        Assert.Throws<ArgumentException>(() => new KeySchedule(name, 3600));
    }
}
