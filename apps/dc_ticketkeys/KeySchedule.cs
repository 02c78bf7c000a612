using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// Which key is whose, by the wall clock: time is cut into periods of <see cref="PeriodSeconds"/> counted from the
/// Unix epoch, period <c>p</c> covering <c>[p·P, (p+1)·P)</c>. During period <c>p</c> a host encrypts with key
/// <c>p</c> and decrypts with <c>p-1</c>, <c>p</c> and <c>p+1</c>: the next key is everywhere one period before any
/// host encrypts with it, and a key is kept one period after its last use, so no ticket breaks at a rotation as long
/// as clocks agree within the period less the ticket lifetime (docs/ticket-keys.md). No host coordinates with another beyond the cache.
/// </summary>
internal sealed class KeySchedule
{
    /// <summary>The shortest period: shorter ones leave no room for a ticket's lifetime and a host's lateness.</summary>
    public const uint MinPeriodSeconds = 10;

    /// <summary>
    /// The longest period: a key lives in the cache for up to four periods from when it is made, and the protocol's
    /// longest lifetime is 7 days (PROTOCOL.md, ADD_ERR_TIMEOUT_RANGE).
    /// </summary>
    public const uint MaxPeriodSeconds = 48 * 3600;

    private static readonly TimeSpan MaxCacheLifetime = TimeSpan.FromDays(7);

    public KeySchedule(string name, uint periodSeconds)
    {
        if (!IsValidName(name, out string? reason))
        {
            throw new ArgumentException(reason, nameof(name));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(periodSeconds, MinPeriodSeconds);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(periodSeconds, MaxPeriodSeconds);
        Name = name;
        PeriodSeconds = periodSeconds;
    }

    /// <summary>The farm's name: farms sharing a cache keep their keys apart by it.</summary>
    public string Name { get; }

    public uint PeriodSeconds { get; }

    public TimeSpan Period => TimeSpan.FromSeconds(PeriodSeconds);

    /// <summary>The period <paramref name="time"/> falls in.</summary>
    public long PeriodAt(DateTimeOffset time) => Math.DivRem(time.ToUnixTimeMilliseconds(), PeriodSeconds * 1000L, out long remainder) - (remainder < 0 ? 1 : 0);

    /// <summary>When period <paramref name="period"/> starts.</summary>
    public DateTimeOffset StartOf(long period) => DateTimeOffset.FromUnixTimeSeconds(period * PeriodSeconds);

    /// <summary>
    /// The session id the key of <paramref name="period"/> is stored under: <c>dctk1:NAME:P:p</c>, at most 57 bytes
    /// (the protocol allows 64).
    /// </summary>
    public byte[] CacheId(long period) => Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"dctk1:{Name}:{PeriodSeconds}:{period}"));

    /// <summary>
    /// How long the cache should keep the key of <paramref name="period"/>, added at <paramref name="now"/>: until one
    /// period after the end of its last use (the end of period + 1), so that a host that was away can still find it,
    /// within the protocol's 7 days. Zero when it is no longer needed at all.
    /// </summary>
    public TimeSpan CacheLifetime(long period, DateTimeOffset now)
    {
        TimeSpan lifetime = StartOf(period + 3) - now;
        return lifetime <= TimeSpan.Zero ? TimeSpan.Zero : lifetime > MaxCacheLifetime ? MaxCacheLifetime : lifetime;
    }

    /// <summary>A farm name: 1 to 32 of A-Z, a-z, 0-9, '.', '_' and '-'.</summary>
    public static bool IsValidName(string? name, [NotNullWhen(false)] out string? reason)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 32 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
        {
            reason = $"'{name}' is not a farm name: 1 to 32 letters, digits, '.', '_' or '-'";
            return false;
        }

        reason = null;
        return true;
    }
}
