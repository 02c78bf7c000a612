using System.Buffers.Binary;

namespace Distcache.Storage.Tests;

public sealed class SipHashTests
{
    private static readonly ulong Key0 = BinaryPrimitives.ReadUInt64LittleEndian([0, 1, 2, 3, 4, 5, 6, 7]);
    private static readonly ulong Key1 = BinaryPrimitives.ReadUInt64LittleEndian([8, 9, 10, 11, 12, 13, 14, 15]);

    // The reference SipHash-2-4 vectors (key 00..0f, message 00..len-1) published with the algorithm;
    // the production variant, 1-3, shares every line of code with 2-4 except the round counts.
    [Theory]
    [InlineData(0, 0x726fdb47dd0e0e31UL)]
    [InlineData(1, 0x74f839c593dc67fdUL)]
    [InlineData(15, 0xa129ca6149be45e5UL)]
    public void SipHash24_matches_the_reference_vectors(int length, ulong expected)
    {
        byte[] message = Enumerable.Range(0, length).Select(i => (byte)i).ToArray();

        Assert.Equal(expected, SipHash.Hash(Key0, Key1, message, 2, 4));
    }

    [Fact]
    public void Every_byte_and_the_length_change_the_hash()
    {
        var seen = new HashSet<ulong>();
        byte[] id = new byte[SessionStoreLimits.MaxIdLength];
        for (int length = 0; length <= id.Length; length++)
        {
            Assert.True(seen.Add(SipHash.Hash13(Key0, Key1, id.AsSpan(0, length))));
        }

        for (int position = 0; position < id.Length; position++)
        {
            for (int bit = 0; bit < 8; bit++)
            {
                id[position] ^= (byte)(1 << bit);
                Assert.True(seen.Add(SipHash.Hash13(Key0, Key1, id)));
                id[position] ^= (byte)(1 << bit);
            }
        }
    }
}
