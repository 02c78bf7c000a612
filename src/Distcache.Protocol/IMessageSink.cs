namespace Distcache.Protocol;

/// <summary>
/// Takes the messages <see cref="MessageDecoder.DecodeAll{TSink}"/> finds, each with its place in the input, so that
/// a caller that forwards raw bytes (a proxy) can locate them without a decode loop of its own.
/// </summary>
public interface IMessageSink
{
    /// <summary>Whether another message is wanted now (a flow-control limit says no).</summary>
    bool WantsMore { get; }

    /// <summary>
    /// Takes one complete message: <paramref name="length"/> bytes from offset <paramref name="start"/> of the input,
    /// headers included; its payload is valid until the next message is decoded. Returns null to go on, or the rule
    /// the message breaks at this layer, which stops decoding before it (the message is not consumed).
    /// </summary>
    /// <param name="message">The message.</param>
    /// <param name="start">Its offset in the input.</param>
    /// <param name="length">Its length on the wire.</param>
    /// <returns>Null, or why the message is refused.</returns>
    ProtocolViolation? Accept(in Message message, long start, long length);
}
