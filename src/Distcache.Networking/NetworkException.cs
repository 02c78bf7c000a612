using System.Net.Sockets;

namespace Distcache.Networking;

/// <summary>
/// A listen, accept or connect operation failed for a reason outside the program: the address is in use,
/// nothing listens there, a host name does not resolve, a socket file cannot be replaced, a descriptor is
/// not a usable socket. The message names the address and the cause.
/// </summary>
public sealed class NetworkException : IOException
{
    /// <summary>Creates the exception with a generic message.</summary>
    public NetworkException()
        : this("network operation failed")
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/>.</summary>
    /// <param name="message">What failed, naming the address.</param>
    public NetworkException(string message)
        : this(message, null, SocketError.SocketError, null)
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/> caused by <paramref name="innerException"/>.</summary>
    /// <param name="message">What failed, naming the address.</param>
    /// <param name="innerException">The underlying failure.</param>
    public NetworkException(string message, Exception? innerException)
        : this(message, null, (innerException as SocketException)?.SocketErrorCode ?? SocketError.SocketError, innerException)
    {
    }

    /// <summary>Creates the exception with every detail.</summary>
    /// <param name="message">What failed, naming the address.</param>
    /// <param name="address">The address the operation was for, if known.</param>
    /// <param name="socketError">The socket error behind the failure, or <see cref="SocketError.SocketError"/> when there is none.</param>
    /// <param name="innerException">The underlying failure, typically a <see cref="SocketException"/>.</param>
    public NetworkException(string message, Address? address, SocketError socketError, Exception? innerException)
        : base(message, innerException)
    {
        Address = address;
        SocketError = socketError;
    }

    /// <summary>The address the failed operation was for, or null when unknown.</summary>
    public Address? Address { get; }

    /// <summary>
    /// The socket error behind the failure (for example <see cref="SocketError.ConnectionRefused"/> or
    /// <see cref="SocketError.AddressAlreadyInUse"/>), or <see cref="SocketError.SocketError"/> when the failure
    /// did not come from a socket call (a file in the way, a descriptor that is not a socket).
    /// </summary>
    public SocketError SocketError { get; }
}
