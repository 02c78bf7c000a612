using System.Diagnostics;

namespace Distcache.Testing;

/// <summary>Waiting for a condition that something else makes true, always with a limit.</summary>
public static class Poll
{
    /// <summary>Checks <paramref name="condition"/> every <paramref name="interval"/> (10 ms by default) until it
    /// holds; throws a <see cref="TimeoutException"/> if it still does not after <paramref name="timeout"/>.</summary>
    /// <param name="condition">What to wait for.</param>
    /// <param name="timeout">How long to wait.</param>
    /// <param name="what">What is awaited, for the failure message.</param>
    /// <param name="details">More for the failure message (a log, a process's output), read only on failure.</param>
    /// <param name="interval">How often to check.</param>
    /// <returns>A task that completes once the condition holds.</returns>
    public static async Task UntilAsync(Func<bool> condition, TimeSpan timeout, string what, Func<string>? details = null, TimeSpan? interval = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"{what}: not within {timeout}{(details is null ? "" : ". " + details())}");
            }

            await Task.Delay(interval ?? TimeSpan.FromMilliseconds(10)).ConfigureAwait(false);
        }
    }
}
