namespace Distcache.Apps.Test;

/// <summary>
/// SplitMix64: a small, fast, seedable generator. The tests need reproducible sequences (<c>-seed</c>) and the load
/// generator needs a draw that costs a few multiplications, not statistical or cryptographic strength.
/// </summary>
internal struct FastRandom
{
    private ulong _state;

    public FastRandom(ulong seed) => _state = seed;

    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A value in [0, <paramref name="bound"/>), by multiply-and-shift: no division, negligible bias.</summary>
    public int Next(int bound) => (int)(((NextUInt64() >> 32) * (ulong)(uint)bound) >> 32);

    /// <summary>A value in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public int Next(int min, int max) => min + Next(max - min + 1);

    public void Fill(Span<byte> bytes)
    {
        while (bytes.Length >= 8)
        {
            BitConverter.TryWriteBytes(bytes, NextUInt64());
            bytes = bytes[8..];
        }

        if (!bytes.IsEmpty)
        {
            Span<byte> last = stackalloc byte[8];
            BitConverter.TryWriteBytes(last, NextUInt64());
            last[..bytes.Length].CopyTo(bytes);
        }
    }
}
