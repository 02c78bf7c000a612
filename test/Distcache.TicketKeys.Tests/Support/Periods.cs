namespace Distcache.TicketKeys.Tests.Support;

/// <summary>What the tests that run across rotations share: waiting for a period to begin, and counting log lines.</summary>
internal static class Periods
{
    /// <summary>
    /// Returns at once if a period of <paramref name="seconds"/> began at most <paramref name="latest"/> ago;
    /// otherwise waits until just after the next one begins, so that each step of a test falls in a known period.
    /// </summary>
    public static async Task StartAsync(int seconds, TimeSpan latest, TimeSpan after)
    {
        long into = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() % (seconds * 1000L);
        if (into > latest.TotalMilliseconds)
        {
            await Task.Delay(TimeSpan.FromMilliseconds((seconds * 1000L) - into) + after);
        }
    }

    /// <summary>How many times <paramref name="what"/> appears in <paramref name="text"/> (a tool's log).</summary>
    public static int Count(string text, string what)
    {
        int count = 0;
        for (int at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + what.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }
}
