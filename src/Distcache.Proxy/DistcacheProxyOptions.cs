using Distcache.Networking;

namespace Distcache.Proxy;

/// <summary>Settings of a <see cref="DistcacheProxy"/>. The defaults are 1.5.1's where 1.5.1 had the setting.</summary>
public sealed class DistcacheProxyOptions
{
    /// <summary>The longest <see cref="RetryInterval"/> and <see cref="IdleTimeout"/> 1.5.1 accepts: one hour.</summary>
    public static TimeSpan MaxInterval { get; } = TimeSpan.FromHours(1);

    /// <summary>
    /// The <c>dc_server</c>s to forward to (<c>-server</c>, once or more), each an address that can be connected to,
    /// no two spelled the same. With several, each session id goes to one of them by consistent hashing of the
    /// addresses as written, so every <c>dc_client</c> listing the same servers, in any order, agrees.
    /// </summary>
    public IReadOnlyList<Address> Servers { get; init; } = [];

    /// <summary>The one <c>dc_server</c> to forward to: shorthand for <see cref="Servers"/> with one entry.</summary>
    public Address Server
    {
        get => Servers.Count > 0 ? Servers[0] : throw new InvalidOperationException("No server is set.");
        init => Servers = [value];
    }

    /// <summary>
    /// TLS for the server link (<c>-tls-ca</c>, <c>-tls-cert</c>, <c>-tls-key</c>, <c>-tls-name</c>): every connection
    /// to the server is authenticated with it. Null (the default) connects in the clear, as 1.5.1.
    /// </summary>
    public TlsClientSettings? Tls { get; init; }

    /// <summary>
    /// Connect to the server on the native transport (<see cref="ConnectionOptions.NativeTransport"/>): the link
    /// then costs one <c>recv</c> per batch of answers and never wakes the runtime's socket thread. Ignored with
    /// <see cref="Tls"/>, whose stream runs on the runtime's sockets. Default false; <c>dc_client</c> sets it unless
    /// <c>DISTCACHE_NATIVE_TRANSPORT=0</c>.
    /// </summary>
    public bool NativeTransport { get; init; }

    /// <summary>
    /// Most local connections served at once; one more is accepted and closed at once (the application reads end of
    /// stream and can treat it as a cache miss), counted in <see cref="ProxyStatistics.ConnectionsRefused"/> and
    /// logged at most once a second. 0 (the default) = no cap. <c>dc_client</c> sets what fits under its descriptor
    /// limit, since accepting until the system has no descriptor left would end the process.
    /// </summary>
    public int MaxConnections { get; init; }

    /// <summary>
    /// How long after losing the server link (or failing to connect) the next connection attempt is made
    /// (<c>-retry</c>). Default 5 seconds, as in 1.5.1; at least 1 ms and at most <see cref="MaxInterval"/>.
    /// </summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A local connection with nothing outstanding (no request waiting for its answer, no answer waiting to be
    /// written) that has been silent this long is closed (<c>-idle</c>). <see cref="TimeSpan.Zero"/>, the
    /// default as in 1.5.1, never closes one. At most <see cref="MaxInterval"/>.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.Zero;

    /// <summary>
    /// The longest the proxy waits on the server (<c>-timeout</c>): for a connection attempt to complete, and for
    /// the oldest request in flight to be answered. When the oldest request has waited longer, the server is
    /// taken to be gone without having closed the connection (a half-open link: host powered off, cable
    /// pulled, process stopped): the link is closed, every request in flight is answered with
    /// <c>DISCONNECTED</c>, and reconnection starts. Default 5 seconds: an in-memory cache answers in well
    /// under a millisecond, so 5 seconds is far outside normal operation (no false alarms under load or GC
    /// pauses) while still failing TLS handshakes fast enough that clients do not give up on the web server
    /// itself. <see cref="TimeSpan.Zero"/> disables the check (as in 1.5.1, which has none); connection
    /// attempts are then bounded by 5 seconds.
    /// </summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How many requests of one local connection may be waiting for their answers before the proxy stops
    /// reading from that connection until some are answered. Default 256. A pipelining client beyond it is
    /// slowed down, never dropped.
    /// </summary>
    public int MaxRequestsInFlightPerConnection { get; init; } = 256;

    /// <summary>
    /// How many bytes of answers may wait to be written to one local connection before the proxy stops reading
    /// its requests. Default 256 KiB. A client that sends but does not read thus stops costing the server
    /// anything once this much is queued for it.
    /// </summary>
    public int ConnectionOutputSoftLimit { get; init; } = 256 * 1024;

    /// <summary>
    /// How many bytes of answers may wait to be written to one local connection before it is dropped. The
    /// server link never waits for a local connection: answers are queued in memory, and this bounds that
    /// memory. Default 16 MiB, enough for <see cref="MaxRequestsInFlightPerConnection"/> answers of the largest
    /// size on top of <see cref="ConnectionOutputSoftLimit"/>, so only a client that stopped reading reaches it.
    /// </summary>
    public int ConnectionOutputHardLimit { get; init; } = 16 * 1024 * 1024;

    /// <summary>
    /// How long shutdown waits for requests already forwarded to be answered by the server before answering
    /// the rest with <c>DISCONNECTED</c>. Default 2 seconds.
    /// </summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The connection attempt bound when <see cref="OperationTimeout"/> is zero.</summary>
    internal static TimeSpan DefaultConnectTimeout { get; } = TimeSpan.FromSeconds(5);

    /// <summary>How long one connection attempt may take.</summary>
    internal TimeSpan ConnectTimeout => OperationTimeout > TimeSpan.Zero ? OperationTimeout : DefaultConnectTimeout;

    /// <summary>Throws if a setting is out of range.</summary>
    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Servers);
        if (Servers.Count == 0)
        {
            throw new ArgumentException("At least one server is needed.", nameof(Servers));
        }

        for (int i = 0; i < Servers.Count; i++)
        {
            Address server = Servers[i] ?? throw new ArgumentException("A server is null.", nameof(Servers));
            if (!server.CanConnect)
            {
                throw new ArgumentException($"{server} cannot be connected to; the server address needs a host and a port (IP:host:port) or a path (UNIX:/path)", nameof(Servers));
            }

            if (Servers.Take(i).Any(s => s.ToString() == server.ToString()))
            {
                throw new ArgumentException($"{server} is listed twice; each server is listed once", nameof(Servers));
            }

            if (Tls is not null)
            {
                _ = Tls.ExpectedName(server);
            }
        }

        CheckRange(RetryInterval, TimeSpan.FromMilliseconds(1), MaxInterval, nameof(RetryInterval));
        CheckRange(IdleTimeout, TimeSpan.Zero, MaxInterval, nameof(IdleTimeout));
        CheckRange(OperationTimeout, TimeSpan.Zero, MaxInterval, nameof(OperationTimeout));
        CheckRange(ShutdownTimeout, TimeSpan.Zero, MaxInterval, nameof(ShutdownTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRequestsInFlightPerConnection, 1, nameof(MaxRequestsInFlightPerConnection));
        ArgumentOutOfRangeException.ThrowIfLessThan(ConnectionOutputSoftLimit, 1, nameof(ConnectionOutputSoftLimit));
        ArgumentOutOfRangeException.ThrowIfLessThan(ConnectionOutputHardLimit, ConnectionOutputSoftLimit, nameof(ConnectionOutputHardLimit));
    }

    private static void CheckRange(TimeSpan value, TimeSpan min, TimeSpan max, string name)
    {
        if (value < min || value > max)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be between {min} and {max}");
        }
    }
}
