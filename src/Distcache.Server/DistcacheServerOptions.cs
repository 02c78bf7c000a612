using Distcache.Networking;

namespace Distcache.Server;

/// <summary>
/// Settings of a <see cref="DistcacheServer"/>. The limits default to values that keep one peer from exhausting
/// the server without getting in the way of well-behaved clients; a zero turns the corresponding limit off.
/// </summary>
public sealed class DistcacheServerOptions
{
    /// <summary>The default <see cref="MaxConnections"/>: memcached's default, ample for a session cache whose
    /// clients (web servers, dc_client proxies) each hold one or a few long-lived connections.</summary>
    public const int DefaultMaxConnections = 1024;

    /// <summary>How long shutdown waits for open connections to finish the responses they are writing before
    /// it closes them. Default 5 seconds.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Most connections served at once by <see cref="DistcacheServer.RunAsync"/>; one more is accepted and closed
    /// at once (so it does not wait in the listen backlog) and counted in <see cref="ServerStatistics.ConnectionsRefused"/>.
    /// 0 = no cap. Default <see cref="DefaultMaxConnections"/>.
    /// </summary>
    public int MaxConnections { get; init; } = DefaultMaxConnections;

    /// <summary>
    /// Once the first byte of a request has arrived, the whole message must arrive within this time, however
    /// the bytes are spread out (a peer trickling bytes does not extend it); otherwise the connection is closed
    /// as a truncated message. <see cref="TimeSpan.Zero"/> = no deadline. Default 5 seconds: a 32 KiB message
    /// takes milliseconds on any network a session cache is deployed on.
    /// </summary>
    public TimeSpan MessageTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A connection on which nothing arrives or is sent for this long is closed. <see cref="TimeSpan.Zero"/> =
    /// never (the default, as in 1.5.1, whose clients keep idle connections open and expect them to stay).
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.Zero;

    /// <summary>
    /// How long writing responses may stay blocked because the peer does not read them; the connection is then
    /// dropped. <see cref="TimeSpan.Zero"/> = no limit. Default 30 seconds: long enough for a briefly stalled
    /// client, short enough that a client that never reads does not keep its buffers and descriptor for long.
    /// </summary>
    public TimeSpan WriteTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How often one shared sweep checks the open connections against the timeouts above: a timeout fires
    /// between its value and its value plus this period. Default 100 milliseconds.
    /// </summary>
    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// TLS for the connections <see cref="DistcacheServer.RunAsync"/> accepts: each connection's handshake runs on its
    /// own task (bounded by <see cref="TlsServerSettings.HandshakeTimeout"/>) before any request is read, and a failed
    /// handshake closes that connection only. Null (the default) serves plain connections, as 1.5.1.
    /// </summary>
    public TlsServerSettings? Tls { get; init; }

    /// <summary>
    /// Partitions the store by client identity: each verified client certificate is mapped to a partition (and
    /// possibly read-only access), and a client sees only its partition's sessions. Requires <see cref="Tls"/>
    /// with a client CA. Null (the default) shares one store among all clients, as 1.5.1.
    /// </summary>
    public ClientAccessPolicy? Access { get; init; }
}
