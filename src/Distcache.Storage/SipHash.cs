using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Distcache.Storage;

/// <summary>
/// SipHash (Aumasson and Bernstein) over short inputs. The store keys it with a random 128-bit secret
/// so that a client cannot choose session ids that collide in the hash table on purpose.
/// </summary>
internal static class SipHash
{
    /// <summary>SipHash-1-3: one compression round per word, three finalisation rounds; the variant hash
    /// tables use, where the output never leaves the process.</summary>
    public static ulong Hash13(ulong k0, ulong k1, ReadOnlySpan<byte> data) => Hash(k0, k1, data, 1, 3);

    /// <summary>SipHash with <paramref name="compressionRounds"/>/<paramref name="finalizationRounds"/> rounds;
    /// 2/4 is the published reference variant whose test vectors pin this implementation down.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Hash(ulong k0, ulong k1, ReadOnlySpan<byte> data, int compressionRounds, int finalizationRounds)
    {
        ulong v0 = k0 ^ 0x736f6d6570736575UL;
        ulong v1 = k1 ^ 0x646f72616e646f6dUL;
        ulong v2 = k0 ^ 0x6c7967656e657261UL;
        ulong v3 = k1 ^ 0x7465646279746573UL;

        int whole = data.Length & ~7;
        for (int i = 0; i < whole; i += 8)
        {
            ulong m = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(i, 8));
            v3 ^= m;
            for (int r = 0; r < compressionRounds; r++)
            {
                Round(ref v0, ref v1, ref v2, ref v3);
            }

            v0 ^= m;
        }

        // The last word carries the length (mod 256) in its top byte, so inputs that differ only by
        // trailing zero bytes hash differently.
        ulong last = (ulong)data.Length << 56;
        ReadOnlySpan<byte> tail = data[whole..];
        for (int i = 0; i < tail.Length; i++)
        {
            last |= (ulong)tail[i] << (8 * i);
        }

        v3 ^= last;
        for (int r = 0; r < compressionRounds; r++)
        {
            Round(ref v0, ref v1, ref v2, ref v3);
        }

        v0 ^= last;
        v2 ^= 0xff;
        for (int r = 0; r < finalizationRounds; r++)
        {
            Round(ref v0, ref v1, ref v2, ref v3);
        }

        return v0 ^ v1 ^ v2 ^ v3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Round(ref ulong v0, ref ulong v1, ref ulong v2, ref ulong v3)
    {
        v0 += v1;
        v1 = BitOperations.RotateLeft(v1, 13);
        v1 ^= v0;
        v0 = BitOperations.RotateLeft(v0, 32);
        v2 += v3;
        v3 = BitOperations.RotateLeft(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = BitOperations.RotateLeft(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = BitOperations.RotateLeft(v1, 17);
        v1 ^= v2;
        v2 = BitOperations.RotateLeft(v2, 32);
    }
}
