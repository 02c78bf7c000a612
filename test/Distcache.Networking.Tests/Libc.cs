using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

// Every test here uses unix sockets, libc or unix file modes.
[assembly: UnsupportedOSPlatform("windows")]

namespace Distcache.Networking.Tests;

/// <summary>The few system calls and commands the tests need to set up descriptors and inspect socket files.</summary>
internal static class Libc
{
    [DllImport("libc", EntryPoint = "dup", SetLastError = true)]
    private static extern int DupNative(int fd);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    private static extern int CloseNative(int fd);

    [DllImport("libc", EntryPoint = "geteuid")]
    public static extern uint GetEffectiveUserId();

    [DllImport("libc", EntryPoint = "getegid")]
    public static extern uint GetEffectiveGroupId();

    [DllImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static extern int Fcntl(int fd, int command);

    /// <summary>A new descriptor for the same open socket or file, so the test's own handle keeps working.</summary>
    public static int Dup(SafeHandle handle)
    {
        var fd = DupNative((int)handle.DangerousGetHandle());
        Assert.True(fd >= 0, $"dup failed: {Marshal.GetLastPInvokeError()}");
        return fd;
    }

    /// <summary>Closes a descriptor the test made; an error only means it was already closed.</summary>
    public static void Close(int fd) => _ = CloseNative(fd);

    /// <summary>Whether a descriptor number is open (F_GETFD succeeds).</summary>
    public static bool IsOpen(int fd) => Fcntl(fd, 1) >= 0;

    /// <summary>Owner and group ids of a file, from stat(1).</summary>
    public static (uint Uid, uint Gid) OwnerOf(string path)
    {
        var info = new ProcessStartInfo("stat", ["-c", "%u %g", path]) { RedirectStandardOutput = true };
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEnd().Trim().Split(' ');
        Assert.True(process.WaitForExit(10_000));
        return (uint.Parse(output[0], CultureInfo.InvariantCulture), uint.Parse(output[1], CultureInfo.InvariantCulture));
    }

    /// <summary>The name of an account in /etc/passwd or /etc/group with the given id, or null.</summary>
    public static string? NameOf(string databaseFile, uint id)
    {
        foreach (var line in File.ReadLines(databaseFile))
        {
            var fields = line.Split(':');
            if (fields.Length > 2 && fields[2] == id.ToString(CultureInfo.InvariantCulture))
            {
                return fields[0];
            }
        }

        return null;
    }
}
