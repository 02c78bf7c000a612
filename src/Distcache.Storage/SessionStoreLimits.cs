namespace Distcache.Storage;

/// <summary>
/// The protocol's bounds on what a session store is given (1.5.1's <c>DISTCACHE_MAX_ID</c> and
/// <c>DISTCACHE_MAX_DATA</c>). The server validates requests against them before calling a store;
/// stores reject anything outside them with an <see cref="ArgumentException"/>.
/// </summary>
public static class SessionStoreLimits
{
    /// <summary>The longest session id, in bytes (ids are 1 to 64 bytes long).</summary>
    public const int MaxIdLength = 64;

    /// <summary>The largest session data, in bytes (data is 1 to 32768 bytes long).</summary>
    public const int MaxDataLength = 32768;

    /// <summary>Throws unless <paramref name="id"/> is 1 to <see cref="MaxIdLength"/> bytes long.</summary>
    /// <param name="id">The session id to check.</param>
    /// <param name="paramName">The parameter name reported in the exception.</param>
    /// <exception cref="ArgumentException">The id is empty or longer than <see cref="MaxIdLength"/>.</exception>
    public static void ValidateId(ReadOnlySpan<byte> id, string paramName = "id")
    {
        if (id.IsEmpty || id.Length > MaxIdLength)
        {
            throw new ArgumentException($"A session id is 1 to {MaxIdLength} bytes long; got {id.Length}.", paramName);
        }
    }

    /// <summary>Throws unless <paramref name="data"/> is 1 to <see cref="MaxDataLength"/> bytes long.</summary>
    /// <param name="data">The session data to check.</param>
    /// <param name="paramName">The parameter name reported in the exception.</param>
    /// <exception cref="ArgumentException">The data is empty or longer than <see cref="MaxDataLength"/>.</exception>
    public static void ValidateData(ReadOnlySpan<byte> data, string paramName = "data")
    {
        if (data.IsEmpty || data.Length > MaxDataLength)
        {
            throw new ArgumentException($"Session data is 1 to {MaxDataLength} bytes long; got {data.Length}.", paramName);
        }
    }

    /// <summary>Throws if <paramref name="timeout"/> is negative (zero is allowed: such a session is never visible).</summary>
    /// <param name="timeout">The session lifetime to check.</param>
    /// <param name="paramName">The parameter name reported in the exception.</param>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative.</exception>
    public static void ValidateTimeout(TimeSpan timeout, string paramName = "timeout")
    {
        if (timeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(paramName, timeout, "A session timeout cannot be negative.");
        }
    }
}
