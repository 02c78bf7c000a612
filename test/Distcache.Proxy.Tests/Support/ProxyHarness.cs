using Distcache.Networking;
using Microsoft.Extensions.Logging;

namespace Distcache.Proxy.Tests.Support;

/// <summary>A <see cref="DistcacheProxy"/> running in this process on a unix socket in a temporary folder.</summary>
internal sealed class ProxyHarness : IAsyncDisposable
{
    private readonly TempDir _dir = new();
    private readonly InProcessHost _host;

    private ProxyHarness(DistcacheProxyOptions options)
    {
        SocketPath = _dir.File("proxy.sock");
        // Both ends on the native transport where it runs, as dc_client has them.
        var listener = NetworkListener.Listen(Address.Parse("UNIX:" + SocketPath), new ListenerOptions { NativeTransport = true });
        Proxy = new DistcacheProxy(options, Logs.CreateLogger<DistcacheProxy>());
        _host = InProcessHost.Start(listener, Proxy.RunAsync);
    }

    public DistcacheProxy Proxy { get; }

    public ProxyStatistics Statistics => Proxy.Statistics;

    public LogCapture Logs { get; } = new();

    public string SocketPath { get; }

    public Task Running => _host.Running;

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

    public Task WaitForLinkAsync(bool up, TimeSpan? timeout = null) =>
        WaitUntilAsync(() => Proxy.IsServerConnected == up, $"the server link to go {(up ? "up" : "down")}", timeout);

    /// <summary>Waits until <paramref name="condition"/> holds, failing with the proxy's log after the timeout.</summary>
    public Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null) =>
        Poll.UntilAsync(condition, timeout ?? TestClient.DefaultTimeout, what, () => $"Log:\n{Logs}", TimeSpan.FromMilliseconds(5));

    /// <summary>Shuts the proxy down as SIGTERM would, bounded.</summary>
    public Task StopAsync() => _host.StopAsync();

    public async ValueTask DisposeAsync()
    {
        await _host.DisposeAsync();
        _dir.Dispose();
    }
}
