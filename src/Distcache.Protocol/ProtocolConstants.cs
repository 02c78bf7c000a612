namespace Distcache.Protocol;

/// <summary>The fixed numbers of the distcache wire protocol, version 0x11 (PROTOCOL.md sections 1 and 2).</summary>
public static class ProtocolConstants
{
    /// <summary>The protocol version carried in the high 16 bits of <c>proto_level</c>. Any other version is a violation.</summary>
    public const ushort Version = 0x0011;

    /// <summary>The <c>proto_level</c> we send: version 0x11, patch level 0. A non-zero patch level would announce
    /// protocol extensions (PROTOCOL.md section 6), and we send none.</summary>
    public const uint ProtoLevel = 0x0011_0000;

    /// <summary>The size of a frame header in bytes.</summary>
    public const int FrameHeaderSize = 14;

    /// <summary>The most payload bytes one frame may carry; a non-final frame carries exactly this many.</summary>
    public const int MaxFrameData = 2048;

    /// <summary>The most frames one message may have.</summary>
    public const int MaxFrames = 16;

    /// <summary>The most payload bytes one message may carry (16 x 2048).</summary>
    public const int MaxMessagePayload = MaxFrames * MaxFrameData;

    /// <summary>The most bytes a message occupies on the wire (16 full frames with their headers).</summary>
    public const int MaxEncodedMessage = MaxMessagePayload + (MaxFrames * FrameHeaderSize);

    /// <summary>The longest session id the server accepts.</summary>
    public const int MaxSessionIdLength = 64;

    /// <summary>The largest session data the server accepts (1.5.1's <c>DC_MAX_DATA_LEN</c>).
    /// An ADD carries 8 bytes of header and the id as well, so in practice data is at most
    /// 32768 - 8 - 1 bytes; the check exists because 1.5.1 has it.</summary>
    public const int MaxSessionDataLength = 32768;

    /// <summary>The longest session timeout an ADD may ask for: 7 days in milliseconds.</summary>
    public const uint MaxTimeoutMilliseconds = 604_800_000;

    /// <summary>The size of the fixed part of an ADD request payload (timeout and id length).</summary>
    public const int AddRequestPrefixSize = 8;
}
