using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Distcache.Networking;

/// <summary>
/// An immutable network address in the libnal text syntax of distcache 1.5.1, extended with IPv6.
/// </summary>
/// <remarks>
/// <para>Accepted forms (type prefixes are case-insensitive):</para>
/// <list type="table">
/// <item><term><c>IP:port</c>, <c>IPv4:port</c></term><description>TCP on all IPv4 interfaces; listen only.</description></item>
/// <item><term><c>IP:host:port</c>, <c>IPv4:host:port</c></term><description>TCP on/to a host name or dotted IPv4 address; listen and connect.</description></item>
/// <item><term><c>IPv6:port</c></term><description>TCP on all IPv6 interfaces; listen only.</description></item>
/// <item><term><c>IPv6:[address]:port</c></term><description>TCP on/to an IPv6 address (or a host name resolved to IPv6); brackets are mandatory.</description></item>
/// <item><term><c>UNIX:/path</c></term><description>A unix domain socket; listen and connect.</description></item>
/// <item><term><c>FD:n</c></term><description>An already open socket descriptor: accepted on if it is listening, used as a connection if it is connected.</description></item>
/// </list>
/// <para>As in 1.5.1, <c>IP::port</c> is read as <c>IP:port</c>. Unlike 1.5.1 (which used strtoul and
/// gethostbyname), ports must be plain decimal digits and a numeric host must be a full dotted quad.</para>
/// <para>Port 0 is accepted so that a listener can take an ephemeral port; such an address cannot be connected to.
/// Host names are kept as text and resolved when listening or connecting, never while parsing.</para>
/// </remarks>
public sealed class Address : IEquatable<Address>
{
    private const string ExpectedTypes = "IP, IPv4, IPv6, UNIX or FD";
    private const int MaxHostNameLength = 253;

    private readonly IPAddress? _ipLiteral;
    private readonly string _text;

    private Address(AddressKind kind, string? host, IPAddress? ipLiteral, int port, string? path, int fileDescriptor)
    {
        Kind = kind;
        Host = host;
        _ipLiteral = ipLiteral;
        Port = port;
        Path = path;
        FileDescriptor = fileDescriptor;
        _text = kind switch
        {
            AddressKind.IPv4 => host is null
                ? string.Create(CultureInfo.InvariantCulture, $"IP:{port}")
                : string.Create(CultureInfo.InvariantCulture, $"IP:{host}:{port}"),
            AddressKind.IPv6 => host is null
                ? string.Create(CultureInfo.InvariantCulture, $"IPv6:{port}")
                : string.Create(CultureInfo.InvariantCulture, $"IPv6:[{host}]:{port}"),
            AddressKind.Unix => "UNIX:" + path,
            _ => string.Create(CultureInfo.InvariantCulture, $"FD:{fileDescriptor}"),
        };
    }

    /// <summary>
    /// The longest unix socket path, in UTF-8 bytes, that fits the platform's <c>sockaddr_un.sun_path</c>
    /// with its terminating NUL: 107 on Linux, 103 on the BSDs and macOS.
    /// </summary>
    public static int MaxUnixPathBytes { get; } = OperatingSystem.IsLinux() ? 107 : 103;

    /// <summary>Which transport this address names; decides which of the other properties are meaningful.</summary>
    public AddressKind Kind { get; }

    /// <summary>
    /// For <see cref="AddressKind.IPv4"/> and <see cref="AddressKind.IPv6"/>: the host name or canonical literal address
    /// (without brackets), or null when the address means all interfaces. Null for other kinds.
    /// </summary>
    public string? Host { get; }

    /// <summary>For the IP kinds, the TCP port (0 asks the system for an ephemeral port when listening); 0 for other kinds.</summary>
    public int Port { get; }

    /// <summary>For <see cref="AddressKind.Unix"/>, the socket path exactly as written; null for other kinds.</summary>
    public string? Path { get; }

    /// <summary>For <see cref="AddressKind.FileDescriptor"/>, the descriptor number; -1 for other kinds.</summary>
    public int FileDescriptor { get; }

    /// <summary>True for an IP address that names no host, meaning every interface of its family.</summary>
    public bool IsAnyInterface => Kind is AddressKind.IPv4 or AddressKind.IPv6 && Host is null;

    /// <summary>
    /// Whether <see cref="NetworkListener.Listen"/> accepts this address. Every form can be listened on; for
    /// <c>FD:n</c> whether the descriptor really is a listening socket is only known when it is used.
    /// </summary>
    public bool CanListen => Kind is AddressKind.IPv4 or AddressKind.IPv6 or AddressKind.Unix or AddressKind.FileDescriptor;

    /// <summary>
    /// Whether <see cref="NetworkConnection.ConnectAsync(Address, CancellationToken)"/> accepts this address.
    /// False for addresses naming all interfaces (<c>IP:port</c>, <c>IPv6:port</c>, as in 1.5.1) and for port 0.
    /// </summary>
    public bool CanConnect => CannotConnectReason is null;

    /// <summary>Why connecting to this address is impossible, or null when it is possible.</summary>
    internal string? CannotConnectReason => Kind switch
    {
        AddressKind.IPv4 or AddressKind.IPv6 when Host is null =>
            $"{_text} names all interfaces and can only be listened on; connecting needs a host, as in {(Kind == AddressKind.IPv4 ? "IP:host:port" : "IPv6:[address]:port")}",
        AddressKind.IPv4 or AddressKind.IPv6 when Port == 0 =>
            $"{_text} has port 0, which only means \"any free port\" when listening",
        _ => null,
    };

    /// <summary>Parses <paramref name="text"/> into an address.</summary>
    /// <param name="text">The address text, for example <c>IP:localhost:9001</c> or <c>UNIX:/var/run/dc.sock</c>.</param>
    /// <returns>The parsed address.</returns>
    /// <exception cref="AddressFormatException">
    /// The text is not a valid address; the message quotes it and names the offending part
    /// (an unknown type prefix, a missing or out-of-range port, a missing or too long socket path, ...).
    /// </exception>
    public static Address Parse(string text)
    {
        if (TryParse(text, out var address, out var error))
        {
            return address;
        }

        throw new AddressFormatException(text, error);
    }

    /// <summary>Parses <paramref name="text"/> into an address without throwing.</summary>
    /// <param name="text">The address text; null is treated as empty.</param>
    /// <param name="address">The parsed address when the method returns true; null otherwise.</param>
    /// <returns>True when the text is a valid address.</returns>
    public static bool TryParse([NotNullWhen(true)] string? text, [MaybeNullWhen(false)] out Address address) =>
        TryParse(text, out address, out _);

    /// <summary>Parses <paramref name="text"/> into an address without throwing, explaining any failure.</summary>
    /// <param name="text">The address text; null is treated as empty.</param>
    /// <param name="address">The parsed address when the method returns true; null otherwise.</param>
    /// <param name="error">
    /// When the method returns false, what is wrong, naming the offending part
    /// (for example <c>port 99999 is out of range (1-65535)</c>); empty when it returns true.
    /// </param>
    /// <returns>True when the text is a valid address.</returns>
    public static bool TryParse([NotNullWhen(true)] string? text, [MaybeNullWhen(false)] out Address address, out string error)
    {
        var problem = ParseCore(text, out address);
        error = problem ?? string.Empty;
        return problem is null;
    }

    /// <summary>
    /// Describes an <see cref="EndPoint"/> as an address: an <see cref="IPEndPoint"/> becomes <c>IP:a.b.c.d:port</c>
    /// (or <c>IP:port</c> for the any-address, and IPv4-mapped IPv6 addresses become IPv4),
    /// <c>IPv6:[addr]:port</c>; a <see cref="DnsEndPoint"/> keeps its host name; a named
    /// <see cref="UnixDomainSocketEndPoint"/> becomes <c>UNIX:/path</c>.
    /// </summary>
    /// <param name="endPoint">The end point, typically a socket's local or remote end point.</param>
    /// <returns>The equivalent address.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="endPoint"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// The end point is of another family, or is an unnamed unix socket (which has no path to write down).
    /// </exception>
    public static Address FromEndPoint(EndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        switch (endPoint)
        {
            case IPEndPoint ip:
                var ipAddress = ip.Address.IsIPv4MappedToIPv6 ? ip.Address.MapToIPv4() : ip.Address;
                if (ipAddress.AddressFamily == AddressFamily.InterNetwork)
                {
                    return ipAddress.Equals(IPAddress.Any)
                        ? new Address(AddressKind.IPv4, null, null, ip.Port, null, -1)
                        : new Address(AddressKind.IPv4, ipAddress.ToString(), ipAddress, ip.Port, null, -1);
                }

                return ipAddress.Equals(IPAddress.IPv6Any)
                    ? new Address(AddressKind.IPv6, null, null, ip.Port, null, -1)
                    : new Address(AddressKind.IPv6, ipAddress.ToString(), ipAddress, ip.Port, null, -1);

            case DnsEndPoint dns:
                return new Address(
                    dns.AddressFamily == AddressFamily.InterNetworkV6 ? AddressKind.IPv6 : AddressKind.IPv4,
                    dns.Host,
                    null,
                    dns.Port,
                    null,
                    -1);

            case UnixDomainSocketEndPoint unix:
                var path = unix.ToString();
                if (string.IsNullOrEmpty(path))
                {
                    throw new ArgumentException("an unnamed unix socket end point has no path to describe", nameof(endPoint));
                }

                return new Address(AddressKind.Unix, null, null, 0, path, -1);

            default:
                throw new ArgumentException(
                    $"end points of family {endPoint.AddressFamily} have no address syntax", nameof(endPoint));
        }
    }

    /// <summary>
    /// Converts the address to the end point a <see cref="Socket"/> binds or connects to, without any name resolution:
    /// a host name becomes a <see cref="DnsEndPoint"/> restricted to the address's family, a literal or an
    /// all-interfaces address an <see cref="IPEndPoint"/>, a path a <see cref="UnixDomainSocketEndPoint"/>.
    /// </summary>
    /// <returns>The end point.</returns>
    /// <exception cref="InvalidOperationException">The address is <c>FD:n</c>, which is an open socket rather than an end point.</exception>
    public EndPoint ToEndPoint() => Kind switch
    {
        AddressKind.IPv4 or AddressKind.IPv6 when Host is null =>
            new IPEndPoint(Kind == AddressKind.IPv4 ? IPAddress.Any : IPAddress.IPv6Any, Port),
        AddressKind.IPv4 or AddressKind.IPv6 when _ipLiteral is not null => new IPEndPoint(_ipLiteral, Port),
        AddressKind.IPv4 => new DnsEndPoint(Host!, Port, AddressFamily.InterNetwork),
        AddressKind.IPv6 => new DnsEndPoint(Host!, Port, AddressFamily.InterNetworkV6),
        AddressKind.Unix => new UnixDomainSocketEndPoint(Path!),
        _ => throw new InvalidOperationException($"{_text} is an already open socket, not an end point"),
    };

    /// <summary>The literal IP address of the host, or null when the host is a name (or there is no host).</summary>
    internal IPAddress? IPLiteral => _ipLiteral;

    /// <summary>
    /// The canonical text of the address, which <see cref="Parse"/> turns back into an equal address:
    /// upper-case prefixes (<c>IPv4:</c> becomes <c>IP:</c>), literal addresses in their standard form,
    /// ports and descriptors without leading zeros.
    /// </summary>
    /// <returns>The canonical text.</returns>
    public override string ToString() => _text;

    /// <summary>
    /// Compares by kind, port, path, descriptor and host; host names compare case-insensitively, as DNS does.
    /// </summary>
    /// <param name="other">The address to compare with.</param>
    /// <returns>True when both name the same place.</returns>
    public bool Equals(Address? other) =>
        other is not null
        && Kind == other.Kind
        && Port == other.Port
        && FileDescriptor == other.FileDescriptor
        && string.Equals(Path, other.Path, StringComparison.Ordinal)
        && string.Equals(Host, other.Host, StringComparison.OrdinalIgnoreCase);

    /// <inheritdoc cref="Equals(Address?)"/>
    public override bool Equals(object? obj) => Equals(obj as Address);

    /// <summary>A hash consistent with <see cref="Equals(Address?)"/>.</summary>
    /// <returns>The hash code.</returns>
    public override int GetHashCode() => HashCode.Combine(
        Kind,
        Port,
        FileDescriptor,
        Path is null ? 0 : StringComparer.Ordinal.GetHashCode(Path),
        Host is null ? 0 : StringComparer.OrdinalIgnoreCase.GetHashCode(Host));

    private static string? ParseCore(string? text, out Address? address)
    {
        address = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            return "address is empty";
        }

        if (char.IsWhiteSpace(text[0]) || char.IsWhiteSpace(text[^1]))
        {
            // Trimming silently would make "UNIX:/tmp/x " and "UNIX:/tmp/x" the same socket; say so instead.
            return "address has leading or trailing white space";
        }

        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            return $"missing address type in '{text}' (expected a prefix {ExpectedTypes} followed by ':')";
        }

        var prefix = text[..colon];
        var rest = text[(colon + 1)..];
        if (prefix.Length == 0)
        {
            return $"missing address type before ':' (expected {ExpectedTypes})";
        }

        if (prefix.Equals("IP", StringComparison.OrdinalIgnoreCase) || prefix.Equals("IPv4", StringComparison.OrdinalIgnoreCase))
        {
            return ParseIPv4(prefix, rest, out address);
        }

        if (prefix.Equals("IPv6", StringComparison.OrdinalIgnoreCase))
        {
            return ParseIPv6(prefix, rest, out address);
        }

        if (prefix.Equals("UNIX", StringComparison.OrdinalIgnoreCase))
        {
            return ParseUnix(prefix, rest, out address);
        }

        if (prefix.Equals("FD", StringComparison.OrdinalIgnoreCase))
        {
            return ParseFileDescriptor(prefix, rest, out address);
        }

        return $"unknown address type '{prefix}' (expected {ExpectedTypes})";
    }

    private static string? ParseIPv4(string prefix, string rest, out Address? address)
    {
        address = null;
        if (rest.Length == 0)
        {
            return $"{prefix}: needs a port ({prefix}:port or {prefix}:host:port)";
        }

        if (rest[0] == '[')
        {
            return $"bracketed addresses are IPv6 and need the IPv6: prefix, as in IPv6:{rest}";
        }

        string? host = null;
        string portText;
        var colon = rest.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            portText = rest;
        }
        else if (colon == 0)
        {
            // 1.5.1 reads "IP::port" as "IP:port" (an empty host means all interfaces); keep accepting it.
            portText = rest[1..];
        }
        else
        {
            host = rest[..colon];
            portText = rest[(colon + 1)..];
        }

        if (portText.Contains(':', StringComparison.Ordinal))
        {
            return $"too many ':' in '{prefix}:{rest}' (expected {prefix}:port or {prefix}:host:port; IPv6 addresses are written IPv6:[address]:port)";
        }

        IPAddress? literal = null;
        if (host is not null)
        {
            var hostError = ValidateIPv4Host(host, out literal);
            if (hostError is not null)
            {
                return hostError;
            }
        }

        if (portText.Length == 0)
        {
            return host is null
                ? $"{prefix}: needs a port ({prefix}:port or {prefix}:host:port)"
                : $"{prefix}: needs a port after '{host}:'";
        }

        if (host is null && !IsAllDigits(portText))
        {
            // "IP:localhost" or "IP:10.0.0.1" is far more likely a forgotten port than a bad one.
            return $"port '{portText}' is not a number (a host needs a port too, as in {prefix}:{portText}:port)";
        }

        var portError = ParsePort(portText, out var port);
        if (portError is not null)
        {
            return portError;
        }

        address = new Address(AddressKind.IPv4, literal?.ToString() ?? host, literal, port, null, -1);
        return null;
    }

    private static string? ParseIPv6(string prefix, string rest, out Address? address)
    {
        address = null;
        if (rest.Length == 0)
        {
            return $"{prefix}: needs a port ({prefix}:port or {prefix}:[address]:port)";
        }

        if (rest[0] != '[')
        {
            if (rest.Contains(':', StringComparison.Ordinal))
            {
                return $"{prefix}: the address must be in brackets, as in {prefix}:[::1]:port";
            }

            var anyPortError = ParsePort(rest, out var anyPort);
            if (anyPortError is not null)
            {
                return anyPortError;
            }

            address = new Address(AddressKind.IPv6, null, null, anyPort, null, -1);
            return null;
        }

        var close = rest.IndexOf(']', StringComparison.Ordinal);
        if (close < 0)
        {
            return $"{prefix}: missing ']' after '{rest}'";
        }

        var inner = rest[1..close];
        var after = rest[(close + 1)..];
        if (inner.Length == 0)
        {
            return $"{prefix}: no address between '[' and ']'";
        }

        string host;
        IPAddress? literal = null;
        if (IPAddress.TryParse(inner, out var parsed) && parsed.AddressFamily == AddressFamily.InterNetworkV6)
        {
            literal = parsed;
            host = parsed.ToString();
        }
        else if (IsDottedNumeric(inner))
        {
            return $"'{inner}' is an IPv4 address; write it as IP:{inner}:port";
        }
        else if (inner.Contains(':', StringComparison.Ordinal) || inner.Contains('%', StringComparison.Ordinal))
        {
            return $"'{inner}' is not a valid IPv6 address";
        }
        else
        {
            var nameError = ValidateHostName(inner);
            if (nameError is not null)
            {
                return nameError;
            }

            host = inner;
        }

        if (after.Length == 0 || after == ":")
        {
            return $"{prefix}: needs a port after '[{inner}]:'";
        }

        if (after[0] != ':')
        {
            return $"{prefix}: expected ':' after '[{inner}]' but found '{after}'";
        }

        var portText = after[1..];
        if (portText.Contains(':', StringComparison.Ordinal))
        {
            return $"too many ':' after '[{inner}]' in '{prefix}:{rest}'";
        }

        var portError = ParsePort(portText, out var port);
        if (portError is not null)
        {
            return portError;
        }

        address = new Address(AddressKind.IPv6, host, literal, port, null, -1);
        return null;
    }

    private static string? ParseUnix(string prefix, string path, out Address? address)
    {
        address = null;
        if (path.Length == 0)
        {
            return $"{prefix}: needs a socket path";
        }

        if (path.Contains('\0', StringComparison.Ordinal))
        {
            return $"{prefix}: socket path contains a NUL character";
        }

        var bytes = Encoding.UTF8.GetByteCount(path);
        if (bytes > MaxUnixPathBytes)
        {
            return $"{prefix}: socket path is {bytes} bytes long; the limit is {MaxUnixPathBytes}";
        }

        address = new Address(AddressKind.Unix, null, null, 0, path, -1);
        return null;
    }

    private static string? ParseFileDescriptor(string prefix, string rest, out Address? address)
    {
        address = null;
        if (rest.Length == 0)
        {
            return $"{prefix}: needs a file descriptor number";
        }

        if (!IsAllDigits(rest))
        {
            return $"file descriptor '{rest}' is not a number";
        }

        if (!int.TryParse(rest, NumberStyles.None, CultureInfo.InvariantCulture, out var fd))
        {
            return $"file descriptor {rest} is out of range (0-{int.MaxValue})";
        }

        address = new Address(AddressKind.FileDescriptor, null, null, 0, null, fd);
        return null;
    }

    private static string? ParsePort(string text, out int port)
    {
        port = 0;
        if (!IsAllDigits(text))
        {
            return $"port '{text}' is not a number";
        }

        // 1.5.1 used strtoul, which also took signs and leading blanks; only plain digits are accepted here.
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port > 65535)
        {
            port = 0;
            return $"port {text} is out of range (1-65535)";
        }

        return null;
    }

    private static string? ValidateIPv4Host(string host, out IPAddress? literal)
    {
        literal = null;
        if (IsDottedNumeric(host))
        {
            // Only the dotted quad: inet_aton's short forms ("127.1", "2130706433") read as typos far more often than on purpose.
            if (host.Split('.').Length == 4
                && IPAddress.TryParse(host, out var parsed)
                && parsed.AddressFamily == AddressFamily.InterNetwork)
            {
                literal = parsed;
                return null;
            }

            return $"'{host}' is not a valid IPv4 address";
        }

        return ValidateHostName(host);
    }

    private static string? ValidateHostName(string host)
    {
        if (host.Length > MaxHostNameLength)
        {
            return $"host name '{host[..16]}...' is {host.Length} characters long; the limit is {MaxHostNameLength}";
        }

        foreach (var c in host)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not '-' and not '.' and not '_')
            {
                return $"host '{host}' contains '{c}', which cannot appear in a host name";
            }
        }

        return null;
    }

    private static bool IsDottedNumeric(string text)
    {
        foreach (var c in text)
        {
            if (!char.IsAsciiDigit(c) && c != '.')
            {
                return false;
            }
        }

        return text.Length > 0;
    }

    private static bool IsAllDigits(string text)
    {
        foreach (var c in text)
        {
            if (!char.IsAsciiDigit(c))
            {
                return false;
            }
        }

        return text.Length > 0;
    }
}
