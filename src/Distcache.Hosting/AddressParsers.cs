using Distcache.Networking;

namespace Distcache.Hosting;

/// <summary>
/// <see cref="ValueParser{T}"/>s for the tools' address options (<c>-listen</c>, <c>-server</c>, <c>-connect</c>).
/// </summary>
/// <remarks>
/// A bad address is reported with 1.5.1's <c>Error, -X given an invalid argument</c>, which scripts match on; the
/// reason (from <see cref="Address.TryParse(string?, out Address, out string)"/>) is written to stderr first, as an
/// <c>Info,</c> line, so that a person also learns what is wrong.
/// </remarks>
public static class AddressParsers
{
    /// <summary>Accepts an address that can be listened on (IP:port, IP:host:port, IPv6:..., UNIX:/path, FD:n).</summary>
    public static bool Listen(string text, out Address value) =>
        TryParse(text, static a => a.CanListen, "cannot listen on {0}", out value);

    /// <summary>Accepts an address that can be connected to (IP:host:port, IPv6:[addr]:port, UNIX:/path, FD:n).</summary>
    public static bool Connect(string text, out Address value) =>
        TryParse(text, static a => a.CanConnect, "cannot connect to {0}: it names no host (use IP:host:port or UNIX:/path)", out value);

    private static bool TryParse(string text, Func<Address, bool> usable, string refusal, out Address value)
    {
        if (Address.TryParse(text, out Address? address, out string error) && usable(address))
        {
            value = address;
            return true;
        }

        Console.Error.WriteLine("Info, " + (address is null ? error : string.Format(System.Globalization.CultureInfo.InvariantCulture, refusal, text)));
        value = null!;
        return false;
    }
}
