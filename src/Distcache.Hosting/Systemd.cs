using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Distcache.Hosting;

/// <summary>
/// What a service needs from systemd's side of the conversation, without libsystemd: readiness (<c>sd_notify</c>'s
/// <c>READY=1</c> for <c>Type=notify</c>), listening sockets handed over by a socket unit (the <c>LISTEN_FDS</c>
/// protocol), and whether standard error is the journal.
/// </summary>
public static class Systemd
{
    /// <summary>The first descriptor a socket unit hands over; the others follow it.</summary>
    public const int FirstListenDescriptor = 3;

    private const string NotifySocketVariable = "NOTIFY_SOCKET";
    private const string ListenPidVariable = "LISTEN_PID";
    private const string ListenFdsVariable = "LISTEN_FDS";
    private const string ListenFdNamesVariable = "LISTEN_FDNAMES";
    private const string JournalStreamVariable = "JOURNAL_STREAM";

    /// <summary>
    /// Takes the listening sockets systemd passed to this process: the count in <c>LISTEN_FDS</c> when
    /// <c>LISTEN_PID</c> is this process, starting at descriptor 3. The variables are removed either way, so no
    /// program this one starts takes the sockets for its own.
    /// </summary>
    /// <param name="problem">Set when the variables are meant for this process but make no sense.</param>
    /// <returns>How many sockets were passed; 0 when none were (or they were meant for another process).</returns>
    public static int TakeListenSockets(out string? problem) =>
        TakeListenSockets(Environment.GetEnvironmentVariable(ListenPidVariable), Environment.GetEnvironmentVariable(ListenFdsVariable), Environment.ProcessId, out problem);

    /// <summary>The decision of <see cref="TakeListenSockets(out string?)"/> for given variable values (and removes the variables).</summary>
    internal static int TakeListenSockets(string? listenPid, string? listenFds, int processId, out string? problem)
    {
        problem = null;
        Environment.SetEnvironmentVariable(ListenPidVariable, null);
        Environment.SetEnvironmentVariable(ListenFdsVariable, null);
        Environment.SetEnvironmentVariable(ListenFdNamesVariable, null);
        if (listenPid is null || listenFds is null
            || !int.TryParse(listenPid, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid != processId)
        {
            // Absent, or inherited from a parent they were meant for: not ours.
            return 0;
        }

        if (!int.TryParse(listenFds, NumberStyles.None, CultureInfo.InvariantCulture, out var count) || count > 1024)
        {
            problem = $"LISTEN_FDS='{listenFds}' is not a number of sockets";
            return 0;
        }

        return count;
    }

    /// <summary>
    /// Tells the service manager that start-up is complete (<c>READY=1</c> to <c>NOTIFY_SOCKET</c>), once; does
    /// nothing when the variable is absent (not a <c>Type=notify</c> service). The variable is removed after use.
    /// </summary>
    /// <returns>Null when sent or not needed; otherwise why it could not be sent.</returns>
    public static string? NotifyReady()
    {
        var target = Environment.GetEnvironmentVariable(NotifySocketVariable);
        if (string.IsNullOrEmpty(target))
        {
            return null;
        }

        Environment.SetEnvironmentVariable(NotifySocketVariable, null);
        return Notify(target, "READY=1");
    }

    /// <summary>Sends one notification datagram to <paramref name="target"/> (a path, or <c>@name</c> in the abstract namespace).</summary>
    internal static string? Notify(string target, string state)
    {
        if (target[0] != '/' && target[0] != '@')
        {
            return $"NOTIFY_SOCKET='{target}' is neither a path nor an abstract socket name (@name)";
        }

        // An abstract name starts with a NUL byte instead of the '@' that stands for it in the variable.
        var endPoint = new UnixDomainSocketEndPoint(target[0] == '@' ? "\0" + target[1..] : target);
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.SendTo(Encoding.UTF8.GetBytes(state), endPoint);
            return null;
        }
        catch (SocketException e)
        {
            return $"cannot notify the service manager at {target}: {e.Message}";
        }
    }

    /// <summary>
    /// Whether standard error is the journal's stream: <c>JOURNAL_STREAM</c> holds the device and inode numbers of
    /// the stream systemd connected, and they are those of descriptor 2 (not merely inherited by a program whose
    /// standard error was redirected since).
    /// </summary>
    /// <returns>True when lines on standard error may carry journal priority prefixes.</returns>
    public static bool StandardErrorIsJournal() =>
        Environment.GetEnvironmentVariable(JournalStreamVariable) is { Length: > 0 } stream
        && DeviceAndInode(2) is { } identity
        && stream == string.Create(CultureInfo.InvariantCulture, $"{identity.Device}:{identity.Inode}");

    private static (ulong Device, ulong Inode)? DeviceAndInode(int fd)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        const int EmptyPath = 0x1000; // AT_EMPTY_PATH: stat the descriptor itself.
        const uint WantInode = 0x100; // STATX_INO; the device numbers are always filled in.
        var buffer = new byte[256];
        try
        {
            if (NativeMethods.StatX(fd, string.Empty, EmptyPath, WantInode, buffer) != 0)
            {
                return null;
            }
        }
        catch (EntryPointNotFoundException)
        {
            // A C library older than statx (glibc 2.28): no prefixes, which only costs the journal its levels.
            return null;
        }

        var inode = BitConverter.ToUInt64(buffer, 32);
        ulong major = BitConverter.ToUInt32(buffer, 136);
        ulong minor = BitConverter.ToUInt32(buffer, 140);
        // st_dev as the C library encodes it (makedev), which is what systemd prints into JOURNAL_STREAM.
        var device = ((major & 0xfffff000UL) << 32) | ((major & 0xfffUL) << 8) | ((minor & 0xffffff00UL) << 12) | (minor & 0xffUL);
        return (device, inode);
    }
}
