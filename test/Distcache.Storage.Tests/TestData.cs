using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;

namespace Distcache.Storage.Tests;

internal static class TestData
{
    public static byte[] Id(string text) => Encoding.ASCII.GetBytes(text);

    /// <summary>Deterministic bytes that depend on every argument, so a mixed-up session is caught.</summary>
    public static byte[] Data(int length, int seed)
    {
        byte[] data = new byte[length];
        uint x = (uint)seed * 2654435761u + 12345u;
        for (int i = 0; i < length; i++)
        {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            data[i] = (byte)x;
        }

        return data;
    }

    /// <summary>Self-describing payload: [id][version:4][length:4][checksum:4][filler], so a reader can check it
    /// belongs to <paramref name="id"/> and is intact without knowing which version it got.</summary>
    public static byte[] Payload(byte[] id, int version, int length)
    {
        byte[] payload = Data(length, version ^ id.Length * 7919);
        id.CopyTo(payload, 0);
        BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(id.Length), version);
        BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(id.Length + 4), length);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(id.Length + 8), Checksum(payload.AsSpan(id.Length + 12)));
        return payload;
    }

    public static bool IsPayloadOf(ReadOnlySpan<byte> payload, byte[] id)
    {
        if (payload.Length < id.Length + 12 || !payload[..id.Length].SequenceEqual(id))
        {
            return false;
        }

        int length = BinaryPrimitives.ReadInt32LittleEndian(payload[(id.Length + 4)..]);
        uint checksum = BinaryPrimitives.ReadUInt32LittleEndian(payload[(id.Length + 8)..]);
        return length == payload.Length && checksum == Checksum(payload[(id.Length + 12)..]);
    }

    private static uint Checksum(ReadOnlySpan<byte> bytes)
    {
        uint sum = 2166136261;
        foreach (byte b in bytes)
        {
            sum = (sum ^ b) * 16777619;
        }

        return sum;
    }

    /// <summary>The result of an operation that must have completed synchronously (the memory store's promise).</summary>
    public static T Completed<T>(this ValueTask<T> operation)
    {
        // Throws rather than asserting so that allocation measurements can call it.
        return operation.IsCompletedSuccessfully
            ? operation.Result
            : throw new InvalidOperationException("The operation did not complete synchronously.");
    }

    /// <summary>Reads a session's data, or null if the store says it has none.</summary>
    public static async Task<byte[]?> ReadAsync(this ISessionStore store, byte[] id)
    {
        var box = new StrongBox<byte[]?>();
        bool found = await store.GetAsync(id, static (data, target) => target.Value = data.ToArray(), box);
        Assert.Equal(found, box.Value is not null);
        return box.Value;
    }
}
