using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using Distcache.Networking;

namespace Distcache.Hosting;

/// <summary>What the tools share for their security options: <c>-allow-uid</c>/<c>-allow-gid</c> lists, the names of
/// the <c>-tls-*</c> flags in error messages, and the test for an address that other hosts can reach.</summary>
public static class SecurityParsers
{
    /// <summary>Parses a comma-separated list of user names or numeric user ids (<c>www-data,1001</c>).</summary>
    /// <param name="text">The list.</param>
    /// <param name="value">The user ids.</param>
    /// <param name="reason">Why the list is refused.</param>
    /// <returns>False if the list is empty, has an empty item, or names an unknown user.</returns>
    public static bool UserIdList(string text, [MaybeNullWhen(false)] out uint[] value, [NotNullWhen(false)] out string? reason) =>
        IdList(text, isGroup: false, out value, out reason);

    /// <summary>Parses a comma-separated list of group names or numeric group ids.</summary>
    /// <param name="text">The list.</param>
    /// <param name="value">The group ids.</param>
    /// <param name="reason">Why the list is refused.</param>
    /// <returns>False if the list is empty, has an empty item, or names an unknown group.</returns>
    public static bool GroupIdList(string text, [MaybeNullWhen(false)] out uint[] value, [NotNullWhen(false)] out string? reason) =>
        IdList(text, isGroup: true, out value, out reason);

    /// <summary>The flag a TLS file came from, for start-up errors (<c>Error, -tls-cert FILE: ...</c>).</summary>
    /// <param name="role">Which file failed.</param>
    /// <returns><c>-tls-cert</c>, <c>-tls-key</c> or <c>-tls-ca</c>.</returns>
    public static string FlagOf(TlsFileRole role) => role switch
    {
        TlsFileRole.Key => "-tls-key",
        TlsFileRole.CertificateAuthority => "-tls-ca",
        _ => "-tls-cert",
    };

    /// <summary>
    /// The client-side TLS settings of a tool's <c>-tls-ca</c>, <c>-tls-cert</c>, <c>-tls-key</c> and <c>-tls-name</c>
    /// flags (dc_client's link to its servers, dc_ticketkeys' link to the cache), or null when none is given.
    /// </summary>
    /// <param name="ca">-tls-ca: the CA the peer's certificate must chain to.</param>
    /// <param name="certificate">-tls-cert: this client's certificate, if it presents one.</param>
    /// <param name="key">-tls-key: its private key.</param>
    /// <param name="name">-tls-name: the name every peer's certificate must carry, instead of its address's host.</param>
    /// <param name="peers">The addresses the tool connects to.</param>
    /// <param name="peer">What the peer is called in messages ("server", "cache").</param>
    /// <returns>The settings, with the files loaded; null when TLS is not asked for.</returns>
    /// <exception cref="ArgumentException">The flags do not fit together; the message names them.</exception>
    /// <exception cref="TlsConfigurationException">A file is unusable.</exception>
    public static TlsClientSettings? ClientTls(string? ca, string? certificate, string? key, string? name, IEnumerable<Address> peers, string peer)
    {
        ArgumentNullException.ThrowIfNull(peers);
        if (ca is null)
        {
            return certificate is null && key is null && name is null
                ? null
                : throw new ArgumentException($"{(certificate is not null ? "-tls-cert" : key is not null ? "-tls-key" : "-tls-name")} needs -tls-ca, the CA that issued the {peer}'s certificate");
        }

        if (key is not null && certificate is null)
        {
            throw new ArgumentException("-tls-key needs -tls-cert, the certificate it belongs to");
        }

        // Each peer's certificate is checked against its own host name, unless -tls-name names one for all.
        if (name is null && peers.FirstOrDefault(p => p.Host is null) is { } hostless)
        {
            throw new ArgumentException($"-tls-name is needed with TLS to {hostless}: it has no host name to check the {peer}'s certificate against");
        }

        return new TlsClientSettings(ca, certificate, key, name);
    }

    /// <summary>
    /// True when <paramref name="address"/> can be reached from other hosts: a TCP address on all interfaces, on a
    /// non-loopback IP, or on a host name other than <c>localhost</c>. Unix sockets and descriptors are local.
    /// </summary>
    /// <param name="address">A listening or connecting address (for a listener, preferably the bound one).</param>
    /// <returns>Whether traffic on it can cross a network.</returns>
    public static bool IsReachableFromOtherHosts(Address address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.Kind is not (AddressKind.IPv4 or AddressKind.IPv6))
        {
            return false;
        }

        if (address.IsAnyInterface)
        {
            return true;
        }

        if (IPAddress.TryParse(address.Host!.Trim('[', ']'), out IPAddress? ip))
        {
            return !IPAddress.IsLoopback(ip);
        }

        return !string.Equals(address.Host, "localhost", StringComparison.OrdinalIgnoreCase);
    }

    private static bool IdList(string text, bool isGroup, [MaybeNullWhen(false)] out uint[] value, [NotNullWhen(false)] out string? reason)
    {
        string kind = isGroup ? "group" : "user";
        value = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            reason = $"'{text}' names no {kind}: give {kind} names or ids, separated by commas";
            return false;
        }

        var ids = new List<uint>();
        foreach (string part in text.Split(','))
        {
            string item = part.Trim();
            if (item.Length == 0)
            {
                reason = $"'{text}' has an empty item: give {kind} names or ids, separated by single commas";
                return false;
            }

            if (item.All(char.IsAsciiDigit))
            {
                // (uid_t)-1 means "no change" to chown and matches no process.
                if (!uint.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out uint id) || id == uint.MaxValue)
                {
                    reason = string.Create(CultureInfo.InvariantCulture, $"'{item}' is not a {kind} id (0 to {uint.MaxValue - 1})");
                    return false;
                }

                ids.Add(id);
                continue;
            }

            if (isGroup)
            {
                if (Networking.NativeMethods.GetGroupByName(item, out uint gid, out _) != LookupStatus.Found)
                {
                    reason = $"'{item}' is not a group on this system";
                    return false;
                }

                ids.Add(gid);
            }
            else
            {
                if (Networking.NativeMethods.GetUserByName(item, out PasswdEntry entry, out _) != LookupStatus.Found)
                {
                    reason = $"'{item}' is not a user on this system";
                    return false;
                }

                ids.Add(entry.UserId);
            }
        }

        value = [.. ids];
        reason = null;
        return true;
    }
}
