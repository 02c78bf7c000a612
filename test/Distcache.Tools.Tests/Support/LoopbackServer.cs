using System.Net;
using System.Net.Sockets;

namespace Distcache.Tools.Tests.Support;

/// <summary>
/// The part every in-test TCP server shares: a loopback listener on a free port, an accept loop that serves each
/// connection on its own task, and a disposal that stops accepting and waits (bounded) for the connections.
/// </summary>
internal abstract class LoopbackServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _connections = [];
    private Task _accepting = Task.CompletedTask;

    public string Address => $"IP:127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    /// <summary>Cancelled when the server is disposed; connection loops pass it to every socket call.</summary>
    protected CancellationToken Stopping => _stop.Token;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        try
        {
            await _accepting;
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }

        Task[] connections;
        lock (_connections)
        {
            connections = [.. _connections];
        }

        await Task.WhenAll(connections).WaitAsync(TimeSpan.FromSeconds(10));
        await OnStoppedAsync();
        _stop.Dispose();
    }

    /// <summary>Starts listening; a subclass calls it at the end of its constructor, once its fields are set.</summary>
    protected void Start()
    {
        _listener.Start();
        _accepting = AcceptLoopAsync();
    }

    /// <summary>Serves one accepted connection; the socket is disposed afterwards.</summary>
    protected abstract Task ServeAsync(Socket socket);

    /// <summary>Releases what a subclass holds, after every connection has ended.</summary>
    protected virtual ValueTask OnStoppedAsync() => ValueTask.CompletedTask;

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket = await _listener.AcceptSocketAsync(_stop.Token);
            lock (_connections)
            {
                _connections.Add(ServeAndCloseAsync(socket));
            }
        }
    }

    private async Task ServeAndCloseAsync(Socket socket)
    {
        using (socket)
        {
            await ServeAsync(socket);
        }
    }
}
