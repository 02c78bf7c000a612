namespace Distcache.Hosting;

/// <summary>
/// A start-up step of the process failed: detaching, switching user, and the like. The message is written to
/// follow <c>"Error, "</c> on stderr, for example <c>cannot switch to user "x": no such user</c>.
/// </summary>
public sealed class HostingException : Exception
{
    /// <summary>Creates an exception with a generic message.</summary>
    public HostingException()
        : base("a process start-up step failed")
    {
    }

    /// <summary>Creates an exception with the given message.</summary>
    /// <param name="message">What failed and why.</param>
    public HostingException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with the given message and cause.</summary>
    /// <param name="message">What failed and why.</param>
    /// <param name="innerException">The underlying failure.</param>
    public HostingException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates an exception for a failed system call.</summary>
    /// <param name="message">What failed and why, including the system's error text.</param>
    /// <param name="errorNumber">The <c>errno</c> value the call left.</param>
    public HostingException(string message, int errorNumber)
        : base(message)
    {
        ErrorNumber = errorNumber;
    }

    /// <summary>The <c>errno</c> value of the failed system call, or 0 when the failure was not a system call's.</summary>
    public int ErrorNumber { get; }
}
