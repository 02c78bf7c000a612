using System.Runtime.InteropServices;

namespace Distcache.Testing;

/// <summary>The few libc calls the tests make: signals to child processes, and this process's ids.</summary>
public static partial class Native
{
    /// <summary>SIGHUP.</summary>
    public const int SIGHUP = 1;

    /// <summary>SIGINT.</summary>
    public const int SIGINT = 2;

    /// <summary>SIGQUIT.</summary>
    public const int SIGQUIT = 3;

    /// <summary>SIGKILL.</summary>
    public const int SIGKILL = 9;

    /// <summary>SIGUSR1.</summary>
    public const int SIGUSR1 = 10;

    /// <summary>SIGUSR2.</summary>
    public const int SIGUSR2 = 12;

    /// <summary>SIGTERM.</summary>
    public const int SIGTERM = 15;

    /// <summary>kill(2).</summary>
    /// <param name="pid">The process.</param>
    /// <param name="signal">The signal; 0 only checks that the process exists.</param>
    /// <returns>0, or -1 with errno set.</returns>
    public static int Kill(int pid, int signal) => SysKill(pid, signal);

    /// <summary>geteuid(2).</summary>
    /// <returns>This process's effective user id.</returns>
    public static uint GetEUid() => SysGetEUid();

    /// <summary>getegid(2).</summary>
    /// <returns>This process's effective group id.</returns>
    public static uint GetEGid() => SysGetEGid();

    /// <summary>Whether a process with this id exists (a zombie counts).</summary>
    /// <param name="pid">The process.</param>
    /// <returns>True if kill(pid, 0) succeeds.</returns>
    public static bool IsAlive(int pid) => Kill(pid, 0) == 0;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint SysGetEUid();

    [LibraryImport("libc", EntryPoint = "getegid")]
    private static partial uint SysGetEGid();
}
