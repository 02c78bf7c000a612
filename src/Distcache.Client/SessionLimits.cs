using Distcache.Protocol;

namespace Distcache.Client;

/// <summary>
/// The protocol's limits on what a request may carry (PROTOCOL.md section 2), checked before anything is encoded,
/// so that a bad argument costs an exception on the caller's stack rather than a round trip and a status code.
/// </summary>
internal static class SessionLimits
{
    /// <summary>The most an ADD's id and data may total: the message payload minus the 8-byte prefix.</summary>
    public const int MaxAddIdAndData = ProtocolConstants.MaxMessagePayload - ProtocolConstants.AddRequestPrefixSize;

    /// <summary>The largest timeout as a <see cref="TimeSpan"/>.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromMilliseconds(ProtocolConstants.MaxTimeoutMilliseconds);

    public static bool IsValidId(ReadOnlySpan<byte> id) => id.Length is > 0 and <= ProtocolConstants.MaxSessionIdLength;

    public static bool IsValidData(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data) =>
        !data.IsEmpty && id.Length + data.Length <= MaxAddIdAndData;

    /// <exception cref="ArgumentException">The id is empty or longer than 64 bytes.</exception>
    public static void ValidateId(ReadOnlySpan<byte> id, string paramName = "id")
    {
        if (!IsValidId(id))
        {
            throw new ArgumentException(
                $"A session id must be 1 to {ProtocolConstants.MaxSessionIdLength} bytes (ProtocolConstants.MaxSessionIdLength); this one is {id.Length} bytes.",
                paramName);
        }
    }

    /// <summary>Checks an ADD's arguments and returns the timeout in whole milliseconds, as the wire carries it.</summary>
    /// <exception cref="ArgumentException">The id or data is out of range.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative or over 7 days.</exception>
    public static uint ValidateAdd(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, TimeSpan timeout)
    {
        ValidateId(id);
        if (data.IsEmpty)
        {
            throw new ArgumentException("Session data must not be empty (the server answers ADD_ERR_DATA_RANGE).", nameof(data));
        }

        if (id.Length + data.Length > MaxAddIdAndData)
        {
            throw new ArgumentException(
                $"An ADD carries at most {ProtocolConstants.MaxMessagePayload} payload bytes (ProtocolConstants.MaxMessagePayload): 8 + id ({id.Length}) + data ({data.Length}) = {ProtocolConstants.AddRequestPrefixSize + id.Length + data.Length}. With this id the data may be at most {MaxAddIdAndData - id.Length} bytes.",
                nameof(data));
        }

        if (timeout < TimeSpan.Zero || timeout > MaxTimeout)
        {
            throw new ArgumentOutOfRangeException(
                nameof(timeout),
                timeout,
                $"A session timeout must be 0 to 7 days ({ProtocolConstants.MaxTimeoutMilliseconds} ms, ProtocolConstants.MaxTimeoutMilliseconds).");
        }

        // The wire carries whole milliseconds; a fraction is dropped rather than rounded up past the 7-day limit.
        return (uint)(timeout.Ticks / TimeSpan.TicksPerMillisecond);
    }
}
