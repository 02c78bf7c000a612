using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Testing;

/// <summary>
/// A loopback TCP listener that plays a distcache server byte by byte, right or wrong. Each accepted connection is
/// either handed to the test's script, which reads requests and writes whatever bytes it wants, or (with no script)
/// queued for the test to take with <see cref="NextConnectionAsync"/> and drive step by step.
/// </summary>
public sealed class FakeServer : IAsyncDisposable
{
    /// <summary>How long a step-by-step wait (<see cref="NextConnectionAsync"/>,
    /// <see cref="FakeConnection.NextRequestAsync"/>) lasts unless told otherwise.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _listener;
    private readonly Func<FakeConnection, Task>? _script;
    private readonly Channel<FakeConnection> _unscripted = Channel.CreateUnbounded<FakeConnection>();
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _accepting = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Task> _handlers = [];
    private readonly List<FakeConnection> _connections = [];
    private readonly Task _acceptLoop;
    private long _bytesReceived;
    private int _accepted;

    /// <summary>Starts listening on a free loopback port.</summary>
    /// <param name="script">Plays each accepted connection (the connection is closed when it returns); null queues
    /// the connections for <see cref="NextConnectionAsync"/> instead.</param>
    /// <param name="backlog">The listen backlog.</param>
    /// <param name="accepting">False to accept nothing until <see cref="StartAccepting"/> (connections wait in the
    /// backlog meanwhile).</param>
    public FakeServer(Func<FakeConnection, Task>? script = null, int backlog = 511, bool accepting = true)
    {
        _script = script;
        Stopping = _stop.Token;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(backlog);
        Address = Address.Parse($"IP:127.0.0.1:{((IPEndPoint)_listener.LocalEndPoint!).Port}");
        if (accepting)
        {
            _accepting.SetResult();
        }

        _acceptLoop = AcceptLoopAsync();
    }

    /// <summary>Where clients connect.</summary>
    public Address Address { get; }

    /// <summary>Connections accepted so far.</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>Bytes received over all connections.</summary>
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    /// <summary>What <see cref="FakeConnection.ServeWellAsync"/> answers every GET with.</summary>
    public static byte[] GoodData { get; } = "healthy session data"u8.ToArray();

    /// <summary>Cancelled when the server is disposed (kept apart from its source, which disposal disposes).</summary>
    internal CancellationToken Stopping { get; }

    /// <summary>Starts accepting, for a server made with <c>accepting: false</c>.</summary>
    public void StartAccepting() => _accepting.TrySetResult();

    /// <summary>The next connection no script took, in the order they were accepted.</summary>
    /// <param name="timeout">How long to wait (<see cref="DefaultTimeout"/> if null).</param>
    /// <returns>The connection.</returns>
    public async Task<FakeConnection> NextConnectionAsync(TimeSpan? timeout = null) =>
        await _unscripted.Reader.ReadAsync().AsTask().WaitAsync(timeout ?? DefaultTimeout);

    /// <summary>Waits until <paramref name="count"/> connections have been accepted.</summary>
    /// <param name="count">How many.</param>
    /// <param name="timeout">How long to wait.</param>
    /// <returns>A task that completes once they have.</returns>
    public Task WaitForConnectionsAsync(int count, TimeSpan timeout) =>
        Poll.UntilAsync(() => Accepted >= count, timeout, $"{count} connections", () => $"{Accepted} accepted");

    /// <summary>Stops accepting, resets every connection and waits (bounded) for the scripts to end.</summary>
    /// <returns>A task that completes once they have, or the wait has ended.</returns>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _acceptLoop.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        Task[] handlers;
        lock (_connections)
        {
            foreach (var connection in _connections)
            {
                connection.Reset();
            }

            handlers = [.. _handlers];
        }

        await Task.WhenAll(handlers).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }

    internal void CountReceived(int bytes) => Interlocked.Add(ref _bytesReceived, bytes);

    private async Task AcceptLoopAsync()
    {
        try
        {
            await _accepting.Task.WaitAsync(Stopping);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        while (!Stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(Stopping);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            var connection = new FakeConnection(this, socket, Interlocked.Increment(ref _accepted) - 1);
            lock (_connections)
            {
                _connections.Add(connection);
                if (_script is not null)
                {
                    _handlers.Add(RunAsync(_script, connection));
                }
            }

            if (_script is null)
            {
                _unscripted.Writer.TryWrite(connection);
            }
        }
    }

    private static async Task RunAsync(Func<FakeConnection, Task> script, FakeConnection connection)
    {
        try
        {
            await script(connection);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or IOException or InvalidDataException)
        {
            // The client went away, sent bytes that break the protocol, or the test ended: a script needs no more
            // than that, and a real server would drop the connection too.
        }
        finally
        {
            connection.Close();
        }
    }
}

/// <summary>One connection accepted by a <see cref="FakeServer"/>, as the server sees it.</summary>
public sealed class FakeConnection
{
    private readonly FakeServer _server;
    private readonly MessageBuffer _received = new(MessageDirection.Requests);

    internal FakeConnection(FakeServer server, Socket socket, int index)
    {
        _server = server;
        Socket = socket;
        Index = index;
    }

    /// <summary>0 for the first connection accepted, 1 for the next, ...</summary>
    public int Index { get; }

    /// <summary>The socket, for a script that reads and writes raw bytes itself.</summary>
    public Socket Socket { get; }

    /// <summary>Cancelled when the server is disposed; a script passes it to the socket calls it makes itself.</summary>
    public CancellationToken Stopping => _server.Stopping;

    /// <summary>Reads the next whole request; null if the client closed the connection first. Throws
    /// <see cref="InvalidDataException"/> on bytes that break the protocol.</summary>
    /// <returns>The request, or null.</returns>
    public Task<Received?> ReceiveAsync() => ReceiveAsync(Stopping);

    /// <summary>The next whole request, which must come within the time; throws
    /// <see cref="EndOfStreamException"/> if the client closes the connection first.</summary>
    /// <param name="timeout">How long to wait (<see cref="FakeServer.DefaultTimeout"/> if null).</param>
    /// <returns>The request.</returns>
    public async Task<Received> NextRequestAsync(TimeSpan? timeout = null)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(Stopping);
        limit.CancelAfter(timeout ?? FakeServer.DefaultTimeout);
        return await ReceiveAsync(limit.Token) ?? throw new EndOfStreamException("the client closed the connection");
    }

    /// <summary>Takes a request that has already arrived whole, without reading; for answering a pipeline in one
    /// write.</summary>
    /// <param name="request">The request, or null.</param>
    /// <returns>Whether one was there.</returns>
    public bool TryTakeReceived(out Received? request) => _received.TryDecode(out request);

    /// <summary>Reads until the client closes, counting what it sends.</summary>
    /// <returns>A task that completes at the end of the stream.</returns>
    public async Task DrainAsync()
    {
        var scratch = new byte[4096];
        while (true)
        {
            int read = await Socket.ReceiveAsync(scratch, SocketFlags.None, Stopping);
            if (read == 0)
            {
                return;
            }

            _server.CountReceived(read);
        }
    }

    /// <summary>Sends raw bytes.</summary>
    /// <param name="bytes">The bytes.</param>
    /// <returns>A task that completes once they are sent.</returns>
    public async Task SendAsync(byte[] bytes)
    {
        await Socket.SendAsync(bytes, SocketFlags.None, Stopping);
    }

    /// <summary>Answers every request correctly until the client closes.</summary>
    /// <returns>A task that completes at the end of the stream.</returns>
    public async Task ServeWellAsync()
    {
        while (await ReceiveAsync() is { } request)
        {
            await SendAsync(request.Operation == Operation.Get
                ? Frames.Data(request.Uid, Operation.Get, FakeServer.GoodData)
                : Frames.Status(request.Uid, request.Operation, StatusCode.Ok));
        }
    }

    /// <summary>True if the client closes (or resets) the connection within the time; what it sends meanwhile is
    /// dropped.</summary>
    /// <param name="timeout">How long to wait.</param>
    /// <returns>Whether it closed.</returns>
    public async Task<bool> ClosesWithinAsync(TimeSpan timeout)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(Stopping);
        limit.CancelAfter(timeout);
        var scratch = new byte[4096];
        try
        {
            while (await Socket.ReceiveAsync(scratch, SocketFlags.None, limit.Token) > 0)
            {
            }

            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    /// <summary>Closes in order (FIN).</summary>
    public void Close()
    {
        try
        {
            Socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        Socket.Dispose();
    }

    /// <summary>Closes with a reset (RST).</summary>
    public void Reset()
    {
        try
        {
            Socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        Socket.Dispose();
    }

    private async Task<Received?> ReceiveAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_received.TryDecode(out Received? request))
            {
                return request;
            }

            int read = await Socket.ReceiveAsync(_received.GetFreeSpace(), SocketFlags.None, cancellationToken);
            if (read == 0)
            {
                return null;
            }

            _server.CountReceived(read);
            _received.Commit(read);
        }
    }
}
