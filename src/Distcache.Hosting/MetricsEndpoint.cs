using System.Text;
using Distcache.Networking;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Hosting;

/// <summary>
/// The tools' <c>-metrics ADDRESS</c> endpoint: a minimal HTTP/1.1 server answering <c>GET /metrics</c> (and
/// <c>HEAD</c>) with the Prometheus text exposition of the named meters, one request per connection. It runs on the
/// project's own listener (the address syntax, the binding and its errors are those of <c>-listen</c>) and is not a
/// general web server: it reads a request head of at most 8 KiB within 5 seconds, answers, and closes.
/// </summary>
public sealed class MetricsEndpoint : IAsyncDisposable
{
    /// <summary>The path the exposition is served on.</summary>
    public const string Path = "/metrics";

    private const int MaxHeadBytes = 8192;
    private const int MaxConcurrentScrapes = 8;
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);

    private readonly NetworkListener _listener;
    private readonly MetricsCollector _collector;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private Task _running = Task.CompletedTask;
    private int _scrapes;

    private MetricsEndpoint(NetworkListener listener, MetricsCollector collector, ILogger logger)
    {
        _listener = listener;
        _collector = collector;
        _logger = logger;
    }

    /// <summary>Where the endpoint listens (with the port the system chose, when port 0 was given).</summary>
    public Address LocalAddress => _listener.LocalAddress;

    /// <summary>Whether an address can serve metrics: only TCP (IPv4 or IPv6, a host or all interfaces).</summary>
    /// <param name="address">The address.</param>
    /// <returns>True for <c>IP:</c> and <c>IPv6:</c> addresses.</returns>
    public static bool CanServe(Address address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return address.Kind is AddressKind.IPv4 or AddressKind.IPv6;
    }

    /// <summary>Binds the endpoint; it serves once <see cref="Start"/> is called. On failure writes
    /// <c>Error, failed to listen on ADDRESS for -metrics: why</c> to standard error and returns null.</summary>
    /// <param name="address">A TCP address (<see cref="CanServe"/>).</param>
    /// <param name="meterNames">The meters to expose.</param>
    /// <param name="logger">Where failed scrapes are logged.</param>
    /// <returns>The endpoint, or null.</returns>
    public static async Task<MetricsEndpoint?> TryListenAsync(Address address, string[] meterNames, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (!CanServe(address))
        {
            throw new ArgumentException($"metrics are served over TCP only, not on {address}", nameof(address));
        }

        NetworkListener listener;
        try
        {
            listener = NetworkListener.Listen(address, new ListenerOptions { Logger = logger });
        }
        catch (Exception e) when (e is NetworkException or ArgumentException or IOException or UnauthorizedAccessException
            or System.Net.Sockets.SocketException or PlatformNotSupportedException)
        {
            await Console.Error.WriteLineAsync($"Error, failed to listen on {address} for -metrics: {e.Message}").ConfigureAwait(false);
            return null;
        }

        return new MetricsEndpoint(listener, new MetricsCollector(meterNames), logger ?? NullLogger.Instance);
    }

    /// <summary>Writes where the endpoint listens, and a warning when other hosts can reach it.</summary>
    /// <param name="output">Standard error, normally.</param>
    /// <returns>A task that completes once written.</returns>
    public async Task AnnounceAsync(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        await output.WriteLineAsync($"Info, metrics on {LocalAddress} (GET {Path})").ConfigureAwait(false);
        if (SecurityParsers.IsReachableFromOtherHosts(LocalAddress))
        {
            // The figures are no secret of the sessions', but they tell anyone how busy the cache is and who uses it.
            await output.WriteLineAsync(
                $"Warning, metrics on {LocalAddress}, which other hosts can reach: anyone who can connect can read the figures (not the sessions). Give a loopback address (e.g. -metrics IP:127.0.0.1:9101) unless a scraper on another host needs it; see docs/operations.md").ConfigureAwait(false);
        }
    }

    /// <summary>Starts answering scrapes, until disposed.</summary>
    public void Start() => _running = Task.Run(() => AcceptLoopAsync(_stop.Token));

    /// <summary>Stops answering and closes the listening socket.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _listener.DisposeAsync().ConfigureAwait(false);
        await _running.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _collector.Dispose();
        _stop.Dispose();
    }

    /// <summary>Disposes an endpoint that may not exist (no <c>-metrics</c>), for <c>await using</c>.</summary>
    /// <param name="Endpoint">The endpoint, or null.</param>
    public readonly record struct Owner(MetricsEndpoint? Endpoint) : IAsyncDisposable
    {
        /// <inheritdoc/>
        public ValueTask DisposeAsync() => Endpoint?.DisposeAsync() ?? ValueTask.CompletedTask;
    }

    /// <summary>The response to one request head: status line, headers and body.</summary>
    /// <param name="head">The request line and headers, as received.</param>
    /// <param name="render">Renders the exposition (called only for a scrape).</param>
    /// <returns>The bytes to send.</returns>
    internal static byte[] Respond(string head, Func<string> render)
    {
        int lineEnd = head.IndexOf("\r\n", StringComparison.Ordinal);
        string[] parts = (lineEnd < 0 ? head : head[..lineEnd]).Split(' ');
        if (parts.Length != 3 || !parts[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
        {
            return Response("400 Bad Request", "text/plain; charset=utf-8", "not an HTTP/1.x request\n", includeBody: true);
        }

        string method = parts[0];
        string target = parts[1];
        int query = target.IndexOf('?', StringComparison.Ordinal);
        string path = query < 0 ? target : target[..query];
        if (method is not ("GET" or "HEAD"))
        {
            return Response("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET and HEAD\n", includeBody: true, "Allow: GET, HEAD\r\n");
        }

        return path == Path
            ? Response("200 OK", PrometheusExposition.ContentType, render(), includeBody: method == "GET")
            : Response("404 Not Found", "text/plain; charset=utf-8", $"the metrics are at {Path}\n", includeBody: method == "GET");
    }

    private static byte[] Response(string status, string contentType, string body, bool includeBody, string extraHeaders = "")
    {
        byte[] content = Encoding.UTF8.GetBytes(body);
        string head = $"HTTP/1.1 {status}\r\nContent-Type: {contentType}\r\nContent-Length: {content.Length}\r\nConnection: close\r\n{extraHeaders}\r\n";
        byte[] headBytes = Encoding.ASCII.GetBytes(head);
        return includeBody ? [.. headBytes, .. content] : headBytes;
    }

    private async Task AcceptLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            NetworkConnection connection;
            try
            {
                connection = await _listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (NetworkException e)
            {
                // Out of descriptors, typically: the cache's own connections matter more; try again shortly.
                Log.MetricsAcceptFailed(_logger, e.Message);
                await Task.Delay(100, CancellationToken.None).ConfigureAwait(false);
                continue;
            }

            // A scraper that opens many connections and sends nothing must not tie up more than a few.
            if (Interlocked.Increment(ref _scrapes) > MaxConcurrentScrapes)
            {
                Interlocked.Decrement(ref _scrapes);
                connection.Abort();
                await connection.DisposeAsync().ConfigureAwait(false);
                continue;
            }

            _ = ServeAsync(connection, cancellationToken);
        }
    }

    private async Task ServeAsync(NetworkConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(RequestTimeout);
            Stream stream = connection.Stream;
            string? head = await ReadHeadAsync(stream, deadline.Token).ConfigureAwait(false);
            byte[] response = head is null
                ? Response("400 Bad Request", "text/plain; charset=utf-8", $"request head too long or incomplete (at most {MaxHeadBytes} bytes)\n", includeBody: true)
                : Respond(head, () => PrometheusExposition.Render(_collector.Collect()));
            await stream.WriteAsync(response, deadline.Token).ConfigureAwait(false);
            await stream.FlushAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or NetworkException)
        {
            // The scraper went away or stalled; it only loses its own answer.
            connection.Abort();
        }
        catch (Exception e)
        {
            // A bug in an instrument's callback must cost one scrape, never the process.
            Log.MetricsScrapeFailed(_logger, connection.PeerDescription, e);
            connection.Abort();
        }
        finally
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            Interlocked.Decrement(ref _scrapes);
        }
    }

    // Reads up to the blank line that ends the head; null if the peer stops first or the head is too long.
    private static async Task<string?> ReadHeadAsync(Stream stream, CancellationToken cancellationToken)
    {
        byte[] buffer = new byte[MaxHeadBytes];
        int filled = 0;
        while (filled < buffer.Length)
        {
            int read = await stream.ReadAsync(buffer.AsMemory(filled), cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                return null;
            }

            filled += read;
            int end = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8);
            if (end >= 0)
            {
                return Encoding.ASCII.GetString(buffer, 0, end + 2);
            }
        }

        return null;
    }
}
