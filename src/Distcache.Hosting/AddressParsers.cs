using System.Diagnostics.CodeAnalysis;
using Distcache.Networking;

namespace Distcache.Hosting;

/// <summary>
/// <see cref="ValueParser{T}"/>s for the tools' address options (<c>-listen</c>, <c>-server</c>, <c>-connect</c>).
/// The reason for a refusal quotes the address and says what is wrong with it, from
/// <see cref="Address.TryParse(string?, out Address, out string)"/>.
/// </summary>
public static class AddressParsers
{
    /// <summary>Accepts an address that can be listened on (IP:port, IP:host:port, IPv6:..., UNIX:/path, FD:n).</summary>
    /// <param name="text">The given text.</param>
    /// <param name="value">The address.</param>
    /// <param name="reason">Why the text is refused.</param>
    /// <returns>True when the text is an address to listen on.</returns>
    public static bool Listen(string text, [MaybeNullWhen(false)] out Address value, [NotNullWhen(false)] out string? reason)
    {
        if (!TryParse(text, out value, out reason))
        {
            return false;
        }

        if (!value.CanListen)
        {
            reason = $"'{text}' cannot be listened on";
            value = null;
            return false;
        }

        return true;
    }

    /// <summary>Accepts an address that can be connected to (IP:host:port, IPv6:[addr]:port, UNIX:/path, FD:n).</summary>
    /// <param name="text">The given text.</param>
    /// <param name="value">The address.</param>
    /// <param name="reason">Why the text is refused.</param>
    /// <returns>True when the text is an address to connect to.</returns>
    public static bool Connect(string text, [MaybeNullWhen(false)] out Address value, [NotNullWhen(false)] out string? reason)
    {
        if (!TryParse(text, out value, out reason))
        {
            return false;
        }

        if (value.IsAnyInterface)
        {
            reason = $"'{text}' names no host, so it can only be listened on; connecting needs one, as in {(value.Kind == AddressKind.IPv6 ? "IPv6:[address]:port" : "IP:host:port")}";
            value = null;
            return false;
        }

        if (!value.CanConnect)
        {
            reason = $"'{text}' has port 0, which only means \"any free port\" when listening";
            value = null;
            return false;
        }

        return true;
    }

    /// <summary>Accepts an address the <c>-metrics</c> endpoint can listen on: TCP only (IP:port, IP:host:port,
    /// IPv6:[addr]:port), since it speaks HTTP to Prometheus.</summary>
    /// <param name="text">The given text.</param>
    /// <param name="value">The address.</param>
    /// <param name="reason">Why the text is refused.</param>
    /// <returns>True when the text is a TCP address to listen on.</returns>
    public static bool MetricsListen(string text, [MaybeNullWhen(false)] out Address value, [NotNullWhen(false)] out string? reason)
    {
        if (!Listen(text, out value, out reason))
        {
            return false;
        }

        if (value.Kind is not (AddressKind.IPv4 or AddressKind.IPv6))
        {
            reason = $"'{text}' is not a TCP address: -metrics serves HTTP over TCP, so it needs IP:port, IP:host:port or IPv6:[addr]:port";
            value = null;
            return false;
        }

        return true;
    }

    /// <summary>Accepts the address of a running <c>-metrics</c> endpoint: TCP with a host (IP:host:port, IPv6:[addr]:port).</summary>
    /// <param name="text">The given text.</param>
    /// <param name="value">The address.</param>
    /// <param name="reason">Why the text is refused.</param>
    /// <returns>True when the text is a TCP address to connect to.</returns>
    public static bool MetricsConnect(string text, [MaybeNullWhen(false)] out Address value, [NotNullWhen(false)] out string? reason)
    {
        if (!Connect(text, out value, out reason))
        {
            return false;
        }

        if (value.Kind is not (AddressKind.IPv4 or AddressKind.IPv6))
        {
            reason = $"'{text}' is not a TCP address: -stats reads a -metrics endpoint over TCP, so it needs IP:host:port or IPv6:[addr]:port";
            value = null;
            return false;
        }

        return true;
    }

    private static bool TryParse(string text, [NotNullWhen(true)] out Address? value, [NotNullWhen(false)] out string? reason)
    {
        if (Address.TryParse(text, out value, out string error))
        {
            reason = null;
            return true;
        }

        reason = $"'{text}' is not an address: {error}";
        return false;
    }
}
