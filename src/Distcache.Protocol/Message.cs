namespace Distcache.Protocol;

/// <summary>
/// One decoded message: the fields its frames share and its reassembled payload.
/// </summary>
/// <remarks>
/// <see cref="Payload"/> borrows memory: either the receive buffer (single-frame messages) or the decoder's
/// reassembly buffer. It is valid until the decoder is called again or the receive buffer is advanced past it.
/// </remarks>
/// <param name="ProtoLevel">The <c>proto_level</c> of the first frame (version and patch level).</param>
/// <param name="IsResponse">True for a response.</param>
/// <param name="RequestUid">The request uid.</param>
/// <param name="Operation">The operation.</param>
/// <param name="Payload">The payload, all frames concatenated (0..32768 bytes).</param>
/// <param name="FrameCount">How many frames carried it (1..16).</param>
public readonly record struct Message(
    uint ProtoLevel,
    bool IsResponse,
    uint RequestUid,
    Operation Operation,
    ReadOnlyMemory<byte> Payload,
    int FrameCount)
{
    /// <summary>The patch level (low 16 bits of <see cref="ProtoLevel"/>); non-zero announces protocol extensions.</summary>
    public ushort PatchLevel => (ushort)ProtoLevel;
}
