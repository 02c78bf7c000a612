using Distcache.Networking;

namespace Distcache.Client;

/// <summary>
/// A request could not be answered because of the link to the cache: connecting failed, the connection dropped
/// while the request was in flight, the peer broke the protocol (the <see cref="Exception.InnerException"/> is then a
/// <see cref="Protocol.ProtocolViolationException"/>), or the client is between reconnect attempts. The message
/// names the address and the cause. Whether the request reached the server is unknown.
/// </summary>
public class DistcacheConnectionException : IOException
{
    /// <summary>Creates the exception with a generic message.</summary>
    public DistcacheConnectionException()
        : this("the distcache connection failed")
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/>.</summary>
    /// <param name="message">What failed, naming the address.</param>
    public DistcacheConnectionException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/> caused by <paramref name="innerException"/>.</summary>
    /// <param name="message">What failed, naming the address.</param>
    /// <param name="innerException">The underlying failure.</param>
    public DistcacheConnectionException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception with every detail.</summary>
    /// <param name="address">The cache's address.</param>
    /// <param name="message">What failed, naming the address.</param>
    /// <param name="innerException">The underlying failure, if any.</param>
    public DistcacheConnectionException(Address? address, string message, Exception? innerException)
        : base(message, innerException)
    {
        Address = address;
    }

    /// <summary>The address of the cache the request was for, when known.</summary>
    public Address? Address { get; }
}

/// <summary>
/// A proxy (<c>dc_client</c>) answered a request with DISCONNECTED (the byte 2) or with 1.5.1's empty response: our
/// link to the proxy is fine, but the proxy has no link to its server. Thrown by the calls whose return type has
/// no room for that answer (<c>Get</c> returning data, <c>Remove</c>, <c>Contains</c>); <c>Add</c> reports it as
/// <see cref="AddOutcome.Disconnected"/> and the buffer-writer <c>Get</c> as <see cref="GetOutcome.Disconnected"/>.
/// </summary>
public sealed class DistcacheProxyDisconnectedException : DistcacheConnectionException
{
    /// <summary>Creates the exception with a generic message.</summary>
    public DistcacheProxyDisconnectedException()
        : this("the distcache proxy has no link to its server")
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/>.</summary>
    /// <param name="message">What failed, naming the address.</param>
    public DistcacheProxyDisconnectedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/> caused by <paramref name="innerException"/>.</summary>
    /// <param name="message">What failed, naming the address.</param>
    /// <param name="innerException">The underlying failure.</param>
    public DistcacheProxyDisconnectedException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for the proxy at <paramref name="address"/>.</summary>
    /// <param name="address">The proxy's address.</param>
    /// <param name="message">What failed, naming the address.</param>
    public DistcacheProxyDisconnectedException(Address? address, string message)
        : base(address, message, null)
    {
    }
}
