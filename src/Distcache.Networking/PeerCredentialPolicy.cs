using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Distcache.Networking;

/// <summary>The user and group ids allowed to connect to a unix socket, checked with SO_PEERCRED.</summary>
internal sealed class PeerCredentialPolicy
{
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

    /// <summary>
    /// Null if the peer of <paramref name="accepted"/> may stay, otherwise why not (for the log).
    /// <paramref name="credentials"/> are the peer's, when they could be read, for the connection to keep.
    /// </summary>
    public string? Refusal(Socket accepted, out PeerCredentials? credentials) =>
        Judge(PeerCredentials.TryRead(accepted, out PeerCredentials peer, out string? problem), peer, problem, out credentials);

    /// <inheritdoc cref="Refusal(Socket, out PeerCredentials?)"/>
    public string? Refusal(SafeHandle accepted, out PeerCredentials? credentials) =>
        Judge(PeerCredentials.TryRead(accepted, out PeerCredentials peer, out string? problem), peer, problem, out credentials);

    private string? Judge(bool read, PeerCredentials peer, string? problem, out PeerCredentials? credentials)
    {
        if (!read)
        {
            credentials = null;
            return problem;
        }

        credentials = peer;
        return _uids.Contains(peer.UserId) || _gids.Contains(peer.GroupId)
            ? null
            : string.Create(CultureInfo.InvariantCulture, $"pid {peer.ProcessId}, uid {peer.UserId}, gid {peer.GroupId} is not in the allowed users or groups");
    }
}
