using System.Diagnostics;

namespace Distcache.Apps.Test.Load;

/// <summary>A process's CPU time, split into user and kernel time: on loopback most of a client's and a server's
/// time is spent in the kernel's TCP stack, and only the user part is the program's own code.</summary>
internal readonly record struct CpuSample(TimeSpan User, TimeSpan System)
{
    public TimeSpan Total => User + System;

    public static CpuSample Of(Process process)
    {
        try
        {
            process.Refresh();
            return new CpuSample(process.UserProcessorTime, process.PrivilegedProcessorTime);
        }
        catch (InvalidOperationException)
        {
            // The server exited during the run; its CPU time can no longer be read.
            return default;
        }
    }

    public static CpuSample operator -(CpuSample left, CpuSample right) => new(left.User - right.User, left.System - right.System);
}
