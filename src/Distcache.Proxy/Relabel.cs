using System.Buffers;
using System.Buffers.Binary;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Proxy;

/// <summary>
/// Copies a message that <see cref="MessageDecoder"/> has already validated, frame headers included, rewriting
/// only the fields the proxy owns. The payload is never parsed, so the proxy forwards whatever an ADD carries
/// without understanding it.
/// </summary>
internal static class Relabel
{
    private const int UidOffset = 5;

    // Every frame but the last carries exactly 2048 bytes (the decoder enforces it), so frame i starts at a
    // fixed offset and its header can be patched without walking the frames.
    private const int FullFrameSize = ProtocolConstants.FrameHeaderSize + ProtocolConstants.MaxFrameData;

    /// <summary>
    /// Appends <paramref name="message"/> (the raw bytes of one validated message of <paramref name="frames"/>
    /// frames) to <paramref name="output"/> with every frame's <c>request_uid</c> set to <paramref name="uid"/>.
    /// With <paramref name="resetLevel"/>, every frame's <c>proto_level</c> becomes 0x00110000.
    /// </summary>
    /// <remarks>
    /// A request's patch level is reset because the server link belongs to the proxy: a local client announcing
    /// protocol extensions (PROTOCOL.md section 6) must not make the server believe the proxy understands them.
    /// A response's level is forwarded unchanged.
    /// </remarks>
    public static void Append(PooledBuffer output, in ReadOnlySequence<byte> message, int frames, uint uid, bool resetLevel)
    {
        Span<byte> destination = output.Append(checked((int)message.Length));
        message.CopyTo(destination);
        for (int i = 0; i < frames; i++)
        {
            Span<byte> header = destination[(i * FullFrameSize)..];
            if (resetLevel)
            {
                BinaryPrimitives.WriteUInt32BigEndian(header, ProtocolConstants.ProtoLevel);
            }

            BinaryPrimitives.WriteUInt32BigEndian(header[UidOffset..], uid);
        }
    }
}
