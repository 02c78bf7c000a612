using System.Security.Cryptography;
using System.Text;

namespace Distcache.Testing;

/// <summary>
/// Session data derived from the session id alone, so that an answer carrying another session's data (a
/// response matched to the wrong request, a mixed-up buffer) is detectable by whoever holds only the id.
/// </summary>
public static class SessionData
{
    /// <summary>The <paramref name="length"/> bytes that belong to <paramref name="id"/>: SHA-256 of the id and a
    /// block counter, block after block.</summary>
    public static byte[] For(ReadOnlySpan<byte> id, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var data = new byte[length];
        Span<byte> input = stackalloc byte[id.Length + 4];
        id.CopyTo(input);
        Span<byte> block = stackalloc byte[32];
        for (int offset = 0, counter = 0; offset < length; offset += 32, counter++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(input[id.Length..], counter);
            SHA256.HashData(input, block);
            block[..Math.Min(32, length - offset)].CopyTo(data.AsSpan(offset));
        }

        return data;
    }

    /// <summary>The data of a text id.</summary>
    public static byte[] For(string id, int length) => For(Encoding.UTF8.GetBytes(id), length);

    /// <summary>True if <paramref name="data"/> is exactly what <see cref="For(ReadOnlySpan{byte}, int)"/> gives
    /// <paramref name="id"/> at that length.</summary>
    public static bool Matches(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data) => data.SequenceEqual(For(id, data.Length));
}
