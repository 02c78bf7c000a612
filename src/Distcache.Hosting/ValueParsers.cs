using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Distcache.Hosting;

/// <summary>
/// The value parsers the distcache tools need. The methods with the <see cref="ValueParser{T}"/> shape can be
/// passed as method groups (<c>ValueParsers.Text</c>); the factories build range-checked parsers. Every refusal
/// comes with a reason that quotes the text and states the rule (<c>'abc' is not a number from 0 to 1000</c>).
/// </summary>
/// <remarks>
/// Numbers are stricter than 1.5.1's <c>strtoul</c>: only decimal digits, no sign, no white space. 1.5.1
/// silently accepted <c>" 12"</c> and wrapped <c>"-1"</c> to a huge value, which then passed or failed its range
/// check by accident.
/// </remarks>
public static class ValueParsers
{
    private const int MaximumPermissionDigits = 4;
    private const int MaximumPermissions = 0x1FF; // 0777: set-id and sticky bits mean nothing for a socket.
    private const string SizeRule = "a number of bytes, optionally followed by k, M, G or T for powers of 1024";

    /// <summary>Accepts any text, including an empty one, unchanged.</summary>
    /// <param name="text">The given text.</param>
    /// <param name="value">The same text.</param>
    /// <param name="reason">Null: every text is accepted.</param>
    /// <returns>Always true.</returns>
    public static bool Text(string text, [MaybeNullWhen(false)] out string value, [NotNullWhen(false)] out string? reason)
    {
        ArgumentNullException.ThrowIfNull(text);
        value = text;
        reason = null;
        return true;
    }

    /// <summary>Accepts any text except an empty one.</summary>
    /// <param name="text">The given text.</param>
    /// <param name="value">The same text.</param>
    /// <param name="reason">Why an empty text is refused.</param>
    /// <returns>True when the text is not empty.</returns>
    public static bool NonEmptyText(string text, [MaybeNullWhen(false)] out string value, [NotNullWhen(false)] out string? reason)
    {
        if (string.IsNullOrEmpty(text))
        {
            value = null;
            reason = "the value is empty";
            return false;
        }

        value = text;
        reason = null;
        return true;
    }

    /// <summary>A parser for a decimal unsigned 32-bit integer within [<paramref name="min"/>, <paramref name="max"/>].</summary>
    /// <param name="min">The smallest accepted value.</param>
    /// <param name="max">The largest accepted value.</param>
    /// <returns>The parser.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="min"/> is greater than <paramref name="max"/>.</exception>
    public static ValueParser<uint> UInt32InRange(uint min, uint max)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(min, max);
        var parse = UInt64InRange(min, max);
        return (string text, out uint value, [NotNullWhen(false)] out string? reason) =>
        {
            var ok = parse(text, out var parsed, out reason);
            value = (uint)parsed;
            return ok;
        };
    }

    /// <summary>A parser for a decimal unsigned 64-bit integer within [<paramref name="min"/>, <paramref name="max"/>].</summary>
    /// <param name="min">The smallest accepted value.</param>
    /// <param name="max">The largest accepted value.</param>
    /// <returns>The parser.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="min"/> is greater than <paramref name="max"/>.</exception>
    public static ValueParser<ulong> UInt64InRange(ulong min, ulong max)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(min, max);
        return (string text, out ulong value, [NotNullWhen(false)] out string? reason) =>
        {
            if (TryParseUnsigned(text, out value) && value >= min && value <= max)
            {
                reason = null;
                return true;
            }

            value = 0;
            reason = string.Create(CultureInfo.InvariantCulture, $"'{text}' is not a number from {min} to {max}");
            return false;
        };
    }

    /// <summary>A parser for a byte count (see <see cref="TryParseSize"/>) within [<paramref name="min"/>, <paramref name="max"/>].</summary>
    /// <param name="min">The smallest accepted number of bytes.</param>
    /// <param name="max">The largest accepted number of bytes.</param>
    /// <returns>The parser.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="min"/> is greater than <paramref name="max"/>.</exception>
    public static ValueParser<ulong> SizeInRange(ulong min, ulong max)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(min, max);
        // A ceiling no machine has is noise in the message: only the floor is worth stating then.
        var range = max >= long.MaxValue ? $"of at least {FormatSize(min)}" : $"from {FormatSize(min)} to {FormatSize(max)}";
        return (string text, out ulong value, [NotNullWhen(false)] out string? reason) =>
        {
            if (!TryParseSize(text, out value))
            {
                reason = $"'{text}' is not a size ({SizeRule})";
                return false;
            }

            if (value < min || value > max)
            {
                value = 0;
                reason = $"'{text}' is not a size {range}";
                return false;
            }

            reason = null;
            return true;
        };
    }

    /// <summary>Parses one or more decimal digits, nothing else, into a value that must fit 64 bits.</summary>
    /// <param name="text">The text.</param>
    /// <param name="value">The number.</param>
    /// <returns>False for an empty text, any other character (sign, space, dot) or overflow.</returns>
    public static bool TryParseUnsigned(string? text, out ulong value)
    {
        value = 0;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        foreach (var c in text)
        {
            if (c is < '0' or > '9')
            {
                value = 0;
                return false;
            }

            ulong digit = (ulong)(c - '0');
            if (value > (ulong.MaxValue - digit) / 10)
            {
                value = 0;
                return false;
            }

            value = (value * 10) + digit;
        }

        return true;
    }

    /// <summary>
    /// Parses a byte count: decimal digits optionally followed by one of <c>k</c>, <c>M</c>, <c>G</c>, <c>T</c>
    /// (either case), each a power of 1024. <c>65536</c>, <c>64k</c>, <c>512M</c> and <c>2G</c> are accepted;
    /// <c>1.5G</c>, <c>64kB</c>, <c>k</c> and sizes beyond 64 bits are not.
    /// </summary>
    /// <param name="text">The text.</param>
    /// <param name="bytes">The number of bytes.</param>
    /// <returns>True when the text is a valid size.</returns>
    public static bool TryParseSize(string? text, out ulong bytes)
    {
        bytes = 0;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        var shift = char.ToUpperInvariant(text[^1]) switch
        {
            'K' => 10,
            'M' => 20,
            'G' => 30,
            'T' => 40,
            _ => 0,
        };
        var digits = shift == 0 ? text : text[..^1];
        if (!TryParseUnsigned(digits, out var count) || count > ulong.MaxValue >> shift)
        {
            return false;
        }

        bytes = count << shift;
        return true;
    }

    /// <summary>Writes a byte count as <see cref="TryParseSize"/> reads it, in the largest unit that divides it exactly (<c>1M</c>, <c>1536k</c>, <c>100</c>).</summary>
    /// <param name="bytes">The number of bytes.</param>
    /// <returns>The text.</returns>
    public static string FormatSize(ulong bytes)
    {
        foreach (var (shift, unit) in new[] { (40, 'T'), (30, 'G'), (20, 'M'), (10, 'k') })
        {
            var mask = (1UL << shift) - 1;
            if (bytes != 0 && (bytes & mask) == 0)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{bytes >> shift}{unit}");
            }
        }

        return bytes.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Parses file permissions written in octal as for <c>chmod</c>: one to four octal digits, at most
    /// <c>0777</c>. <c>660</c> and <c>0600</c> are accepted; <c>999</c>, <c>abc</c>, <c>1777</c> and <c>-1</c> are not.
    /// </summary>
    /// <param name="text">The text.</param>
    /// <param name="mode">The permission bits.</param>
    /// <param name="reason">Why the text is refused.</param>
    /// <returns>True when the text is valid.</returns>
    public static bool OctalPermissions(string text, out UnixFileMode mode, [NotNullWhen(false)] out string? reason)
    {
        mode = UnixFileMode.None;
        reason = $"'{text}' is not octal permissions from 0 to 777, such as 660";
        if (string.IsNullOrEmpty(text) || text.Length > MaximumPermissionDigits)
        {
            return false;
        }

        var bits = 0;
        foreach (var c in text)
        {
            if (c is < '0' or > '7')
            {
                return false;
            }

            bits = (bits * 8) + (c - '0');
        }

        if (bits > MaximumPermissions)
        {
            return false;
        }

        mode = (UnixFileMode)bits;
        reason = null;
        return true;
    }
}
