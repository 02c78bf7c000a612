namespace Distcache.Hosting;

/// <summary>
/// How many connections a tool can hold at once within the process's limit on open descriptors
/// (<c>RLIMIT_NOFILE</c>, <c>ulimit -n</c>), raising the limit first where the hard limit allows.
/// </summary>
/// <remarks>
/// <para>A server that accepts until the kernel says EMFILE does not get to handle EMFILE gracefully: the .NET
/// runtime itself needs descriptors as it runs (it opens an assembly's file when code first needs it, and a
/// memory file for compiled code), and with none left it fails the process ("Out of memory", or a missing
/// assembly). So the connections are capped below the limit instead, with <see cref="Headroom"/> descriptors kept
/// free beyond those the process holds when it starts serving, as memcached raises its own limit to fit its
/// <c>-c</c> connections.</para>
/// <para>Debian and systemd start services with a soft limit of 1024 and a much higher hard limit, so the
/// default of 1024 connections only fits once the soft limit is raised, which needs no privilege.</para>
/// </remarks>
public static class DescriptorBudget
{
    /// <summary>Descriptors kept free for the runtime, logs and stores, beyond those open when the budget is set.</summary>
    public const int Headroom = 64;

    private const int ResourceOpenFiles = 7; // RLIMIT_NOFILE on Linux

    /// <summary>
    /// Raises the soft descriptor limit as far as <paramref name="wanted"/> connections need (no further than the
    /// hard limit) and returns how many connections fit: <paramref name="wanted"/>, or fewer when the hard limit is
    /// too low, with <paramref name="warning"/> saying so. <paramref name="wanted"/> 0 (no cap of the operator's)
    /// raises the soft limit to the hard one and returns what fits in that.
    /// </summary>
    /// <param name="wanted">The connections asked for (-maxconns); 0 for as many as the system allows.</param>
    /// <param name="flag">The option that asked, for the warning ("-maxconns").</param>
    /// <param name="warning">Why fewer connections fit than were asked for; null when they all fit.</param>
    /// <returns>The connection cap to serve with, at least 1; <paramref name="wanted"/> unchanged off Linux.</returns>
    public static int Fit(int wanted, string flag, out string? warning)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(wanted);
        warning = null;
        if (!OperatingSystem.IsLinux() || !Environment.Is64BitProcess)
        {
            return wanted;
        }

        ulong[] limit = new ulong[2];
        if (NativeMethods.GetRLimit(ResourceOpenFiles, limit) != 0)
        {
            return wanted;
        }

        ulong soft = limit[0], hard = limit[1];
        long inUse = Directory.GetFileSystemEntries("/proc/self/fd").Length;
        ulong needed = wanted == 0 ? hard : (ulong)(wanted + inUse + Headroom);
        if (soft < needed && soft < hard)
        {
            limit[0] = Math.Min(needed, hard);
            if (NativeMethods.SetRLimit(ResourceOpenFiles, limit) == 0)
            {
                soft = limit[0];
            }
        }

        // RLIM_INFINITY, or more than any cap could use.
        long fits = soft > int.MaxValue ? int.MaxValue : Math.Max(1, (long)soft - inUse - Headroom);
        if (wanted == 0)
        {
            return (int)fits;
        }

        if (fits >= wanted)
        {
            return wanted;
        }

        warning = $"the process may open only {soft} descriptors (ulimit -n; hard limit {hard}), {inUse} of them in use: serving at most {fits} connections at once, not the {wanted} of {flag}";
        return (int)fits;
    }
}
