namespace Distcache.Networking;

/// <summary>The transport an <see cref="Address"/> names.</summary>
public enum AddressKind
{
    /// <summary>TCP over IPv4 (<c>IP:</c> or <c>IPv4:</c>): either all interfaces or a host name / dotted address.</summary>
    IPv4,

    /// <summary>TCP over IPv6 (<c>IPv6:</c>, an extension of this implementation): all interfaces or a bracketed address.</summary>
    IPv6,

    /// <summary>A unix domain stream socket bound to a file system path (<c>UNIX:</c>).</summary>
    Unix,

    /// <summary>An already open socket file descriptor inherited from the parent process (<c>FD:</c>).</summary>
    FileDescriptor,
}
