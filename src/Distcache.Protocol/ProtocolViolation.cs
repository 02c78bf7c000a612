namespace Distcache.Protocol;

/// <summary>
/// The ways a peer can break the framing rules (PROTOCOL.md section 1). Each one makes the receiver drop
/// that connection; none may take the process down.
/// </summary>
public enum ProtocolViolationKind
{
    /// <summary>The high 16 bits of <c>proto_level</c> are not 0x0011. (1.5.1 calls <c>abort()</c> here.)</summary>
    WrongVersion = 1,

    /// <summary>The <c>is_response</c> byte is neither 0 nor 1.</summary>
    InvalidResponseFlag,

    /// <summary>A response arrived where only requests are accepted (at a server), or a request where only responses are (at a client).</summary>
    UnexpectedDirection,

    /// <summary>The <c>op_class</c> byte is not 0, the only class 1.5.1 knows.</summary>
    UnknownOpClass,

    /// <summary>The <c>operation</c> byte is not ADD, GET, REMOVE or HAVE.</summary>
    UnknownOperation,

    /// <summary>The <c>complete</c> byte is neither 0 nor 1.</summary>
    InvalidCompleteFlag,

    /// <summary>A frame's <c>data_len</c> is over 2048.</summary>
    FrameTooLong,

    /// <summary>A frame with <c>complete = 0</c> does not carry exactly 2048 bytes (a peer must not trickle a message in small pieces).</summary>
    ShortNonFinalFrame,

    /// <summary>A continuation frame carries a different <c>request_uid</c> from the first frame of its message: two messages interleaved.</summary>
    UidChangedWithinMessage,

    /// <summary>A continuation frame carries a different operation from the first frame of its message: two messages interleaved.</summary>
    OperationChangedWithinMessage,

    /// <summary>A message needs more than 16 frames, so more than 32768 payload bytes.</summary>
    MessageTooLarge,

    /// <summary>An ADD request payload is shorter than its 8-byte prefix (1.5.1 drops the connection).</summary>
    AddPayloadTooShort,

    /// <summary>A response does not carry the <c>request_uid</c> of the request it answers.</summary>
    ResponseUidMismatch,

    /// <summary>A response does not carry the operation of the request it answers.</summary>
    ResponseOperationMismatch,

    /// <summary>A response arrived when no request was waiting for one.</summary>
    UnsolicitedResponse,

    /// <summary>The stream ended (or went silent past a deadline) in the middle of a message.</summary>
    TruncatedMessage,
}

/// <summary>A violation found by a decoder: what rule was broken and where.</summary>
/// <param name="Kind">The rule that was broken.</param>
/// <param name="Offset">The offset of the offending byte from the start of the message being decoded
/// (for a header error, the header byte that broke the rule).</param>
public readonly record struct ProtocolViolation(ProtocolViolationKind Kind, long Offset)
{
    /// <summary>A one-line description for logs, e.g. "wrong protocol version (byte 1 of the message)".</summary>
    public string Describe() => $"{Kind.Describe()} (byte {Offset} of the message)";
}

/// <summary>Helpers for <see cref="ProtocolViolationKind"/>.</summary>
public static class ProtocolViolationKindExtensions
{
    /// <summary>A short human description of the broken rule.</summary>
    public static string Describe(this ProtocolViolationKind kind) => kind switch
    {
        ProtocolViolationKind.WrongVersion => "wrong protocol version",
        ProtocolViolationKind.InvalidResponseFlag => "is_response is neither 0 nor 1",
        ProtocolViolationKind.UnexpectedDirection => "message in the wrong direction",
        ProtocolViolationKind.UnknownOpClass => "unknown op_class",
        ProtocolViolationKind.UnknownOperation => "unknown operation",
        ProtocolViolationKind.InvalidCompleteFlag => "complete is neither 0 nor 1",
        ProtocolViolationKind.FrameTooLong => "frame data_len over 2048",
        ProtocolViolationKind.ShortNonFinalFrame => "non-final frame not exactly 2048 bytes",
        ProtocolViolationKind.UidChangedWithinMessage => "request_uid changed within a message",
        ProtocolViolationKind.OperationChangedWithinMessage => "operation changed within a message",
        ProtocolViolationKind.MessageTooLarge => "message over 16 frames / 32768 bytes",
        ProtocolViolationKind.AddPayloadTooShort => "ADD payload shorter than 8 bytes",
        ProtocolViolationKind.ResponseUidMismatch => "response request_uid does not match the request",
        ProtocolViolationKind.ResponseOperationMismatch => "response operation does not match the request",
        ProtocolViolationKind.UnsolicitedResponse => "response with no request waiting",
        ProtocolViolationKind.TruncatedMessage => "stream ended inside a message",
        _ => kind.ToString(),
    };
}

/// <summary>Thrown where a violation must unwind a call stack (client APIs); decoders return violations instead of throwing.</summary>
public sealed class ProtocolViolationException : Exception
{
    /// <summary>Creates the exception for a violation.</summary>
    public ProtocolViolationException(ProtocolViolationKind kind)
        : base($"distcache protocol violation: {kind.Describe()}") => Kind = kind;

    /// <summary>Creates the exception with a custom message.</summary>
    public ProtocolViolationException(ProtocolViolationKind kind, string message)
        : base(message) => Kind = kind;

    /// <summary>Creates the exception with no detail (for serializers and analyzers).</summary>
    public ProtocolViolationException() : base("distcache protocol violation") { }

    /// <summary>Creates the exception with a message.</summary>
    public ProtocolViolationException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and inner exception.</summary>
    public ProtocolViolationException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The broken rule.</summary>
    public ProtocolViolationKind Kind { get; }
}
