using System.Globalization;

namespace Distcache.Testing;

/// <summary>A process as /proc shows it: its id and when it started, so that a recycled id is not taken for it.</summary>
/// <param name="Pid">The process id.</param>
/// <param name="StartTime">Its start time (clock ticks after boot, /proc/PID/stat field 22).</param>
public readonly record struct ProcessInstance(int Pid, ulong StartTime);

/// <summary>The children of a process (a server's workers), read from /proc (Linux).</summary>
public static class ProcessTree
{
    /// <summary>The processes whose parent is <paramref name="parent"/> now.</summary>
    /// <param name="parent">The parent's id.</param>
    /// <returns>Its children; zombies included.</returns>
    public static IReadOnlyList<ProcessInstance> Children(int parent)
    {
        var children = new List<ProcessInstance>();
        foreach (string entry in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)
                && Stat(pid) is { } fields
                && int.Parse(fields[1], CultureInfo.InvariantCulture) == parent)
            {
                children.Add(new ProcessInstance(pid, ulong.Parse(fields[19], CultureInfo.InvariantCulture)));
            }
        }

        return children;
    }

    /// <summary>Whether the process still runs: it exists, is the same one (same start time) and is not a zombie.</summary>
    /// <param name="process">The process.</param>
    /// <returns>True while it runs.</returns>
    public static bool IsRunning(ProcessInstance process) =>
        Stat(process.Pid) is { } fields
        && fields[0] != "Z"
        && ulong.Parse(fields[19], CultureInfo.InvariantCulture) == process.StartTime;

    /// <summary>The fields of /proc/PID/stat after the command name (state first), or null if it is gone.</summary>
    private static string[]? Stat(int pid)
    {
        try
        {
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
