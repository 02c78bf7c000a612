using System.Runtime.InteropServices;

namespace Distcache.Hosting;

/// <summary>An entry of the user database, as far as this library needs it.</summary>
internal readonly record struct PasswdEntry(string Name, uint UserId, uint GroupId);

/// <summary>The libc calls .NET has no managed equivalent for.</summary>
/// <remarks>
/// Only blittable arguments, strings and <see cref="IntPtr"/> cross the boundary, so the project can keep
/// unsafe code disabled. The reentrant <c>get*_r</c> lookups write into unmanaged memory rather than a managed
/// array because the returned structure points into that buffer: a managed array could move once unpinned.
/// </remarks>
internal static class NativeMethods
{
    private const string Libc = "libc";
    private const int OpenReadWrite = 2; // O_RDWR, the same on every Linux architecture and the BSDs.
    private const int NoEntry = -1;
    private const int EPERM = 1;
    private const int ENOENT = 2;
    private const int ESRCH = 3;
    private const int EBADF = 9;
    private const int ERANGE = 34;
    private const int MaxLookupBuffer = 1 << 20;

    // struct passwd and struct group begin with two pointers (name, password) followed by the ids, on glibc,
    // musl and the BSDs alike.
    private static readonly int IdsOffset = 2 * IntPtr.Size;

    // Generously larger than struct passwd / struct group anywhere (48 and 32 bytes on 64-bit glibc).
    private const int EntryStructSize = 256;

    /// <summary>The outcome of a user or group lookup.</summary>
    public enum LookupStatus
    {
        /// <summary>The entry exists.</summary>
        Found,

        /// <summary>The database has no such entry.</summary>
        NotFound,

        /// <summary>The database could not be read; the error text says why.</summary>
        Failed,
    }

    /// <summary>Finds a user by name (<c>getpwnam_r</c>), through whatever NSS is configured with.</summary>
    public static LookupStatus GetUserByName(string name, out PasswdEntry entry, out string? error) =>
        LookUpUser((structure, buffer, size) => NotFoundWhenNull(GetPwNamR(name, structure, buffer, size, out var found), found), out entry, out error);

    /// <summary>Finds a user by id (<c>getpwuid_r</c>).</summary>
    public static LookupStatus GetUserById(uint uid, out PasswdEntry entry, out string? error) =>
        LookUpUser((structure, buffer, size) => NotFoundWhenNull(GetPwUidR(uid, structure, buffer, size, out var found), found), out entry, out error);

    /// <summary>Finds a group by name (<c>getgrnam_r</c>) and returns its id.</summary>
    public static LookupStatus GetGroupByName(string name, out uint gid, out string? error) =>
        LookUpGroup((structure, buffer, size) => NotFoundWhenNull(GetGrNamR(name, structure, buffer, size, out var found), found), out gid, out error);

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

    /// <summary>The libc error text for an errno value.</summary>
    public static string ErrorText(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    private static int NotFoundWhenNull(int result, IntPtr found) => result == 0 && found == IntPtr.Zero ? NoEntry : result;

    private static LookupStatus LookUpUser(Func<IntPtr, IntPtr, nuint, int> call, out PasswdEntry entry, out string? error)
    {
        PasswdEntry found = default;
        var status = LookUp(call, structure => found = new PasswdEntry(
            Marshal.PtrToStringUTF8(Marshal.ReadIntPtr(structure)) ?? string.Empty,
            (uint)Marshal.ReadInt32(structure, IdsOffset),
            (uint)Marshal.ReadInt32(structure, IdsOffset + sizeof(uint))), out error);
        entry = found;
        return status;
    }

    private static LookupStatus LookUpGroup(Func<IntPtr, IntPtr, nuint, int> call, out uint gid, out string? error)
    {
        uint found = 0;
        var status = LookUp(call, structure => found = (uint)Marshal.ReadInt32(structure, IdsOffset), out error);
        gid = found;
        return status;
    }

    /// <summary>
    /// Runs a <c>get*_r</c> call with a growing buffer. <paramref name="call"/> returns the function's result, or
    /// <see cref="NoEntry"/> when it succeeded without finding anything.
    /// </summary>
    private static LookupStatus LookUp(Func<IntPtr, IntPtr, nuint, int> call, Action<IntPtr> read, out string? error)
    {
        error = null;
        var structure = Marshal.AllocHGlobal(EntryStructSize);
        try
        {
            for (var size = 1024; size <= MaxLookupBuffer; size *= 2)
            {
                var buffer = Marshal.AllocHGlobal(size);
                try
                {
                    var rc = call(structure, buffer, (nuint)size);
                    switch (rc)
                    {
                        case 0:
                            // The strings the structure points to live in 'buffer': read them before it is freed.
                            read(structure);
                            return LookupStatus.Found;
                        case ERANGE:
                            continue;
                        // getpwnam_r(3): "0 or ENOENT or ESRCH or EBADF or EPERM or ..." all mean the name was not found.
                        case NoEntry or EPERM or ENOENT or ESRCH or EBADF:
                            return LookupStatus.NotFound;
                        default:
                            error = ErrorText(rc);
                            return LookupStatus.Failed;
                    }
                }
                finally
                {
                    Marshal.FreeHGlobal(buffer);
                }
            }

            error = "the database entry is too large";
            return LookupStatus.Failed;
        }
        finally
        {
            Marshal.FreeHGlobal(structure);
        }
    }

    [DllImport(Libc, EntryPoint = "getpwnam_r")]
    private static extern int GetPwNamR([MarshalAs(UnmanagedType.LPUTF8Str)] string name, IntPtr entry, IntPtr buffer, nuint bufferLength, out IntPtr result);

    [DllImport(Libc, EntryPoint = "getpwuid_r")]
    private static extern int GetPwUidR(uint uid, IntPtr entry, IntPtr buffer, nuint bufferLength, out IntPtr result);

    [DllImport(Libc, EntryPoint = "getgrnam_r")]
    private static extern int GetGrNamR([MarshalAs(UnmanagedType.LPUTF8Str)] string name, IntPtr entry, IntPtr buffer, nuint bufferLength, out IntPtr result);

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

    [DllImport(Libc, EntryPoint = "setsid", SetLastError = true)]
    public static extern int SetSid();

    [DllImport(Libc, EntryPoint = "open", SetLastError = true)]
    private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport(Libc, EntryPoint = "dup2", SetLastError = true)]
    private static extern int Dup2(int oldFd, int newFd);

    [DllImport(Libc, EntryPoint = "close", SetLastError = true)]
    private static extern int Close(int fd);
}
