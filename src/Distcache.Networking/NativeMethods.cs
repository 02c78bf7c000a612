using System.Runtime.InteropServices;

namespace Distcache.Networking;

/// <summary>What <see cref="NativeMethods.Probe"/> found at a path.</summary>
internal enum FileKind
{
    /// <summary>Nothing is there.</summary>
    Missing,

    /// <summary>A unix domain socket.</summary>
    Socket,

    /// <summary>Something else: regular file, directory, symbolic link (not followed), device, FIFO.</summary>
    Other,

    /// <summary>The platform cannot tell (no <c>statx</c>); callers must assume the worst.</summary>
    Unknown,
}

/// <summary>Device and inode of a file: what stays the same while the file is the same file.</summary>
internal readonly record struct FileIdentity(ulong Device, ulong Inode);

/// <summary>The libc calls .NET has no managed equivalent for: file type/inode, chown, and user/group lookups.</summary>
/// <remarks>
/// Everything marshals through byte arrays and strings so that the project can keep unsafe code disabled.
/// <c>statx</c> is used rather than <c>lstat</c> because its structure has the same layout on every Linux
/// architecture, while <c>struct stat</c> differs between x64 and arm64 (and was not even an exported symbol
/// before glibc 2.33).
/// </remarks>
internal static class NativeMethods
{
    private const string Libc = "libc";
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const uint StatxIno = 0x100;
    private const int StatxSize = 256;
    private const int StatxModeOffset = 28;
    private const int StatxInoOffset = 32;
    private const int StatxDevMajorOffset = 136;
    private const int StatxDevMinorOffset = 140;
    private const int FileTypeMask = 0xF000;
    private const int FileTypeSocket = 0xC000;
    private const int ENOENT = 2;
    private const int ENOTDIR = 20;
    private const int ERANGE = 34;

    // Larger than struct passwd/group on every libc we know (48 and 32 bytes on glibc x64, 72+ on the BSDs).
    private const int EntryStructSize = 256;
    private const int MaxLookupBuffer = 1 << 20;

    /// <summary>Finds out what is at <paramref name="path"/> without following a symbolic link there.</summary>
    /// <param name="path">The path to examine.</param>
    /// <param name="identity">Device and inode when something is there and the platform can tell.</param>
    /// <returns>The kind of file.</returns>
    /// <exception cref="IOException">The path cannot be examined (for example a permission problem on a parent directory).</exception>
    public static FileKind Probe(string path, out FileIdentity identity)
    {
        identity = default;
        if (!OperatingSystem.IsLinux())
        {
            return File.Exists(path) || Directory.Exists(path) || IsDanglingLink(path) ? FileKind.Unknown : FileKind.Missing;
        }

        var buffer = new byte[StatxSize];
        int result;
        try
        {
            result = StatX(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxIno, buffer);
        }
        catch (EntryPointNotFoundException)
        {
            return File.Exists(path) || Directory.Exists(path) || IsDanglingLink(path) ? FileKind.Unknown : FileKind.Missing;
        }

        if (result != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno is ENOENT or ENOTDIR)
            {
                return FileKind.Missing;
            }

            throw new IOException($"cannot examine {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }

        var mode = BitConverter.ToUInt16(buffer, StatxModeOffset);
        var device = ((ulong)BitConverter.ToUInt32(buffer, StatxDevMajorOffset) << 32) | BitConverter.ToUInt32(buffer, StatxDevMinorOffset);
        identity = new FileIdentity(device, BitConverter.ToUInt64(buffer, StatxInoOffset));
        return (mode & FileTypeMask) == FileTypeSocket ? FileKind.Socket : FileKind.Other;
    }

    /// <summary>Changes the owner and/or group of <paramref name="path"/>.</summary>
    /// <param name="path">The file.</param>
    /// <param name="uid">The new owner, or null to leave it.</param>
    /// <param name="gid">The new group, or null to leave it.</param>
    /// <returns>Null on success, otherwise the system's description of the error.</returns>
    public static string? ChangeOwner(string path, uint? uid, uint? gid)
    {
        // (uid_t)-1 / (gid_t)-1 tell chown(2) to leave that id alone.
        if (Chown(path, uid ?? uint.MaxValue, gid ?? uint.MaxValue) == 0)
        {
            return null;
        }

        return Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError());
    }

    /// <summary>Looks up a user name in the system's user database (files, LDAP, ... whatever NSS is configured with).</summary>
    /// <param name="name">The user name.</param>
    /// <param name="uid">The user id when found.</param>
    /// <returns>Null when found, "not found" text or the system error otherwise.</returns>
    public static string? LookUpUser(string name, out uint uid)
    {
        var error = LookUp(name, isGroup: false, out var entry);
        uid = entry is null ? 0 : BitConverter.ToUInt32(entry, 2 * IntPtr.Size);
        return error;
    }

    /// <summary>Looks up a group name in the system's group database.</summary>
    /// <param name="name">The group name.</param>
    /// <param name="gid">The group id when found.</param>
    /// <returns>Null when found, "not found" text or the system error otherwise.</returns>
    public static string? LookUpGroup(string name, out uint gid)
    {
        var error = LookUp(name, isGroup: true, out var entry);
        gid = entry is null ? 0 : BitConverter.ToUInt32(entry, 2 * IntPtr.Size);
        return error;
    }

    private static string? LookUp(string name, bool isGroup, out byte[]? entry)
    {
        entry = null;
        var structure = new byte[EntryStructSize];
        for (var size = 1024; size <= MaxLookupBuffer; size *= 2)
        {
            var strings = new byte[size];
            var error = isGroup
                ? GetGrNamR(name, structure, strings, (nuint)size, out var found)
                : GetPwNamR(name, structure, strings, (nuint)size, out found);
            if (error == ERANGE)
            {
                continue;
            }

            if (error != 0)
            {
                return Marshal.GetPInvokeErrorMessage(error);
            }

            if (found == IntPtr.Zero)
            {
                return "no such name";
            }

            // Only the numeric id is read, and it sits in 'structure' itself, not in the string buffer.
            entry = structure;
            return null;
        }

        return "the database entry is too large";
    }

    private static bool IsDanglingLink(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget is not null;
        }
        catch (IOException)
        {
            return false;
        }
    }

    [DllImport(Libc, EntryPoint = "statx", SetLastError = true)]
    private static extern int StatX(int dirFd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buffer);

    [DllImport(Libc, EntryPoint = "chown", SetLastError = true)]
    private static extern int Chown([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint owner, uint group);

    [DllImport(Libc, EntryPoint = "getpwnam_r")]
    private static extern int GetPwNamR([MarshalAs(UnmanagedType.LPUTF8Str)] string name, byte[] entry, byte[] strings, nuint stringsLength, out IntPtr result);

    [DllImport(Libc, EntryPoint = "getgrnam_r")]
    private static extern int GetGrNamR([MarshalAs(UnmanagedType.LPUTF8Str)] string name, byte[] entry, byte[] strings, nuint stringsLength, out IntPtr result);
}
