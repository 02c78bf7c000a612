using Distcache.Networking;

namespace Distcache.Testing;

/// <summary>
/// A service's accept loop (<c>DistcacheServer.RunAsync</c>, <c>DistcacheProxy.RunAsync</c>, ...) running in this
/// process on a listener, stopped the way a shutdown signal stops it, with a bound on every wait.
/// </summary>
public sealed class InProcessHost : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private int _stopped;

    private InProcessHost(NetworkListener listener, Func<NetworkListener, CancellationToken, Task> run)
    {
        Listener = listener;
        Running = run(listener, _stop.Token);
    }

    /// <summary>The listener the loop accepts on.</summary>
    public NetworkListener Listener { get; }

    /// <summary>Where clients connect.</summary>
    public Address Address => Listener.LocalAddress;

    /// <summary>The loop; it completes once the service has shut down.</summary>
    public Task Running { get; }

    /// <summary>Runs <paramref name="run"/> on <paramref name="listener"/> until stopped; the host owns the listener.</summary>
    /// <param name="listener">The listener.</param>
    /// <param name="run">The accept loop: runs until the token it is given is cancelled.</param>
    /// <returns>The running host.</returns>
    public static InProcessHost Start(NetworkListener listener, Func<NetworkListener, CancellationToken, Task> run)
    {
        ArgumentNullException.ThrowIfNull(listener);
        ArgumentNullException.ThrowIfNull(run);
        return new InProcessHost(listener, run);
    }

    /// <summary>Shuts the service down as SIGTERM would: cancels the loop, waits for it to finish (failing after
    /// <paramref name="timeout"/>, 20 s by default), then closes the listener. Later calls do nothing.</summary>
    /// <param name="timeout">How long the shutdown may take.</param>
    /// <returns>A task that completes once the service has shut down.</returns>
    public async Task StopAsync(TimeSpan? timeout = null)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync();
        try
        {
            await Running.WaitAsync(timeout ?? TimeSpan.FromSeconds(20));
        }
        finally
        {
            Listener.Dispose();
        }
    }

    /// <summary>Stops accepting at once: cancels the loop and closes the listener without waiting, so that the
    /// address is free again straight away. Later calls (and <see cref="StopAsync"/>) do nothing.</summary>
    public void Abort()
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }

        _stop.Cancel();
        Listener.Dispose();
    }

    /// <summary>Stops the service (see <see cref="StopAsync"/>) if that was not done.</summary>
    /// <returns>A task that completes once it has shut down.</returns>
    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stop.Dispose();
    }
}
