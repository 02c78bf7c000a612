namespace Distcache.Hosting.Tests;

/// <summary>The numeric, size and permission parsers behind the tools' options.</summary>
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

        Assert.True(parser("1024k", out var low));
        Assert.Equal(1UL << 20, low);
        Assert.True(parser("4G", out var high));
        Assert.Equal(4UL << 30, high);
        Assert.False(parser("1023k", out _));
        Assert.False(parser("4097M", out _));
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
        Assert.True(ValueParsers.OctalPermissions(text, out var mode));
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
        Assert.False(ValueParsers.OctalPermissions(text, out var mode));
        Assert.Equal(UnixFileMode.None, mode);
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

        Assert.Equal(ok, parser(text, out var value));
        Assert.Equal(expected, value);
    }

    [Fact]
    public void The_full_32_and_64_bit_ranges_are_reachable()
    {
        Assert.True(ValueParsers.UInt32InRange(0, uint.MaxValue)("4294967295", out var max32));
        Assert.Equal(uint.MaxValue, max32);
        Assert.True(ValueParsers.UInt64InRange(0, ulong.MaxValue)("18446744073709551615", out var max64));
        Assert.Equal(ulong.MaxValue, max64);
        Assert.False(ValueParsers.UInt64InRange(10, 20)("21", out var outside));
        Assert.Equal(0UL, outside);
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
        Assert.True(ValueParsers.Text("", out var empty));
        Assert.Equal(string.Empty, empty);
        Assert.False(ValueParsers.NonEmptyText("", out _));
        Assert.True(ValueParsers.NonEmptyText("x", out var x));
        Assert.Equal("x", x);
    }
}
