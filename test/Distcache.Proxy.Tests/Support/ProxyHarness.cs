using System.Diagnostics;
using Distcache.EndToEnd.Tests.Support;
using Distcache.Networking;

namespace Distcache.Proxy.Tests.Support;

/// <summary>A <see cref="DistcacheProxy"/> running in this process on a unix socket in a temporary folder.</summary>
internal sealed class ProxyHarness : IAsyncDisposable
{
    private readonly TempDir _dir = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly NetworkListener _listener;
    private readonly Task _running;
    private bool _stopped;

    private ProxyHarness(DistcacheProxyOptions options)
    {
        SocketPath = _dir.File("proxy.sock");
        // Both ends on the native transport where it runs, as dc_client has them.
        _listener = NetworkListener.Listen(Address.Parse("UNIX:" + SocketPath), new ListenerOptions { NativeTransport = true });
        Proxy = new DistcacheProxy(options, Logs);
        _running = Proxy.RunAsync(_listener, _stop.Token);
    }

    public DistcacheProxy Proxy { get; }

    public ProxyStatistics Statistics => Proxy.Statistics;

    public ListLogger<DistcacheProxy> Logs { get; } = new();

    public string SocketPath { get; }

    public Task Running => _running;

    /// <summary>Starts a proxy for <paramref name="options"/> and waits until its link is up (unless told not to).</summary>
    public static async Task<ProxyHarness> StartAsync(DistcacheProxyOptions options, bool waitForLink = true)
    {
        var harness = new ProxyHarness(options);
        if (waitForLink)
        {
            await harness.WaitForLinkAsync(up: true);
        }

        return harness;
    }

    public static DistcacheProxyOptions Options(Address server, int retryMilliseconds = 100, int timeoutMilliseconds = 5000, int idleMilliseconds = 0) => new()
    {
        Server = server,
        RetryInterval = TimeSpan.FromMilliseconds(retryMilliseconds),
        OperationTimeout = TimeSpan.FromMilliseconds(timeoutMilliseconds),
        IdleTimeout = TimeSpan.FromMilliseconds(idleMilliseconds),
        NativeTransport = true,
    };

    public Task<TestClient> ConnectAsync() => TestClient.ConnectAsync(SocketPath);

    public async Task WaitForLinkAsync(bool up, TimeSpan? timeout = null)
    {
        var clock = Stopwatch.StartNew();
        while (Proxy.IsServerConnected != up)
        {
            if (clock.Elapsed > (timeout ?? TestClient.DefaultTimeout))
            {
                throw new TimeoutException($"the server link did not go {(up ? "up" : "down")} within {clock.Elapsed}. Log:\n{Logs}");
            }

            await Task.Delay(5);
        }
    }

    /// <summary>Waits until <paramref name="condition"/> holds, failing after the timeout.</summary>
    public async Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > (timeout ?? TestClient.DefaultTimeout))
            {
                throw new TimeoutException($"{what}: not within {clock.Elapsed}. Log:\n{Logs}");
            }

            await Task.Delay(5);
        }
    }

    /// <summary>Shuts the proxy down as SIGTERM would, bounded.</summary>
    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        await _stop.CancelAsync();
        await _running.WaitAsync(TimeSpan.FromSeconds(20));
        _listener.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stop.Dispose();
        _dir.Dispose();
    }
}
