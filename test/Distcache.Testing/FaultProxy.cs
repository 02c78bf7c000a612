using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace Distcache.Testing;

/// <summary>
/// A TCP proxy on a loopback port that forwards each accepted connection to an upstream endpoint and injures the
/// traffic on demand: added latency, a bandwidth cap, silence, a reset after a given number of bytes (mid-frame
/// if you choose the count so), and injected garbage. Faults are set per direction (<see cref="ToServer"/>,
/// <see cref="ToClient"/>) and may be changed while connections are open.
/// </summary>
/// <remarks>
/// Each direction of each connection has a reader, which reads as fast as the source sends and stamps each chunk
/// with its arrival time, and a writer, which applies the faults. A half-close is passed on once everything read
/// before it is delivered; a reset (or a failure) on one side resets the other.
/// </remarks>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly EndPoint _upstream;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<long, Pair> _pairs = new();
    private readonly Task _accepting;
    private long _accepted;
    private long _resets;

    private FaultProxy(EndPoint upstream)
    {
        _upstream = upstream;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(128);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _accepting = AcceptLoopAsync();
    }

    /// <summary>Where clients connect (127.0.0.1 and a port the kernel chose).</summary>
    public IPEndPoint EndPoint { get; }

    /// <summary>The proxy's address in libnal syntax, <c>IP:127.0.0.1:port</c>.</summary>
    public string Address => $"IP:127.0.0.1:{EndPoint.Port}";

    /// <summary>Faults applied to what clients send towards the upstream server.</summary>
    public FaultSettings ToServer { get; } = new();

    /// <summary>Faults applied to what the upstream server sends back to clients.</summary>
    public FaultSettings ToClient { get; } = new();

    /// <summary>Connections accepted since start.</summary>
    public long ConnectionsAccepted => Interlocked.Read(ref _accepted);

    /// <summary>Connections open now.</summary>
    public int OpenConnections => _pairs.Count;

    /// <summary>Connections reset by an armed <see cref="FaultSettings.ResetAfter"/> or <see cref="ResetAll"/>.</summary>
    public long Resets => Interlocked.Read(ref _resets);

    /// <summary>Starts a proxy to a TCP endpoint.</summary>
    public static FaultProxy Start(EndPoint upstream)
    {
        ArgumentNullException.ThrowIfNull(upstream);
        return new FaultProxy(upstream);
    }

    /// <summary>Starts a proxy to an <c>IP:host:port</c> address (the form dc_server prints).</summary>
    public static FaultProxy Start(string upstreamAddress)
    {
        ArgumentNullException.ThrowIfNull(upstreamAddress);
        string[] parts = upstreamAddress.Split(':');
        if (parts.Length != 3 || parts[0] != "IP")
        {
            throw new ArgumentException($"expected IP:host:port, got {upstreamAddress}", nameof(upstreamAddress));
        }

        return Start(new IPEndPoint(IPAddress.Parse(parts[1]), int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture)));
    }

    /// <summary>Sends <paramref name="garbage"/> on every open connection in one direction, after what is already
    /// queued there (the faults of that direction apply to it like to any other bytes).</summary>
    public void Inject(FaultDirection direction, ReadOnlySpan<byte> garbage)
    {
        byte[] copy = garbage.ToArray();
        foreach (Pair pair in _pairs.Values)
        {
            (direction == FaultDirection.ToServer ? pair.ToServer : pair.ToClient).Queue.Writer.TryWrite(new Chunk(copy, Stopwatch.GetTimestamp()));
        }
    }

    /// <summary>Resets every open connection on both sides at once.</summary>
    public void ResetAll()
    {
        foreach (Pair pair in _pairs.Values)
        {
            Interlocked.Increment(ref _resets);
            pair.Reset();
        }
    }

    /// <summary>Stops accepting and resets every open connection.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        foreach (Pair pair in _pairs.Values)
        {
            pair.Reset();
        }

        try
        {
            await _accepting.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                return;
            }

            long id = Interlocked.Increment(ref _accepted);
            _ = Task.Run(() => ServeAsync(id, client));
        }
    }

    private async Task ServeAsync(long id, Socket client)
    {
        client.NoDelay = true;
        var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await server.ConnectAsync(_upstream, _stop.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // Nothing upstream: the client sees a reset, as it would connecting to the server directly.
            Abort(client);
            server.Dispose();
            return;
        }

        var pair = new Pair(this, client, server);
        _pairs[id] = pair;
        try
        {
            await pair.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            _pairs.TryRemove(id, out _);
            client.Dispose();
            server.Dispose();
        }
    }

    private static void Abort(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
            socket.Close();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    private readonly record struct Chunk(byte[] Bytes, long ReadAt);

    private sealed class Lane(Socket from, Socket to, FaultSettings faults)
    {
        public Socket From { get; } = from;

        public Socket To { get; } = to;

        public FaultSettings Faults { get; } = faults;

        public Channel<Chunk> Queue { get; } = Channel.CreateUnbounded<Chunk>(new UnboundedChannelOptions { SingleReader = true });
    }

    private sealed class Pair
    {
        private readonly FaultProxy _owner;
        private readonly Socket _client;
        private readonly Socket _server;
        private int _reset;

        public Pair(FaultProxy owner, Socket client, Socket server)
        {
            _owner = owner;
            _client = client;
            _server = server;
            ToServer = new Lane(client, server, owner.ToServer);
            ToClient = new Lane(server, client, owner.ToClient);
        }

        public Lane ToServer { get; }

        public Lane ToClient { get; }

        public Task RunAsync() => Task.WhenAll(ReadAsync(ToServer), WriteAsync(ToServer), ReadAsync(ToClient), WriteAsync(ToClient));

        public void Reset()
        {
            if (Interlocked.Exchange(ref _reset, 1) != 0)
            {
                return;
            }

            Abort(_client);
            Abort(_server);
            ToServer.Queue.Writer.TryComplete();
            ToClient.Queue.Writer.TryComplete();
        }

        private async Task ReadAsync(Lane lane)
        {
            var buffer = new byte[16 * 1024];
            try
            {
                while (true)
                {
                    int n = await lane.From.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                    if (n == 0)
                    {
                        // End of stream: the writer passes it on once it has delivered everything before it.
                        lane.Queue.Writer.TryComplete();
                        return;
                    }

                    lane.Queue.Writer.TryWrite(new Chunk(buffer.AsSpan(0, n).ToArray(), Stopwatch.GetTimestamp()));
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                Reset();
            }
        }

        private async Task WriteAsync(Lane lane)
        {
            try
            {
                await foreach (Chunk chunk in lane.Queue.Reader.ReadAllAsync().ConfigureAwait(false))
                {
                    if (!await DeliverAsync(lane, chunk).ConfigureAwait(false))
                    {
                        return;
                    }
                }

                if (Volatile.Read(ref _reset) == 0)
                {
                    lane.To.Shutdown(SocketShutdown.Send);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                Reset();
            }
        }

        /// <summary>Delivers one chunk under the lane's faults; false once the connection has been reset.</summary>
        private async Task<bool> DeliverAsync(Lane lane, Chunk chunk)
        {
            FaultSettings faults = lane.Faults;
            while (faults.Silent && Volatile.Read(ref _reset) == 0)
            {
                await Task.Delay(5).ConfigureAwait(false);
            }

            TimeSpan due = faults.Delay - Stopwatch.GetElapsedTime(chunk.ReadAt);
            if (due > TimeSpan.Zero)
            {
                await Task.Delay(due).ConfigureAwait(false);
            }

            int offset = 0;
            while (offset < chunk.Bytes.Length)
            {
                if (Volatile.Read(ref _reset) != 0)
                {
                    return false;
                }

                // Under a bandwidth cap, send in slices of about 20 ms each so the rate is smooth.
                long rate = faults.BytesPerSecond;
                int slice = chunk.Bytes.Length - offset;
                if (rate > 0)
                {
                    slice = (int)Math.Clamp(rate / 50, 1, slice);
                }

                (int allowed, bool resetAfter) = faults.Claim(slice);
                if (allowed > 0)
                {
                    await lane.To.SendAsync(chunk.Bytes.AsMemory(offset, allowed), SocketFlags.None).ConfigureAwait(false);
                    offset += allowed;
                }

                if (resetAfter)
                {
                    Interlocked.Increment(ref _owner._resets);
                    Reset();
                    return false;
                }

                if (rate > 0)
                {
                    await Task.Delay(TimeSpan.FromSeconds((double)allowed / rate)).ConfigureAwait(false);
                }
            }

            return true;
        }
    }
}

/// <summary>One direction of a proxied connection.</summary>
public enum FaultDirection
{
    /// <summary>From the client towards the upstream server.</summary>
    ToServer,

    /// <summary>From the upstream server back to the client.</summary>
    ToClient,
}
