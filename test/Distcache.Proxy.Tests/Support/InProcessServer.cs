using System.Globalization;
using Distcache.Networking;
using Distcache.Server;
using Distcache.Storage;

namespace Distcache.Proxy.Tests.Support;

/// <summary>A real <see cref="DistcacheServer"/> over an unbounded memory store, on loopback TCP, in this process.</summary>
internal sealed class InProcessServer : IAsyncDisposable
{
    private readonly NetworkListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _running;
    private bool _stopped;

    private InProcessServer(NetworkListener listener)
    {
        _listener = listener;
        Store = new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 0 });
        Server = new DistcacheServer(Store);
        _running = Server.RunAsync(_listener, _stop.Token);
    }

    public MemorySessionStore Store { get; }

    public DistcacheServer Server { get; }

    public Address Address => _listener.LocalAddress;

    public int Port => _listener.LocalAddress.Port;

    /// <summary>Starts a server on an ephemeral port, or on <paramref name="port"/> (to come back where a stopped one was).</summary>
    public static InProcessServer Start(int port = 0) =>
        new(NetworkListener.Listen(Address.Parse(string.Create(CultureInfo.InvariantCulture, $"IP:127.0.0.1:{port}"))));

    /// <summary>Stops accepting and closes every connection (the proxy sees its link end).</summary>
    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        await _stop.CancelAsync();
        await _running.WaitAsync(TimeSpan.FromSeconds(10));
        _listener.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        Store.Dispose();
        _stop.Dispose();
    }
}
