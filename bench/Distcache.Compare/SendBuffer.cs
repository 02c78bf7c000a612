using System.Buffers;

namespace Distcache.Compare;

/// <summary>The connection's own send array as an <see cref="IBufferWriter{T}"/>, so the protocol library's request
/// writers encode straight into it. Sized by the connection for a full pipeline; it never grows.</summary>
internal sealed class SendBuffer(byte[] buffer) : IBufferWriter<byte>
{
    /// <summary>Bytes written so far; the connection sets it to where the next request goes before each encode.</summary>
    public int Written { get; set; }

    public void Advance(int count) => Written += count;

    public Memory<byte> GetMemory(int sizeHint = 0) => buffer.AsMemory(Reserve(sizeHint));

    public Span<byte> GetSpan(int sizeHint = 0) => buffer.AsSpan(Reserve(sizeHint));

    private int Reserve(int sizeHint)
    {
        // A full array here means the connection sized it wrongly: fail loudly rather than write a partial request.
        if (buffer.Length - Written < Math.Max(sizeHint, 1))
        {
            throw new InvalidOperationException($"send buffer of {buffer.Length} bytes full ({Written} written, {sizeHint} more asked for)");
        }

        return Written;
    }
}
