using System.Runtime.InteropServices;

namespace Distcache.Hosting;

/// <summary>
/// The libc calls of process plumbing that .NET has no managed equivalent for: user and group ids, sessions,
/// standard descriptors.
/// </summary>
/// <remarks>
/// Only blittable arguments and strings cross the boundary, so the project can keep unsafe code disabled. The user
/// and group lookups, and the C library's name, are Distcache.Networking's (<see cref="Networking.NativeMethods"/>),
/// which needs them for unix socket owners too.
/// </remarks>
internal static class NativeMethods
{
    private const string Libc = Networking.NativeMethods.Libc;
    private const int OpenReadWrite = 2; // O_RDWR, the same on every Linux architecture and the BSDs.

    /// <summary>Replaces the standard descriptors and every other listed descriptor with <c>/dev/null</c>.</summary>
    /// <returns>Null on success, otherwise the system's description of the error.</returns>
    public static string? RedirectToDevNull(IEnumerable<int> descriptors)
    {
        var devNull = Open("/dev/null", OpenReadWrite);
        if (devNull < 0)
        {
            return "cannot open /dev/null: " + Marshal.GetLastPInvokeErrorMessage();
        }

        try
        {
            foreach (var fd in descriptors)
            {
                if (fd != devNull && Dup2(devNull, fd) < 0)
                {
                    return $"cannot redirect descriptor {fd} to /dev/null: {Marshal.GetLastPInvokeErrorMessage()}";
                }
            }

            return null;
        }
        finally
        {
            // When 0, 1 or 2 were closed, open() handed out one of them, and it must stay open as /dev/null.
            if (devNull > 2)
            {
                _ = Close(devNull);
            }
        }
    }

    [DllImport(Libc, EntryPoint = "initgroups", SetLastError = true)]
    public static extern int InitGroups([MarshalAs(UnmanagedType.LPUTF8Str)] string user, uint group);

    [DllImport(Libc, EntryPoint = "setgid", SetLastError = true)]
    public static extern int SetGid(uint gid);

    [DllImport(Libc, EntryPoint = "setuid", SetLastError = true)]
    public static extern int SetUid(uint uid);

    [DllImport(Libc, EntryPoint = "getuid")]
    public static extern uint GetUid();

    [DllImport(Libc, EntryPoint = "geteuid")]
    public static extern uint GetEUid();

    [DllImport(Libc, EntryPoint = "getgid")]
    public static extern uint GetGid();

    [DllImport(Libc, EntryPoint = "getegid")]
    public static extern uint GetEGid();

    // struct rlimit { rlim_t rlim_cur, rlim_max; }: two 64-bit counts on 64-bit Linux.
    [DllImport(Libc, EntryPoint = "getrlimit", SetLastError = true)]
    public static extern int GetRLimit(int resource, [Out] ulong[] limit);

    [DllImport(Libc, EntryPoint = "setrlimit", SetLastError = true)]
    public static extern int SetRLimit(int resource, ulong[] limit);

    [DllImport(Libc, EntryPoint = "setsid", SetLastError = true)]
    public static extern int SetSid();

    [DllImport(Libc, EntryPoint = "open", SetLastError = true)]
    private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    /// <summary><c>open(path, flags, mode)</c>: the mode applies only when the file is created (less the umask).</summary>
    [DllImport(Libc, EntryPoint = "open", SetLastError = true)]
    public static extern int OpenWithMode([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mode);

    [DllImport(Libc, EntryPoint = "write", SetLastError = true)]
    public static extern nint Write(int fd, byte[] buffer, nint count);

    /// <summary>
    /// <c>statx(2)</c>, whose result layout (unlike <c>struct stat</c>'s) is the same on every Linux architecture:
    /// <c>stx_ino</c> at byte 32, <c>stx_dev_major</c> and <c>stx_dev_minor</c> at 136 and 140.
    /// </summary>
    [DllImport(Libc, EntryPoint = "statx", SetLastError = true)]
    public static extern int StatX(int dirFd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, [Out] byte[] buffer);

    [DllImport(Libc, EntryPoint = "dup2", SetLastError = true)]
    private static extern int Dup2(int oldFd, int newFd);

    [DllImport(Libc, EntryPoint = "fsync", SetLastError = true)]
    public static extern int Fsync(int fd);

    [DllImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static extern int Close(int fd);
}
