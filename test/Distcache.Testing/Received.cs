using Distcache.Protocol;

namespace Distcache.Testing;

/// <summary>One decoded message, with the bytes it arrived as.</summary>
/// <param name="ProtoLevel">The protocol level of its frames.</param>
/// <param name="Uid">Its request uid.</param>
/// <param name="Operation">Its operation.</param>
/// <param name="Payload">Its payload, the data of all its frames.</param>
/// <param name="Raw">The whole message as received, headers included.</param>
public sealed record Received(uint ProtoLevel, uint Uid, Operation Operation, byte[] Payload, byte[] Raw)
{
    /// <summary>The status of a one-byte answer; null for any other payload.</summary>
    public StatusCode? Status => Payload.Length == 1 ? (StatusCode)Payload[0] : null;
}
