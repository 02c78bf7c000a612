using System.Net.Sockets;
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

/// <summary>The outcome of a user or group lookup.</summary>
internal enum LookupStatus
{
    /// <summary>The entry exists.</summary>
    Found,

    /// <summary>The database has no such entry.</summary>
    NotFound,

    /// <summary>The database could not be read; the error text says why.</summary>
    Failed,
}

/// <summary>An entry of the user database, as far as this project needs it.</summary>
internal readonly record struct PasswdEntry(string Name, uint UserId, uint GroupId);

/// <summary>
/// The libc calls .NET has no managed equivalent for, and their constants: file type/inode, chown, user and group
/// lookups (shared with Distcache.Hosting), and the sockets and <c>epoll</c> of the native transport.
/// </summary>
/// <remarks>
/// <para>Only blittable arguments, strings, byte references and <see cref="IntPtr"/> cross the boundary, so that
/// the project can keep unsafe code disabled. The reentrant <c>get*_r</c> lookups write into unmanaged memory rather
/// than a managed array because the returned structure points into that buffer: a managed array could move once
/// unpinned.</para>
/// <para><c>statx</c> is used rather than <c>lstat</c> because its structure has the same layout on every Linux
/// architecture, while <c>struct stat</c> differs between x64 and arm64 (and was not even an exported symbol before
/// glibc 2.33).</para>
/// <para>The socket, <c>epoll</c> and <c>fcntl</c> constants are Linux's: only the native transport uses them, and
/// it runs on Linux alone.</para>
/// </remarks>
internal static class NativeMethods
{
    /// <summary>The C library every import here (and in Distcache.Hosting) binds to.</summary>
    public const string Libc = "libc";

    // Linux's errno values; those the user and group lookups meet (EPERM, ENOENT, ESRCH, EBADF, ERANGE) are the same
    // on the BSDs.
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOTDIR = 20;
    public const int ERANGE = 34;
    public const int EINPROGRESS = 115;
    public const int ENFILE = 23;
    public const int EMFILE = 24;
    public const int ENOBUFS = 105;
    public const int ENOMEM = 12;

    public const uint EpollIn = 0x001;
    public const uint EpollOut = 0x004;
    public const uint EpollErr = 0x008;
    public const uint EpollHup = 0x010;
    public const uint EpollRdHup = 0x2000;
    public const uint EpollExclusive = 1u << 28;
    public const uint EpollEt = 1u << 31;
    public const int EpollCtlAdd = 1;
    public const int EpollCtlDel = 2;
    public const int EpollCloexec = 0x80000;
    public const int MsgNoSignal = 0x4000;
    public const int MsgDontWait = 0x40;
    public const int SockStream = 1;
    public const int SockNonBlock = 0x800;
    public const int SockCloexec = 0x80000;
    public const int SolSocket = 1;
    public const int SoError = 4;
    public const int SoPeerCred = 17;
    public const int SoLinger = 13;
    public const int IpProtoTcp = 6;
    public const int TcpNoDelay = 1;
    public const int FcntlGetFlags = 3;
    public const int FcntlSetFlags = 4;
    public const int ONonBlock = 0x800;

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

    // What a lookup call returns when it succeeded without finding anything (not an errno value).
    private const int NoEntry = -1;
    private const int MaxLookupBuffer = 1 << 20;

    // Generously larger than struct passwd / struct group anywhere (48 and 32 bytes on 64-bit glibc, 72+ on the BSDs).
    private const int EntryStructSize = 256;

    // struct passwd and struct group begin with two pointers (name, password) followed by the ids, on glibc,
    // musl and the BSDs alike.
    private static readonly int IdsOffset = 2 * IntPtr.Size;

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

    /// <summary>Finds a user by name (<c>getpwnam_r</c>), through whatever NSS is configured with (files, LDAP, ...).</summary>
    /// <param name="name">The user name.</param>
    /// <param name="entry">The user when found.</param>
    /// <param name="error">
    /// Why the database could not be read (<see cref="LookupStatus.Failed"/>); for <see cref="LookupStatus.NotFound"/>,
    /// the error the lookup reported instead of an empty result, if it reported one.
    /// </param>
    /// <returns>Whether the user was found.</returns>
    public static LookupStatus GetUserByName(string name, out PasswdEntry entry, out string? error) =>
        LookUpUser((structure, buffer, size) => NotFoundWhenNull(GetPwNamR(name, structure, buffer, size, out var found), found), out entry, out error);

    /// <summary>Finds a user by id (<c>getpwuid_r</c>).</summary>
    /// <inheritdoc cref="GetUserByName"/>
    public static LookupStatus GetUserById(uint uid, out PasswdEntry entry, out string? error) =>
        LookUpUser((structure, buffer, size) => NotFoundWhenNull(GetPwUidR(uid, structure, buffer, size, out var found), found), out entry, out error);

    /// <summary>Finds a group by name (<c>getgrnam_r</c>) and returns its id.</summary>
    /// <param name="name">The group name.</param>
    /// <param name="gid">The group id when found.</param>
    /// <param name="error">As for <see cref="GetUserByName"/>.</param>
    /// <returns>Whether the group was found.</returns>
    public static LookupStatus GetGroupByName(string name, out uint gid, out string? error) =>
        LookUpGroup((structure, buffer, size) => NotFoundWhenNull(GetGrNamR(name, structure, buffer, size, out var found), found), out gid, out error);

    /// <summary>The libc error text for an errno value.</summary>
    public static string ErrorText(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    /// <summary>The libc error text for an errno value, followed by the number: for messages about system calls.</summary>
    public static string Describe(int errno) => ErrorText(errno) + " (errno " + errno.ToString(System.Globalization.CultureInfo.InvariantCulture) + ")";

    /// <summary>The socket error the runtime reports for an errno, as far as a connection can meet it.</summary>
    public static SocketError ToSocketError(int errno) => errno switch
    {
        111 => SocketError.ConnectionRefused,
        2 or 99 => SocketError.AddressNotAvailable,
        13 or 1 => SocketError.AccessDenied,
        11 => SocketError.WouldBlock,
        97 => SocketError.AddressFamilyNotSupported,
        104 => SocketError.ConnectionReset,
        32 => SocketError.Shutdown,
        110 => SocketError.TimedOut,
        107 => SocketError.NotConnected,
        103 => SocketError.ConnectionAborted,
        113 => SocketError.HostUnreachable,
        101 => SocketError.NetworkUnreachable,
        9 => SocketError.OperationAborted,
        12 or 105 => SocketError.NoBufferSpaceAvailable,
        _ => SocketError.SocketError,
    };

    [DllImport(Libc, EntryPoint = "epoll_create1", SetLastError = true)]
    public static extern int EpollCreate(int flags);

    [DllImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
    public static extern int EpollControl(int epoll, int operation, int descriptor, ref byte ev);

    [DllImport(Libc, EntryPoint = "epoll_wait", SetLastError = true)]
    public static extern int EpollWait(int epoll, ref byte events, int maxEvents, int timeout);

    // FIONBIO's number on x64 and arm64 Linux (the asm-generic value; a few other architectures differ).
    public const uint FIONBIO = 0x5421;

    /// <summary>Whether <see cref="FIONBIO"/> is this process's number for the request.</summary>
    public static readonly bool HasFionbio = OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

    // ioctl(fd, FIONBIO, &on): one system call where fcntl needs two (F_GETFL, then F_SETFL).
    [DllImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    public static extern int IoctlInt(int descriptor, nuint request, ref int value);

    /// <summary>Sets or clears O_NONBLOCK: one <c>ioctl</c> where it can, <c>fcntl</c> twice otherwise.</summary>
    /// <returns>0, or -1 with the error in <see cref="Marshal.GetLastPInvokeError"/>.</returns>
    public static int SetNonBlocking(nint descriptor, bool on)
    {
        if (HasFionbio)
        {
            int value = on ? 1 : 0;
            return IoctlInt((int)descriptor, FIONBIO, ref value);
        }

        int flags = Fcntl(descriptor, FcntlGetFlags, 0);
        return flags < 0 ? -1 : Fcntl(descriptor, FcntlSetFlags, on ? flags | ONonBlock : flags & ~ONonBlock);
    }

    [DllImport(Libc, EntryPoint = "recv", SetLastError = true)]
    public static extern nint Receive(nint descriptor, ref byte buffer, nint length, int flags);

    [DllImport(Libc, EntryPoint = "send", SetLastError = true)]
    public static extern nint Send(nint descriptor, ref byte buffer, nint length, int flags);

    [DllImport(Libc, EntryPoint = "socket", SetLastError = true)]
    public static extern int CreateSocket(int domain, int type, int protocol);

    [DllImport(Libc, EntryPoint = "connect", SetLastError = true)]
    public static extern int Connect(nint descriptor, ref byte address, int addressLength);

    [DllImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    public static extern int GetSocketOption(nint descriptor, int level, int option, ref int value, ref int length);

    [DllImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    public static extern int Fcntl(nint descriptor, int command, int argument);

    // The address buffer is a struct sockaddr_storage (128 bytes): the peer's address comes with the accept, which
    // spares a getpeername per connection.
    [DllImport(Libc, EntryPoint = "accept4", SetLastError = true)]
    public static extern int Accept(nint descriptor, ref byte address, ref int addressLength, int flags);

    [DllImport(Libc, EntryPoint = "setsockopt", SetLastError = true)]
    public static extern int SetSocketOption(nint descriptor, int level, int option, ref int value, int length);

    [DllImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    public static extern int GetSocketOption(nint descriptor, int level, int option, ref byte value, ref int length);

    [DllImport(Libc, EntryPoint = "setsockopt", SetLastError = true)]
    public static extern int SetSocketOption(nint descriptor, int level, int option, ref byte value, int length);

    [DllImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static extern int Close(nint descriptor);

    [DllImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static extern int FcntlDup(nint descriptor, int command, int lowest);

    /// <summary>A new descriptor for the same open socket, close-on-exec (<c>F_DUPFD_CLOEXEC</c>); -1 on failure.</summary>
    public static int DuplicateCloseOnExec(nint descriptor) => FcntlDup(descriptor, 1030 /* F_DUPFD_CLOEXEC */, 0);

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
                        case NoEntry:
                            return LookupStatus.NotFound;
                        // getpwnam_r(3): "0 or ENOENT or ESRCH or EBADF or EPERM or ..." all mean the name was not found.
                        case EPERM or ENOENT or ESRCH or EBADF:
                            error = ErrorText(rc);
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
    private static extern int GetPwNamR([MarshalAs(UnmanagedType.LPUTF8Str)] string name, IntPtr entry, IntPtr buffer, nuint bufferLength, out IntPtr result);

    [DllImport(Libc, EntryPoint = "getpwuid_r")]
    private static extern int GetPwUidR(uint uid, IntPtr entry, IntPtr buffer, nuint bufferLength, out IntPtr result);

    [DllImport(Libc, EntryPoint = "getgrnam_r")]
    private static extern int GetGrNamR([MarshalAs(UnmanagedType.LPUTF8Str)] string name, IntPtr entry, IntPtr buffer, nuint bufferLength, out IntPtr result);
}
