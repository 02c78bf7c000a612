using System.Net;
using System.Net.Sockets;

namespace Distcache.Networking.Tests;

public class AddressParseTests
{
    public static TheoryData<string, AddressKind, string?, int, bool, bool, string> ValidIPAddresses => new()
    {
        { "IP:9001", AddressKind.IPv4, null, 9001, true, false, "IP:9001" },
        { "IPv4:9001", AddressKind.IPv4, null, 9001, true, false, "IP:9001" },
        { "ip:9001", AddressKind.IPv4, null, 9001, true, false, "IP:9001" },
        { "ipV4:1", AddressKind.IPv4, null, 1, true, false, "IP:1" },
        { "IP::9001", AddressKind.IPv4, null, 9001, true, false, "IP:9001" },
        { "IP:0", AddressKind.IPv4, null, 0, true, false, "IP:0" },
        { "IP:65535", AddressKind.IPv4, null, 65535, true, false, "IP:65535" },
        { "IP:localhost:9001", AddressKind.IPv4, "localhost", 9001, true, true, "IP:localhost:9001" },
        { "IPv4:127.0.0.1:1", AddressKind.IPv4, "127.0.0.1", 1, true, true, "IP:127.0.0.1:1" },
        { "IP:cache-1.example.com:65535", AddressKind.IPv4, "cache-1.example.com", 65535, true, true, "IP:cache-1.example.com:65535" },
        { "IP:my_host:80", AddressKind.IPv4, "my_host", 80, true, true, "IP:my_host:80" },
        { "IP:127.0.0.1:0", AddressKind.IPv4, "127.0.0.1", 0, true, false, "IP:127.0.0.1:0" },
        { "IP:127.0.0.1:00080", AddressKind.IPv4, "127.0.0.1", 80, true, true, "IP:127.0.0.1:80" },
        { "IPv6:9001", AddressKind.IPv6, null, 9001, true, false, "IPv6:9001" },
        { "ipv6:[::1]:9001", AddressKind.IPv6, "::1", 9001, true, true, "IPv6:[::1]:9001" },
        { "IPv6:[0:0:0:0:0:0:0:1]:80", AddressKind.IPv6, "::1", 80, true, true, "IPv6:[::1]:80" },
        { "IPv6:[2001:DB8::1]:80", AddressKind.IPv6, "2001:db8::1", 80, true, true, "IPv6:[2001:db8::1]:80" },
        { "IPv6:[::ffff:10.0.0.1]:80", AddressKind.IPv6, "::ffff:10.0.0.1", 80, true, true, "IPv6:[::ffff:10.0.0.1]:80" },
        { "IPv6:[localhost]:80", AddressKind.IPv6, "localhost", 80, true, true, "IPv6:[localhost]:80" },
        { "IPv6:[::1]:0", AddressKind.IPv6, "::1", 0, true, false, "IPv6:[::1]:0" },
        { "IPv6:[fe80::1%1]:80", AddressKind.IPv6, "fe80::1%1", 80, true, true, "IPv6:[fe80::1%1]:80" },
    };

    [Theory]
    [MemberData(nameof(ValidIPAddresses))]
    public void Parses_IP_forms(string text, AddressKind kind, string? host, int port, bool canListen, bool canConnect, string canonical)
    {
        var address = Address.Parse(text);

        Assert.Equal(kind, address.Kind);
        Assert.Equal(host, address.Host);
        Assert.Equal(port, address.Port);
        Assert.Equal(host is null, address.IsAnyInterface);
        Assert.Null(address.Path);
        Assert.Equal(-1, address.FileDescriptor);
        Assert.Equal(canListen, address.CanListen);
        Assert.Equal(canConnect, address.CanConnect);
        Assert.Equal(canonical, address.ToString());
    }

    [Theory]
    [InlineData("UNIX:/tmp/dc.sock", "/tmp/dc.sock", "UNIX:/tmp/dc.sock")]
    [InlineData("unix:relative.sock", "relative.sock", "UNIX:relative.sock")]
    [InlineData("Unix:/dir with space/s:1", "/dir with space/s:1", "UNIX:/dir with space/s:1")]
    public void Parses_unix_paths(string text, string path, string canonical)
    {
        var address = Address.Parse(text);

        Assert.Equal(AddressKind.Unix, address.Kind);
        Assert.Equal(path, address.Path);
        Assert.Null(address.Host);
        Assert.Equal(0, address.Port);
        Assert.True(address.CanListen);
        Assert.True(address.CanConnect);
        Assert.Equal(canonical, address.ToString());
    }

    [Fact]
    public void Unix_path_may_be_exactly_at_the_limit()
    {
        var path = "/" + new string('a', Address.MaxUnixPathBytes - 1);

        Assert.Equal(path, Address.Parse("UNIX:" + path).Path);
    }

    [Theory]
    [InlineData("FD:3", 3, "FD:3")]
    [InlineData("fd:007", 7, "FD:7")]
    [InlineData("FD:0", 0, "FD:0")]
    [InlineData("FD:2147483647", int.MaxValue, "FD:2147483647")]
    public void Parses_file_descriptors(string text, int fd, string canonical)
    {
        var address = Address.Parse(text);

        Assert.Equal(AddressKind.FileDescriptor, address.Kind);
        Assert.Equal(fd, address.FileDescriptor);
        Assert.True(address.CanListen);
        Assert.True(address.CanConnect);
        Assert.Equal(canonical, address.ToString());
    }

    public static TheoryData<string?, string> Invalid => new()
    {
        { null, "address is empty" },
        { "", "address is empty" },
        { "   ", "address is empty" },
        { " IP:80", "address has leading or trailing white space" },
        { "UNIX:/tmp/x ", "address has leading or trailing white space" },
        { "9001", "missing address type in '9001' (expected a prefix IP, IPv4, IPv6, UNIX or FD followed by ':')" },
        { ":9001", "missing address type before ':' (expected IP, IPv4, IPv6, UNIX or FD)" },
        { "TCP:x:1", "unknown address type 'TCP' (expected IP, IPv4, IPv6, UNIX or FD)" },
        { "IPv5:1", "unknown address type 'IPv5' (expected IP, IPv4, IPv6, UNIX or FD)" },
        { "IP:", "IP: needs a port (IP:port or IP:host:port)" },
        { "IP::", "IP: needs a port (IP:port or IP:host:port)" },
        { "IPv4:", "IPv4: needs a port (IPv4:port or IPv4:host:port)" },
        { "IP:99999", "port 99999 is out of range (1-65535)" },
        { "IP:65536", "port 65536 is out of range (1-65535)" },
        { "IP:host:123456789012", "port 123456789012 is out of range (1-65535)" },
        { "IP:host:", "IP: needs a port after 'host:'" },
        { "IP:host:abc", "port 'abc' is not a number" },
        { "IP:host:-1", "port '-1' is not a number" },
        { "IP:host:+80", "port '+80' is not a number" },
        { "IP:host: 80", "port ' 80' is not a number" },
        { "IP:localhost", "port 'localhost' is not a number (a host needs a port too, as in IP:localhost:port)" },
        { "IP:10.0.0.1", "port '10.0.0.1' is not a number (a host needs a port too, as in IP:10.0.0.1:port)" },
        { "IP:a:b:c", "too many ':' in 'IP:a:b:c' (expected IP:port or IP:host:port; IPv6 addresses are written IPv6:[address]:port)" },
        { "IP:[::1]:80", "bracketed addresses are IPv6 and need the IPv6: prefix, as in IPv6:[::1]:80" },
        { "IP:256.1.1.1:80", "'256.1.1.1' is not a valid IPv4 address" },
        { "IP:127.1:80", "'127.1' is not a valid IPv4 address" },
        { "IP:bad host:80", "host 'bad host' contains ' ', which cannot appear in a host name" },
        { "IP:a/b:80", "host 'a/b' contains '/', which cannot appear in a host name" },
        { "IP:" + new string('h', 300) + ":80", "host name 'hhhhhhhhhhhhhhhh...' is 300 characters long; the limit is 253" },
        { "IPv6:", "IPv6: needs a port (IPv6:port or IPv6:[address]:port)" },
        { "IPv6:::1:80", "IPv6: the address must be in brackets, as in IPv6:[::1]:port" },
        { "IPv6:abc", "port 'abc' is not a number" },
        { "IPv6:70000", "port 70000 is out of range (1-65535)" },
        { "IPv6:[::1", "IPv6: missing ']' after '[::1'" },
        { "IPv6:[]:80", "IPv6: no address between '[' and ']'" },
        { "IPv6:[::1]", "IPv6: needs a port after '[::1]:'" },
        { "IPv6:[::1]:", "IPv6: needs a port after '[::1]:'" },
        { "IPv6:[::1]80", "IPv6: expected ':' after '[::1]' but found '80'" },
        { "IPv6:[::1]:1:2", "too many ':' after '[::1]' in 'IPv6:[::1]:1:2'" },
        { "IPv6:[zz::1]:80", "'zz::1' is not a valid IPv6 address" },
        { "IPv6:[127.0.0.1]:80", "'127.0.0.1' is an IPv4 address; write it as IP:127.0.0.1:port" },
        { "IPv6:[::1]:70000", "port 70000 is out of range (1-65535)" },
        { "IPv6:[bad host]:80", "host 'bad host' contains ' ', which cannot appear in a host name" },
        { "UNIX:", "UNIX: needs a socket path" },
        { "unix:", "unix: needs a socket path" },
        { "UNIX:a\0b", "UNIX: socket path contains a NUL character" },
        { "UNIX:/" + new string('a', 107), "UNIX: socket path is 108 bytes long; the limit is 107" },
        { "UNIX:" + new string('\u00e9', 54), "UNIX: socket path is 108 bytes long; the limit is 107" },
        { "FD:", "FD: needs a file descriptor number" },
        { "FD:x", "file descriptor 'x' is not a number" },
        { "FD:-1", "file descriptor '-1' is not a number" },
        { "FD:99999999999", "file descriptor 99999999999 is out of range (0-2147483647)" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Rejects_bad_text_naming_the_problem(string? text, string error)
    {
        Assert.SkipWhen(error.Contains("the limit is 107", StringComparison.Ordinal) && Address.MaxUnixPathBytes != 107, "the unix path limit is 107 bytes on Linux only");

        Assert.False(Address.TryParse(text, out var address, out var reported));
        Assert.Null(address);
        Assert.Equal(error, reported);
        Assert.False(Address.TryParse(text, out _));

        if (text is not null)
        {
            var e = Assert.Throws<AddressFormatException>(() => Address.Parse(text));
            Assert.IsAssignableFrom<FormatException>(e);
            Assert.Equal(error, e.Reason);
            Assert.Equal(text, e.Text);
            Assert.Equal($"invalid address '{text}': {error}", e.Message);
        }
    }

    [Fact]
    public void TryParse_reports_no_error_on_success()
    {
        Assert.True(Address.TryParse("IP:1", out var address, out var error));
        Assert.NotNull(address);
        Assert.Equal(string.Empty, error);
    }

    public static TheoryData<string> AllValid()
    {
        var data = new TheoryData<string> { "UNIX:/tmp/dc.sock", "unix:relative.sock", "FD:3", "fd:007" };
        foreach (var row in ValidIPAddresses)
        {
            data.Add(row.Data.Item1);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(AllValid))]
    public void Canonical_text_round_trips(string text)
    {
        var address = Address.Parse(text);
        var again = Address.Parse(address.ToString());

        Assert.Equal(address, again);
        Assert.Equal(address.GetHashCode(), again.GetHashCode());
        Assert.Equal(address.ToString(), again.ToString());
        Assert.Equal(address.CanConnect, again.CanConnect);
    }

    [Fact]
    public void Equality_ignores_prefix_and_host_name_case_but_not_the_rest()
    {
        Assert.Equal(Address.Parse("IP:LocalHost:80"), Address.Parse("ipv4:localhost:80"));
        Assert.Equal(Address.Parse("IP:LocalHost:80").GetHashCode(), Address.Parse("ipv4:localhost:80").GetHashCode());
        Assert.NotEqual(Address.Parse("IP:localhost:80"), Address.Parse("IP:localhost:81"));
        Assert.NotEqual(Address.Parse("IP:80"), Address.Parse("IPv6:80"));
        Assert.NotEqual(Address.Parse("UNIX:/a"), Address.Parse("UNIX:/A"));
        Assert.NotEqual(Address.Parse("FD:3"), Address.Parse("FD:4"));
        Assert.False(Address.Parse("FD:3").Equals(null));
    }

    [Fact]
    public void ToEndPoint_does_no_name_resolution()
    {
        Assert.Equal(new IPEndPoint(IPAddress.Any, 80), Address.Parse("IP:80").ToEndPoint());
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Any, 80), Address.Parse("IPv6:80").ToEndPoint());
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 80), Address.Parse("IP:127.0.0.1:80").ToEndPoint());
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, 80), Address.Parse("IPv6:[::1]:80").ToEndPoint());

        var dns = Assert.IsType<DnsEndPoint>(Address.Parse("IP:cache.example:80").ToEndPoint());
        Assert.Equal(("cache.example", 80, AddressFamily.InterNetwork), (dns.Host, dns.Port, dns.AddressFamily));
        var dns6 = Assert.IsType<DnsEndPoint>(Address.Parse("IPv6:[cache.example]:80").ToEndPoint());
        Assert.Equal(AddressFamily.InterNetworkV6, dns6.AddressFamily);

        var unix = Assert.IsType<UnixDomainSocketEndPoint>(Address.Parse("UNIX:/run/dc.sock").ToEndPoint());
        Assert.Equal("/run/dc.sock", unix.ToString());

        var e = Assert.Throws<InvalidOperationException>(() => Address.Parse("FD:3").ToEndPoint());
        Assert.Contains("FD:3", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromEndPoint_describes_socket_end_points()
    {
        Assert.Equal("IP:127.0.0.1:80", Address.FromEndPoint(new IPEndPoint(IPAddress.Loopback, 80)).ToString());
        Assert.Equal("IP:80", Address.FromEndPoint(new IPEndPoint(IPAddress.Any, 80)).ToString());
        Assert.Equal("IPv6:[::1]:80", Address.FromEndPoint(new IPEndPoint(IPAddress.IPv6Loopback, 80)).ToString());
        Assert.Equal("IPv6:80", Address.FromEndPoint(new IPEndPoint(IPAddress.IPv6Any, 80)).ToString());
        Assert.Equal("IP:10.0.0.1:80", Address.FromEndPoint(new IPEndPoint(IPAddress.Parse("::ffff:10.0.0.1"), 80)).ToString());
        Assert.Equal("IP:cache:1", Address.FromEndPoint(new DnsEndPoint("cache", 1)).ToString());
        Assert.Equal("IPv6:[cache]:1", Address.FromEndPoint(new DnsEndPoint("cache", 1, AddressFamily.InterNetworkV6)).ToString());
        Assert.Equal("UNIX:/run/dc.sock", Address.FromEndPoint(new UnixDomainSocketEndPoint("/run/dc.sock")).ToString());

        Assert.Throws<ArgumentNullException>(() => Address.FromEndPoint(null!));
    }

    [Fact]
    public void Connecting_is_refused_for_listen_only_forms_with_the_reason()
    {
        var any = Assert.Throws<ArgumentException>(() => NetworkConnection.ConnectAsync(Address.Parse("IP:9001"), TestContext.Current.CancellationToken).AsTask().GetAwaiter().GetResult());
        Assert.StartsWith("IP:9001 names all interfaces and can only be listened on; connecting needs a host, as in IP:host:port", any.Message, StringComparison.Ordinal);

        var zero = Assert.Throws<ArgumentException>(() => NetworkConnection.ConnectAsync(Address.Parse("IP:127.0.0.1:0"), TestContext.Current.CancellationToken).AsTask().GetAwaiter().GetResult());
        Assert.StartsWith("IP:127.0.0.1:0 has port 0", zero.Message, StringComparison.Ordinal);
    }
}
