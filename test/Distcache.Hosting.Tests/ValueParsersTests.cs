namespace Distcache.Hosting.Tests;

/// <summary>The parsers behind the tools' options (numbers, sizes, permissions, addresses, user and group lists), and the reasons they give.</summary>
public sealed class ValueParsersTests
{
    [Theory]
    [InlineData("65536", 65536UL)]
    [InlineData("64k", 65536UL)]
    [InlineData("64K", 65536UL)]
    [InlineData("512M", 536870912UL)]
    [InlineData("512m", 536870912UL)]
    [InlineData("2G", 2147483648UL)]
    [InlineData("1T", 1099511627776UL)]
    [InlineData("0", 0UL)]
    [InlineData("0k", 0UL)]
    [InlineData("007", 7UL)]
    [InlineData("16777215T", 16777215UL << 40)]
    [InlineData("18446744073709551615", ulong.MaxValue)]
    public void Sizes_are_counted_in_powers_of_1024(string text, ulong expected)
    {
        Assert.True(ValueParsers.TryParseSize(text, out var bytes));
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData("")]
    [InlineData(null)]
    [InlineData("k")]
    [InlineData("M")]
    [InlineData("1.5G")]
    [InlineData("64kB")]
    [InlineData("64KiB")]
    [InlineData("64 k")]
    [InlineData(" 64k")]
    [InlineData("64k ")]
    [InlineData("-1")]
    [InlineData("+5")]
    [InlineData("2P")]
    [InlineData("0x10")]
    [InlineData("18446744073709551616")]
    [InlineData("16777216T")]
    [InlineData("17179869184G")]
    public void Malformed_or_overflowing_sizes_are_rejected(string? text)
    {
        Assert.False(ValueParsers.TryParseSize(text, out var bytes));
        Assert.Equal(0UL, bytes);
    }

    [Fact]
    public void A_size_range_is_checked_after_the_suffix_is_applied()
    {
        var parser = ValueParsers.SizeInRange(1UL << 20, 4UL << 30);

        Assert.True(parser("1024k", out var low, out var none));
        Assert.Equal(1UL << 20, low);
        Assert.Null(none);
        Assert.True(parser("4G", out var high, out _));
        Assert.Equal(4UL << 30, high);
        Assert.False(parser("1023k", out _, out var tooSmall));
        Assert.Equal("'1023k' is not a size from 1M to 4G", tooSmall);
        Assert.False(parser("4097M", out _, out var tooLarge));
        Assert.Equal("'4097M' is not a size from 1M to 4G", tooLarge);
        Assert.False(parser("1.5G", out _, out var malformed));
        Assert.Equal("'1.5G' is not a size (a number of bytes, optionally followed by k, M, G or T for powers of 1024)", malformed);
    }

    [Theory]
    [InlineData("660", 0x1B0)]
    [InlineData("0600", 0x180)]
    [InlineData("600", 0x180)]
    [InlineData("777", 0x1FF)]
    [InlineData("0777", 0x1FF)]
    [InlineData("0", 0)]
    [InlineData("7", 7)]
    public void Permissions_are_read_in_octal(string text, int expected)
    {
        Assert.True(ValueParsers.OctalPermissions(text, out var mode, out var reason));
        Assert.Null(reason);
        Assert.Equal((UnixFileMode)expected, mode);
    }

    [Theory]
    [InlineData("999")]
    [InlineData("abc")]
    [InlineData("8")]
    [InlineData("068")]
    [InlineData("1777")]
    [InlineData("4755")]
    [InlineData("00600")]
    [InlineData("")]
    [InlineData("-600")]
    [InlineData(" 600")]
    [InlineData("0o600")]
    public void Invalid_permissions_are_rejected(string text)
    {
        Assert.False(ValueParsers.OctalPermissions(text, out var mode, out var reason));
        Assert.Equal(UnixFileMode.None, mode);
        Assert.Equal($"'{text}' is not octal permissions from 0 to 777, such as 660", reason);
    }

    [Theory]
    [InlineData("64", true, 64u)]
    [InlineData("1048576", true, 1048576u)]
    [InlineData("0064", true, 64u)]
    [InlineData("63", false, 0u)]
    [InlineData("1048577", false, 0u)]
    [InlineData("4294967296", false, 0u)]
    [InlineData("99999999999999999999999", false, 0u)]
    [InlineData("-64", false, 0u)]
    [InlineData("+64", false, 0u)]
    [InlineData(" 64", false, 0u)]
    [InlineData("64 ", false, 0u)]
    [InlineData("6.4e1", false, 0u)]
    [InlineData("", false, 0u)]
    public void Unsigned_ranges_accept_only_plain_decimal_digits_within_bounds(string text, bool ok, uint expected)
    {
        var parser = ValueParsers.UInt32InRange(64, 1 << 20);

        Assert.Equal(ok, parser(text, out var value, out var reason));
        Assert.Equal(expected, value);
        Assert.Equal(ok ? null : $"'{text}' is not a number from 64 to 1048576", reason);
    }

    [Fact]
    public void The_full_32_and_64_bit_ranges_are_reachable()
    {
        Assert.True(ValueParsers.UInt32InRange(0, uint.MaxValue)("4294967295", out var max32, out _));
        Assert.Equal(uint.MaxValue, max32);
        Assert.True(ValueParsers.UInt64InRange(0, ulong.MaxValue)("18446744073709551615", out var max64, out _));
        Assert.Equal(ulong.MaxValue, max64);
        Assert.False(ValueParsers.UInt64InRange(10, 20)("21", out var outside, out var reason));
        Assert.Equal(0UL, outside);
        Assert.Equal("'21' is not a number from 10 to 20", reason);
    }

    [Fact]
    public void An_empty_range_is_a_programming_error()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ValueParsers.UInt32InRange(2, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ValueParsers.UInt64InRange(2, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ValueParsers.SizeInRange(2, 1));
    }

    [Fact]
    public void Text_parsers_differ_only_on_the_empty_string()
    {
        Assert.True(ValueParsers.Text("", out var empty, out var none));
        Assert.Equal(string.Empty, empty);
        Assert.Null(none);
        Assert.False(ValueParsers.NonEmptyText("", out _, out var reason));
        Assert.Equal("the value is empty", reason);
        Assert.True(ValueParsers.NonEmptyText("x", out var x, out _));
        Assert.Equal("x", x);
    }

    [Theory]
    [InlineData(0UL, "0")]
    [InlineData(100UL, "100")]
    [InlineData(1024UL, "1k")]
    [InlineData(1536UL << 10, "1536k")]
    [InlineData(1UL << 20, "1M")]
    [InlineData(3UL << 30, "3G")]
    [InlineData(2UL << 40, "2T")]
    [InlineData(32896UL, "32896")]
    public void Sizes_are_shown_in_the_largest_exact_unit_and_read_back(ulong bytes, string expected)
    {
        Assert.Equal(expected, ValueParsers.FormatSize(bytes));
        Assert.True(ValueParsers.TryParseSize(expected, out var back));
        Assert.Equal(bytes, back);
    }

    [Fact]
    public void A_size_range_without_a_useful_ceiling_states_only_its_floor()
    {
        Assert.False(ValueParsers.SizeInRange(1UL << 20, long.MaxValue)("1k", out _, out var reason));
        Assert.Equal("'1k' is not a size of at least 1M", reason);
    }

    [Theory]
    [InlineData("TCP:x", "'TCP:x' is not an address: unknown address type 'TCP' (expected IP, IPv4, IPv6, UNIX or FD)")]
    [InlineData("IP:99999", "'IP:99999' is not an address: port 99999 is out of range (1-65535)")]
    [InlineData("", "'' is not an address: address is empty")]
    public void A_bad_listening_address_is_refused_with_the_parser_reason(string text, string expected)
    {
        Assert.False(AddressParsers.Listen(text, out var address, out var reason));
        Assert.Null(address);
        Assert.Equal(expected, reason);
    }

    [Theory]
    [InlineData("IP:9001", "'IP:9001' names no host, so it can only be listened on; connecting needs one, as in IP:host:port")]
    [InlineData("IPv6:9001", "'IPv6:9001' names no host, so it can only be listened on; connecting needs one, as in IPv6:[address]:port")]
    [InlineData("IP:localhost:0", "'IP:localhost:0' has port 0, which only means \"any free port\" when listening")]
    [InlineData("nowhere", "'nowhere' is not an address: missing address type in 'nowhere' (expected a prefix IP, IPv4, IPv6, UNIX or FD followed by ':')")]
    public void An_address_that_cannot_be_connected_to_says_why(string text, string expected)
    {
        Assert.False(AddressParsers.Connect(text, out _, out var reason));
        Assert.Equal(expected, reason);
    }

    [Theory]
    [InlineData("IP:9001")]
    [InlineData("UNIX:/tmp/x")]
    [InlineData("IPv6:[::1]:9")]
    public void Good_addresses_pass_without_a_reason(string text)
    {
        Assert.True(AddressParsers.Listen(text, out var listen, out var none));
        Assert.Null(none);
        Assert.Equal(text, listen.ToString());
    }

    [Theory]
    [InlineData("", "'' names no user: give user names or ids, separated by commas")]
    [InlineData("1,", "'1,' has an empty item: give user names or ids, separated by single commas")]
    [InlineData("no-such-user-dcx", "'no-such-user-dcx' is not a user on this system")]
    [InlineData("0,4294967295", "'4294967295' is not a user id (0 to 4294967294)")]
    [InlineData("99999999999", "'99999999999' is not a user id (0 to 4294967294)")]
    public void A_bad_user_list_says_which_item_is_wrong(string text, string expected)
    {
        Assert.False(SecurityParsers.UserIdList(text, out var ids, out var reason));
        Assert.Null(ids);
        Assert.Equal(expected, reason);
    }

    [Fact]
    public void A_bad_group_list_names_the_group()
    {
        Assert.False(SecurityParsers.GroupIdList("root,no-such-group-dcx", out _, out var reason));
        Assert.Equal("'no-such-group-dcx' is not a group on this system", reason);
        Assert.True(SecurityParsers.GroupIdList("root, 7", out var ids, out var none));
        Assert.Equal(new uint[] { 0, 7 }, ids);
        Assert.Null(none);
    }
}
