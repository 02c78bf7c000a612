using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Security.Cryptography;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// The ticket key of one period: 80 random bytes, a 16-byte key name (sent in the clear in every ticket, so that a
/// server can tell which key a ticket needs), a 32-byte HMAC-SHA256 key and a 32-byte AES-256 key. The cache and the
/// state file hold it as a <see cref="RecordSize"/>-byte record that names its period, so a record can never be
/// taken for another period's or another period length's key.
/// </summary>
internal sealed class TicketKey : IEquatable<TicketKey>
{
    /// <summary>Bytes of key material: name, HMAC key, AES key.</summary>
    public const int SecretSize = 80;

    /// <summary>Bytes of a record: magic, version, three reserved bytes, period length, period, secret, checksum.</summary>
    public const int RecordSize = 4 + 1 + 3 + 4 + 8 + SecretSize + 4;

    private const byte Version = 1;
    private static ReadOnlySpan<byte> Magic => "DCTK"u8;
    private static ReadOnlySpan<byte> ApacheLabel => "dc_ticketkeys apache aes-128 key"u8;

    private readonly byte[] _secret;

    public TicketKey(long period, uint periodSeconds, ReadOnlySpan<byte> secret)
    {
        if (secret.Length != SecretSize)
        {
            throw new ArgumentException($"a ticket key is {SecretSize} bytes, not {secret.Length}", nameof(secret));
        }

        Period = period;
        PeriodSeconds = periodSeconds;
        _secret = secret.ToArray();
    }

    /// <summary>The period the key belongs to (see <see cref="KeySchedule"/>).</summary>
    public long Period { get; }

    /// <summary>The period length the key was made for.</summary>
    public uint PeriodSeconds { get; }

    private ReadOnlySpan<byte> Name => _secret.AsSpan(0, 16);

    private ReadOnlySpan<byte> HmacKey => _secret.AsSpan(16, 32);

    private ReadOnlySpan<byte> AesKey => _secret.AsSpan(48, 32);

    /// <summary>
    /// What the logs may say of the key: the first four bytes of its name. The name travels in the clear in every
    /// ticket the key encrypts, so it reveals nothing; the HMAC and AES keys never appear anywhere but in the files.
    /// </summary>
    public string Label => Convert.ToHexStringLower(Name[..4]);

    /// <summary>A new key of fresh random bytes from the operating system's generator.</summary>
    public static TicketKey Create(long period, uint periodSeconds) =>
        new(period, periodSeconds, RandomNumberGenerator.GetBytes(SecretSize));

    /// <summary>The record the cache and the state file hold.</summary>
    public byte[] ToRecord()
    {
        var record = new byte[RecordSize];
        Span<byte> span = record;
        Magic.CopyTo(span);
        span[4] = Version;
        BinaryPrimitives.WriteUInt32BigEndian(span[8..], PeriodSeconds);
        BinaryPrimitives.WriteInt64BigEndian(span[12..], Period);
        _secret.CopyTo(span[20..]);
        Checksum(span[..^4]).CopyTo(span[^4..]);
        return record;
    }

    /// <summary>
    /// Reads a record, checking everything that can be checked: size, magic, version, checksum, that it is the key of
    /// <paramref name="period"/> for <paramref name="periodSeconds"/>, and that the key material is not zero.
    /// </summary>
    /// <param name="record">The record.</param>
    /// <param name="period">The period it must be for, or null to take the period it names (state files).</param>
    /// <param name="periodSeconds">The period length it must be for.</param>
    /// <param name="key">The key.</param>
    /// <param name="reason">Why the record is refused, without any of its bytes.</param>
    /// <returns>False when it is refused.</returns>
    public static bool TryParse(ReadOnlySpan<byte> record, long? period, uint periodSeconds, [NotNullWhen(true)] out TicketKey? key, [NotNullWhen(false)] out string? reason)
    {
        key = null;
        if (record.Length != RecordSize)
        {
            reason = string.Create(CultureInfo.InvariantCulture, $"it is {record.Length} bytes, not {RecordSize}");
            return false;
        }

        if (!record[..4].SequenceEqual(Magic))
        {
            reason = "it is not a dc_ticketkeys record (wrong magic)";
            return false;
        }

        if (record[4] != Version)
        {
            reason = string.Create(CultureInfo.InvariantCulture, $"its format version is {record[4]}, this dc_ticketkeys reads version {Version}");
            return false;
        }

        if (!record[^4..].SequenceEqual(Checksum(record[..^4])) || record[5] != 0 || record[6] != 0 || record[7] != 0)
        {
            reason = "its checksum does not match: the record was altered or damaged";
            return false;
        }

        uint recordPeriodSeconds = BinaryPrimitives.ReadUInt32BigEndian(record[8..]);
        long recordPeriod = BinaryPrimitives.ReadInt64BigEndian(record[12..]);
        if (recordPeriodSeconds != periodSeconds)
        {
            reason = string.Create(CultureInfo.InvariantCulture, $"it was made for periods of {recordPeriodSeconds} s, not {periodSeconds} s");
            return false;
        }

        if (period is { } expected && recordPeriod != expected)
        {
            reason = string.Create(CultureInfo.InvariantCulture, $"it is the key of period {recordPeriod}, not of period {expected}");
            return false;
        }

        ReadOnlySpan<byte> secret = record.Slice(20, SecretSize);
        if (IsZero(secret[..16]) || IsZero(secret.Slice(16, 32)) || IsZero(secret.Slice(48, 32)))
        {
            reason = "its key name, HMAC key or AES key is all zeros";
            return false;
        }

        key = new TicketKey(recordPeriod, recordPeriodSeconds, secret);
        reason = null;
        return true;
    }

    /// <summary>nginx's 80-byte key file (<c>ssl_session_ticket_key</c>): name, HMAC key, AES key.</summary>
    public byte[] ToNginx() => [.. _secret];

    /// <summary>
    /// One line of HAProxy's <c>tls-ticket-keys</c> file: the base64 of 80 bytes in HAProxy's order, name, AES key,
    /// HMAC key.
    /// </summary>
    public string ToHAProxyLine()
    {
        var bytes = new byte[SecretSize];
        Name.CopyTo(bytes);
        AesKey.CopyTo(bytes.AsSpan(16));
        HmacKey.CopyTo(bytes.AsSpan(48));
        string line = Convert.ToBase64String(bytes);
        CryptographicOperations.ZeroMemory(bytes);
        return line;
    }

    /// <summary>
    /// Apache's 48-byte <c>SSLSessionTicketKeyFile</c> (AES-128): name, HMAC secret, AES key, 16 bytes each, derived
    /// from the key with HKDF-SHA256 so that it shares no bytes with the 80-byte forms, and with a name of its own,
    /// so that a server never tries one form's ticket with the other's cipher.
    /// </summary>
    public byte[] ToApache() => HKDF.DeriveKey(HashAlgorithmName.SHA256, _secret, 48, salt: [], info: ApacheLabel.ToArray());

    public bool Equals(TicketKey? other) =>
        other is not null && Period == other.Period && PeriodSeconds == other.PeriodSeconds && CryptographicOperations.FixedTimeEquals(_secret, other._secret);

    public override bool Equals(object? obj) => Equals(obj as TicketKey);

    public override int GetHashCode() => HashCode.Combine(Period, PeriodSeconds);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"period {Period} (key {Label})");

    private static byte[] Checksum(ReadOnlySpan<byte> bytes) => SHA256.HashData(bytes)[..4];

    private static bool IsZero(ReadOnlySpan<byte> bytes) => !bytes.ContainsAnyExcept((byte)0);
}
