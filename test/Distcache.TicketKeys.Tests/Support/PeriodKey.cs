using System.Security.Cryptography;

namespace Distcache.TicketKeys.Tests.Support;

/// <summary>
/// One period's session-ticket key as dc_ticketkeys keeps it: 80 random bytes, name[16] || hmac[32] || aes[32]
/// (an AES-256-CBC key and an HMAC-SHA256 key, the ticket protection nginx and HAProxy use for 80-byte keys).
/// </summary>
internal sealed class PeriodKey
{
    public const int Size = 80;

    private readonly byte[] _bytes;

    private PeriodKey(string label, byte[] bytes)
    {
        Label = label;
        _bytes = bytes;
    }

    /// <summary>A short name for messages (A, B, ...).</summary>
    public string Label { get; }

    public ReadOnlySpan<byte> Name => _bytes.AsSpan(0, 16);

    public ReadOnlySpan<byte> Hmac => _bytes.AsSpan(16, 32);

    public ReadOnlySpan<byte> Aes => _bytes.AsSpan(48, 32);

    public static PeriodKey Random(string label) => new(label, RandomNumberGenerator.GetBytes(Size));

    /// <summary>nginx's layout of an 80-byte <c>ssl_session_ticket_key</c> file: name[16] hmac[32] aes[32].</summary>
    public byte[] NginxLayout() => [.. Name, .. Hmac, .. Aes];

    /// <summary>HAProxy's layout of an 80-byte <c>tls-ticket-keys</c> line (before base64): name[16] aes[32] hmac[32].</summary>
    public byte[] HAProxyLayout() => [.. Name, .. Aes, .. Hmac];

    /// <summary>Apache's 48-byte <c>SSLSessionTicketKeyFile</c> made from this key, by dc_ticketkeys' own derivation.</summary>
    public byte[] ApacheLayout() => new TicketKey(0, 1, _bytes).ToApache();

    public override string ToString() => $"{Label} ({Convert.ToHexStringLower(Name)})";
}

/// <summary>The three keys a host holds in period p: p-1 (decrypts only), p (encrypts), p+1 (decrypts only).</summary>
internal sealed record HostKeys(PeriodKey Previous, PeriodKey Current, PeriodKey Next)
{
    public override string ToString() => $"previous {Previous.Label}, current {Current.Label}, next {Next.Label}";
}
