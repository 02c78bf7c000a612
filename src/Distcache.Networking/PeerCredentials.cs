using System.Diagnostics.CodeAnalysis;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Distcache.Networking;

/// <summary>
/// Who is at the other end of a unix socket, as the kernel recorded it when the connection was made
/// (<c>SO_PEERCRED</c>): the process that connected, and its effective user and group.
/// </summary>
/// <param name="ProcessId">The peer process's id, as this process's pid namespace sees it.</param>
/// <param name="UserId">The peer's effective user id.</param>
/// <param name="GroupId">The peer's effective group id; its supplementary groups are not reported.</param>
public readonly record struct PeerCredentials(int ProcessId, uint UserId, uint GroupId)
{
    // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: three 32-bit fields on every Linux architecture.
    private const int UcredSize = 12;

    /// <summary>Reads the credentials of a connected unix socket's peer (Linux only).</summary>
    /// <param name="socket">The connected socket.</param>
    /// <param name="credentials">The peer's credentials when read.</param>
    /// <param name="problem">Why they could not be read, for the log.</param>
    /// <returns>True when read.</returns>
    internal static bool TryRead(Socket socket, out PeerCredentials credentials, [NotNullWhen(false)] out string? problem)
    {
        credentials = default;
        Span<byte> buffer = stackalloc byte[UcredSize];
        int length;
        try
        {
            length = socket.GetRawSocketOption(NativeMethods.SolSocket, NativeMethods.SoPeerCred, buffer);
        }
        catch (SocketException e)
        {
            problem = $"its credentials cannot be read ({e.SocketErrorCode})";
            return false;
        }
        catch (ObjectDisposedException)
        {
            problem = "its connection is closed";
            return false;
        }

        return Decode(buffer, length, out credentials, out problem);
    }

    /// <summary>Reads the credentials of a connected unix socket's peer from its descriptor (Linux only).</summary>
    /// <param name="handle">The connected socket's descriptor.</param>
    /// <param name="credentials">The peer's credentials when read.</param>
    /// <param name="problem">Why they could not be read, for the log.</param>
    /// <returns>True when read.</returns>
    internal static bool TryRead(SafeHandle handle, out PeerCredentials credentials, [NotNullWhen(false)] out string? problem)
    {
        credentials = default;
        Span<byte> buffer = stackalloc byte[UcredSize];
        int length = UcredSize;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            if (NativeMethods.GetSocketOption(handle.DangerousGetHandle(), NativeMethods.SolSocket, NativeMethods.SoPeerCred, ref MemoryMarshal.GetReference(buffer), ref length) != 0)
            {
                problem = $"its credentials cannot be read ({NativeMethods.Describe(Marshal.GetLastPInvokeError())})";
                return false;
            }
        }
        catch (ObjectDisposedException)
        {
            problem = "its connection is closed";
            return false;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }

        return Decode(buffer, length, out credentials, out problem);
    }

    private static bool Decode(ReadOnlySpan<byte> buffer, int length, out PeerCredentials credentials, [NotNullWhen(false)] out string? problem)
    {
        credentials = default;
        if (length < UcredSize)
        {
            problem = "its credentials cannot be read";
            return false;
        }

        // The kernel fills it in the machine's own byte order.
        credentials = new PeerCredentials(MemoryMarshal.Read<int>(buffer), MemoryMarshal.Read<uint>(buffer[4..]), MemoryMarshal.Read<uint>(buffer[8..]));
        problem = null;
        return true;
    }
}
