using System.Buffers;
using Distcache.Protocol;
using Distcache.Networking;

namespace Distcache.Client;

/// <summary>
/// A client of several distcache servers that spreads sessions over them by consistent hashing of the session id
/// (<see cref="ConsistentHashRing"/>), for when one server is not enough. Each server has its own
/// <see cref="DistcacheClient"/>: an independent, multiplexed link that reconnects on its own.
/// </summary>
/// <remarks>
/// <para><b>Routing.</b> Every operation on an id goes to the first server on the ring, from the id onwards, whose
/// link is connected: normally the id's owner. While a server is down its ids go to the next connected server,
/// so new ADDs still succeed and are readable there, and GETs of sessions stored on the down server miss (the
/// caller makes a new session, as after an expiry). No answer is ever another session's data.</para>
/// <para><b>When a server comes back</b>, its ids route to it again: sessions that were added elsewhere during
/// the outage then miss until they expire (a redirected ADD lives only for the outage). A REMOVE reaches the
/// server the id routes to at that moment, so a copy left on another server during an outage may be read again if
/// the owner fails once more before that copy expires; session ids are random and single-use, so this costs at
/// most a resumption of that same session.</para>
/// <para><b>Agreement.</b> All clients must list the same servers, spelled the same (order does not matter), to
/// route each id to the same server. A server added to the list takes over about 1/n of the ids; the rest stay
/// where they were.</para>
/// <para>When no server is connected, requests go to the id's owner and fail as a single
/// <see cref="DistcacheClient"/>'s do (<see cref="DistcacheConnectionException"/>).</para>
/// </remarks>
public sealed class ShardedDistcacheClient : IAsyncDisposable, IDisposable
{
    private readonly DistcacheClient[] _servers;

    /// <summary>Creates a client of <paramref name="servers"/>, each connected in the background with
    /// <paramref name="options"/> (its <see cref="DistcacheClientOptions.Address"/> is ignored).</summary>
    /// <param name="servers">The servers; at least one, no duplicates.</param>
    /// <param name="options">Timeouts, reconnect delays, connection options (TLS) and logging for every link; defaults when null.</param>
    /// <exception cref="ArgumentException">No server, a duplicate, an address that cannot be connected to, or invalid options.</exception>
    public ShardedDistcacheClient(IEnumerable<Address> servers, DistcacheClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(servers);
        Address[] addresses = [.. servers];
        if (addresses.Length == 0)
        {
            throw new ArgumentException("At least one server is required.", nameof(servers));
        }

        Ring = new ConsistentHashRing(addresses.Select(a => a.ToString()));
        DistcacheClientOptions template = options ?? new DistcacheClientOptions();
        _servers = new DistcacheClient[addresses.Length];
        try
        {
            for (int i = 0; i < addresses.Length; i++)
            {
                _servers[i] = CreateLink(template, addresses[i]);
            }
        }
        catch
        {
            foreach (DistcacheClient? created in _servers)
            {
                created?.Dispose();
            }

            throw;
        }
    }

    /// <summary>The ring that maps ids to servers; node i is <see cref="Servers"/>[i].</summary>
    public ConsistentHashRing Ring { get; }

    /// <summary>One client per server, in the order given.</summary>
    public IReadOnlyList<DistcacheClient> Servers => _servers;

    /// <summary>Waits until every server has been tried once (connected or failed), or <paramref name="cancellationToken"/> fires.</summary>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>How many servers are connected.</returns>
    public async Task<int> WaitForFirstAttemptsAsync(CancellationToken cancellationToken = default)
    {
        await Task.WhenAll(_servers.Select(s => s.FirstConnectAttempt)).WaitAsync(cancellationToken).ConfigureAwait(false);
        return _servers.Count(s => s.IsConnected);
    }

    /// <summary>The server that operations on <paramref name="id"/> go to now (see the remarks on routing).</summary>
    /// <param name="id">The session id.</param>
    /// <returns>An index into <see cref="Servers"/>.</returns>
    public int Route(ReadOnlySpan<byte> id) => Route(id, exclude: -1);

    /// <summary>Adds a session on the server <paramref name="id"/> routes to. If that link fails before the answer,
    /// the ADD is tried once more on the next connected server.</summary>
    /// <inheritdoc cref="DistcacheClient.AddAsync" path="/param"/>
    /// <inheritdoc cref="DistcacheClient.AddAsync" path="/returns"/>
    /// <inheritdoc cref="DistcacheClient.AddAsync" path="/exception"/>
    public async ValueTask<AddOutcome> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        int first = Route(id.Span);
        try
        {
            return await _servers[first].AddAsync(id, data, timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (DistcacheConnectionException)
        {
            // The link broke under this request (the server died): an ADD is safe to repeat elsewhere, since an id
            // names one session and a second copy of it holds the same data.
            int next = Route(id.Span, exclude: first);
            if (next < 0 || next == first)
            {
                throw;
            }

            return await _servers[next].AddAsync(id, data, timeout, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reads a session from the server <paramref name="id"/> routes to.</summary>
    /// <inheritdoc cref="DistcacheClient.GetAsync(ReadOnlyMemory{byte}, CancellationToken)" path="/param"/>
    /// <inheritdoc cref="DistcacheClient.GetAsync(ReadOnlyMemory{byte}, CancellationToken)" path="/returns"/>
    /// <inheritdoc cref="DistcacheClient.GetAsync(ReadOnlyMemory{byte}, CancellationToken)" path="/exception"/>
    public ValueTask<byte[]?> GetAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) =>
        _servers[Route(id.Span)].GetAsync(id, cancellationToken);

    /// <summary>Reads a session into <paramref name="destination"/> from the server <paramref name="id"/> routes to.</summary>
    /// <inheritdoc cref="DistcacheClient.GetAsync(ReadOnlyMemory{byte}, IBufferWriter{byte}, CancellationToken)" path="/param"/>
    /// <inheritdoc cref="DistcacheClient.GetAsync(ReadOnlyMemory{byte}, IBufferWriter{byte}, CancellationToken)" path="/returns"/>
    /// <inheritdoc cref="DistcacheClient.GetAsync(ReadOnlyMemory{byte}, IBufferWriter{byte}, CancellationToken)" path="/exception"/>
    public ValueTask<GetOutcome> GetAsync(ReadOnlyMemory<byte> id, IBufferWriter<byte> destination, CancellationToken cancellationToken = default) =>
        _servers[Route(id.Span)].GetAsync(id, destination, cancellationToken);

    /// <summary>Removes a session on the server <paramref name="id"/> routes to.</summary>
    /// <inheritdoc cref="DistcacheClient.RemoveAsync" path="/param"/>
    /// <inheritdoc cref="DistcacheClient.RemoveAsync" path="/returns"/>
    /// <inheritdoc cref="DistcacheClient.RemoveAsync" path="/exception"/>
    public ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) =>
        _servers[Route(id.Span)].RemoveAsync(id, cancellationToken);

    /// <summary>Asks the server <paramref name="id"/> routes to whether it holds the session.</summary>
    /// <inheritdoc cref="DistcacheClient.ContainsAsync" path="/param"/>
    /// <inheritdoc cref="DistcacheClient.ContainsAsync" path="/returns"/>
    /// <inheritdoc cref="DistcacheClient.ContainsAsync" path="/exception"/>
    public ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) =>
        _servers[Route(id.Span)].ContainsAsync(id, cancellationToken);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        foreach (DistcacheClient server in _servers)
        {
            await server.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (DistcacheClient server in _servers)
        {
            server.Dispose();
        }
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"ShardedDistcacheClient({string.Join(", ", _servers.Select(s => $"{s.Address} {(s.IsConnected ? "connected" : "not connected")}"))})";

    // The one place a server's link is made: per-server settings (TLS among them) go here.
    private static DistcacheClient CreateLink(DistcacheClientOptions template, Address server) =>
        DistcacheClient.Connect(template.ForServer(server));

    private int Route(ReadOnlySpan<byte> id, int exclude)
    {
        Span<bool> live = _servers.Length <= 256 ? stackalloc bool[_servers.Length] : new bool[_servers.Length];
        for (int i = 0; i < _servers.Length; i++)
        {
            live[i] = i != exclude && _servers[i].IsConnected;
        }

        int chosen = Ring.FirstUsable(id, live);
        return chosen >= 0 ? chosen : exclude >= 0 ? -1 : Ring.Owner(id);
    }
}
