using System.Globalization;

namespace Distcache.Proxy.Tests.Support;

/// <summary>What <c>/proc</c> tells about another process's sockets and epoll sets (Linux).</summary>
internal static class ProcessSockets
{
    /// <summary>
    /// The inodes of the established TCP sockets in this network namespace whose peer's port is
    /// <paramref name="remotePort"/>. (Connections of earlier tests that reached a server on the same port number
    /// may linger in TIME_WAIT; those have no inode and are left out.)
    /// </summary>
    public static IReadOnlyList<long> TcpInodesConnectedTo(int remotePort)
    {
        // "sl local_address rem_address st ... uid timeout inode", addresses as hex "0100007F:1F90", state 01 established.
        var inodes = new List<long>();
        foreach (string line in File.ReadLines("/proc/net/tcp").Skip(1))
        {
            string[] fields = Fields(line);
            if (fields.Length > 9 && fields[3] == "01"
                && int.Parse(fields[2].AsSpan(fields[2].IndexOf(':') + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture) == remotePort
                && long.Parse(fields[9], CultureInfo.InvariantCulture) is var inode and not 0)
            {
                inodes.Add(inode);
            }
        }

        return inodes;
    }

    /// <summary>The inode of the listening unix socket bound to <paramref name="path"/>.</summary>
    public static long UnixInodeListeningOn(string path)
    {
        // "Num RefCount Protocol Flags Type St Inode Path"; a listening socket has the __SO_ACCEPTCON flag (0x10000).
        foreach (string line in File.ReadLines("/proc/net/unix").Skip(1))
        {
            string[] fields = Fields(line);
            if (fields.Length > 7 && fields[7] == path && (int.Parse(fields[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture) & 0x10000) != 0)
            {
                return long.Parse(fields[6], CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"no unix socket listens on {path}");
    }

    /// <summary>The descriptor number under which process <paramref name="pid"/> holds the socket with inode <paramref name="inode"/>.</summary>
    public static int Descriptor(int pid, long inode) => Descriptor(pid, [inode]);

    /// <summary>The descriptor number under which process <paramref name="pid"/> holds one of the sockets with these inodes.</summary>
    public static int Descriptor(int pid, IReadOnlyList<long> inodes)
    {
        var targets = inodes.Select(inode => "socket:[" + inode.ToString(CultureInfo.InvariantCulture) + "]").ToHashSet(StringComparer.Ordinal);
        foreach (string path in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            if (LinkTarget(path) is { } target && targets.Contains(target))
            {
                return int.Parse(Path.GetFileName(path), CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"process {pid} holds none of the sockets {string.Join(", ", inodes)}");
    }

    /// <summary>For each epoll instance of process <paramref name="pid"/>, the descriptors it watches.</summary>
    public static List<HashSet<int>> EpollSets(int pid)
    {
        var sets = new List<HashSet<int>>();
        foreach (string path in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            if (LinkTarget(path) != "anon_inode:[eventpoll]")
            {
                continue;
            }

            var set = new HashSet<int>();
            foreach (string line in File.ReadLines($"/proc/{pid}/fdinfo/{Path.GetFileName(path)}"))
            {
                string[] fields = Fields(line);
                if (fields.Length >= 2 && fields[0] == "tfd:")
                {
                    set.Add(int.Parse(fields[1], CultureInfo.InvariantCulture));
                }
            }

            sets.Add(set);
        }

        return sets;
    }

    private static string[] Fields(string line) => line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    private static string? LinkTarget(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (IOException)
        {
            // The descriptor was closed while the folder was being listed.
            return null;
        }
    }
}
