using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Text;

namespace Distcache.TicketKeys.Tests.Support;

/// <summary>
/// A session ticket as nginx, HAProxy and Apache seal it through OpenSSL's ticket key callback, read with the key it
/// names: key_name[16] || iv[16] || AES-CBC(the session, DER, PKCS#7 padding) || HMAC-SHA256 over all that comes
/// before; AES-256 under the 80-byte keys of nginx and HAProxy, AES-128 under Apache's 48-byte key.
/// The session inside is OpenSSL's SSL_SESSION encoding (a SEQUENCE; [4] the session id context, [6] the server
/// name the client asked for).
/// </summary>
internal sealed class SealedTicket
{
    private const int MacSize = 32;

    private readonly byte[] _bytes;

    public SealedTicket(byte[] bytes)
    {
        // Name, IV, at least one AES block, MAC.
        if (bytes.Length < 16 + 16 + 16 + MacSize)
        {
            throw new ArgumentException($"a ticket of {bytes.Length} bytes is too short", nameof(bytes));
        }

        _bytes = bytes;
    }

    public ReadOnlySpan<byte> KeyName => _bytes.AsSpan(0, 16);

    public int Length => _bytes.Length;

    /// <summary>Whether the ticket's MAC is HMAC-SHA256 of the rest under <paramref name="hmacKey"/>.</summary>
    public bool MacMatches(ReadOnlySpan<byte> hmacKey)
    {
        byte[] mac = HMACSHA256.HashData(hmacKey, _bytes.AsSpan(0, _bytes.Length - MacSize));
        return CryptographicOperations.FixedTimeEquals(mac, _bytes.AsSpan(_bytes.Length - MacSize));
    }

    /// <summary>The session inside, decrypted with <paramref name="aesKey"/> (32 bytes: AES-256, 16: AES-128); throws a CryptographicException when
    /// the padding is wrong (the wrong key).</summary>
    public byte[] Decrypt(ReadOnlySpan<byte> aesKey)
    {
        using var aes = Aes.Create();
        aes.Key = aesKey.ToArray();
        return aes.DecryptCbc(_bytes.AsSpan(32, _bytes.Length - 32 - MacSize), _bytes.AsSpan(16, 16), PaddingMode.PKCS7);
    }

    /// <summary>The session id context ([4]) and the server name ([6]) of an OpenSSL SSL_SESSION encoding.</summary>
    public static (byte[] SessionIdContext, string? ServerName) ReadSession(byte[] session)
    {
        var reader = new AsnReader(session, AsnEncodingRules.BER);
        AsnReader fields = reader.ReadSequence();
        byte[] context = [];
        string? serverName = null;
        while (fields.HasData)
        {
            Asn1Tag tag = fields.PeekTag();
            if (tag.TagClass == TagClass.ContextSpecific && tag.TagValue is 4 or 6)
            {
                // Explicit tags around an OCTET STRING.
                byte[] value = fields.ReadSequence(tag).ReadOctetString();
                if (tag.TagValue == 4)
                {
                    context = value;
                }
                else
                {
                    serverName = Encoding.ASCII.GetString(value);
                }
            }
            else
            {
                fields.ReadEncodedValue();
            }
        }

        return (context, serverName);
    }
}
