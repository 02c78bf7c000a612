namespace Distcache.Server;

/// <summary>Why the server's sweep closed a connection.</summary>
internal enum ConnectionExpiry
{
    /// <summary>Not expired.</summary>
    None = 0,

    /// <summary>A message started but did not complete within the message timeout.</summary>
    MessageTimeout = 1,

    /// <summary>Nothing arrived or was sent within the idle timeout.</summary>
    IdleTimeout = 2,

    /// <summary>A flush stayed blocked (the peer does not read) beyond the write timeout.</summary>
    WriteTimeout = 3,

    /// <summary>Not expired: the loop ended on its own (and has reported why), so the sweep must leave it alone
    /// in the moment before it is unregistered.</summary>
    Ended = 4,
}
