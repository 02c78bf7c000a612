namespace Distcache.Testing;

/// <summary>What this process inherited for its signals, as far as tests that send signals to tools care.</summary>
public static class SignalDisposition
{
    /// <summary>
    /// True when this process ignores <paramref name="signal"/> (the SigIgn mask of /proc/self/status), as every
    /// process started under <c>nohup</c> ignores SIGHUP. The tools a test starts inherit that, and the runtime
    /// leaves a signal ignored that was ignored when the process started, so a test of what a tool does on that
    /// signal cannot run.
    /// </summary>
    /// <param name="signal">The signal's number (SIGHUP is 1).</param>
    /// <returns>Whether the signal is ignored; false where /proc is not there.</returns>
    public static bool IsIgnored(int signal)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(signal, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(signal, 64);
        if (!File.Exists("/proc/self/status"))
        {
            return false;
        }

        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("SigIgn:", StringComparison.Ordinal))
            {
                ulong mask = Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16);
                return (mask & (1UL << (signal - 1))) != 0;
            }
        }

        return false;
    }
}
