using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Distcache.Networking;

/// <summary>The user and group ids allowed to connect to a unix socket, checked with SO_PEERCRED.</summary>
internal sealed class PeerCredentialPolicy
{
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;

    // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: three 32-bit fields on every Linux architecture.
    private const int UcredSize = 12;

    private readonly HashSet<uint> _uids;
    private readonly HashSet<uint> _gids;

    private PeerCredentialPolicy(IEnumerable<uint> uids, IEnumerable<uint> gids)
    {
        _uids = [.. uids];
        _gids = [.. gids];
    }

    /// <summary>The policy of the options, or null when they allow everyone.</summary>
    /// <exception cref="ArgumentException">Allow-lists were given for an address that is not <c>UNIX:</c>.</exception>
    /// <exception cref="PlatformNotSupportedException">Allow-lists were given on a platform other than Linux.</exception>
    public static PeerCredentialPolicy? From(ListenerOptions options, Address address)
    {
        if (options.AllowedPeerUserIds is null && options.AllowedPeerGroupIds is null)
        {
            return null;
        }

        if (address.Kind != AddressKind.Unix)
        {
            throw new ArgumentException($"allowed peer users and groups only apply to UNIX: addresses, not to {address}", nameof(options));
        }

        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("checking the peer's user and group (SO_PEERCRED) needs Linux");
        }

        return new PeerCredentialPolicy(options.AllowedPeerUserIds ?? [], options.AllowedPeerGroupIds ?? []);
    }

    /// <summary>Null if the peer of <paramref name="accepted"/> may stay, otherwise why not (for the log).</summary>
    public string? Refusal(Socket accepted)
    {
        Span<byte> credentials = stackalloc byte[UcredSize];
        int length;
        try
        {
            length = accepted.GetRawSocketOption(SolSocket, SoPeerCred, credentials);
        }
        catch (SocketException e)
        {
            return $"its credentials cannot be read ({e.SocketErrorCode})";
        }

        if (length < UcredSize)
        {
            return "its credentials cannot be read";
        }

        // The kernel fills it in the machine's own byte order.
        int pid = MemoryMarshal.Read<int>(credentials);
        uint uid = MemoryMarshal.Read<uint>(credentials[4..]);
        uint gid = MemoryMarshal.Read<uint>(credentials[8..]);

        return _uids.Contains(uid) || _gids.Contains(gid)
            ? null
            : string.Create(CultureInfo.InvariantCulture, $"pid {pid}, uid {uid}, gid {gid} is not in the allowed users or groups");
    }
}
