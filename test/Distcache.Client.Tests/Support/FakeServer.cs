using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Client.Tests.Support;

/// <summary>
/// A loopback listener that plays a distcache server byte by byte: each accepted connection is handed to the
/// test's script, which reads requests and writes whatever bytes the test wants (right or wrong).
/// </summary>
internal sealed class FakeServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly Func<FakeConnection, Task> _script;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _handlers = [];
    private readonly List<FakeConnection> _connections = [];
    private readonly Task _acceptLoop;
    private long _bytesReceived;
    private int _accepted;

    public FakeServer(Func<FakeConnection, Task> script)
    {
        _script = script;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
        Address = Address.Parse($"IP:127.0.0.1:{((IPEndPoint)_listener.LocalEndPoint!).Port}");
        _acceptLoop = AcceptLoopAsync();
    }

    public Address Address { get; }

    /// <summary>Connections accepted so far.</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>Bytes received over all connections.</summary>
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    /// <summary>A script that answers every request correctly: ADD, REMOVE and HAVE with OK, GET with <see cref="GoodData"/>.</summary>
    public static Func<FakeConnection, Task> Healthy { get; } = connection => connection.ServeWellAsync();

    /// <summary>What <see cref="FakeConnection.ServeWellAsync"/> answers every GET with.</summary>
    public static byte[] GoodData { get; } = "healthy session data"u8.ToArray();

    internal void CountReceived(int bytes) => Interlocked.Add(ref _bytesReceived, bytes);

    /// <summary>Waits until <paramref name="count"/> connections have been accepted.</summary>
    public async Task WaitForConnectionsAsync(int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Accepted < count)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"only {Accepted} of {count} connections within {timeout}");
            }

            await Task.Delay(10);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
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

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            var connection = new FakeConnection(this, socket, Interlocked.Increment(ref _accepted) - 1, _stop.Token);
            lock (_connections)
            {
                _connections.Add(connection);
                _handlers.Add(RunAsync(connection));
            }
        }
    }

    private async Task RunAsync(FakeConnection connection)
    {
        try
        {
            await _script(connection);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or EndOfStreamException or IOException)
        {
            // The client went away or the test ended: a script needs no more than that.
        }
        finally
        {
            connection.Close();
        }
    }
}

/// <summary>One connection of a <see cref="FakeServer"/>.</summary>
internal sealed class FakeConnection
{
    private readonly FakeServer _server;
    private readonly Socket _socket;
    private readonly CancellationToken _stop;
    private readonly MessageDecoder _decoder = new(MessageDirection.Requests);
    private byte[] _buffer = new byte[64 * 1024];
    private int _buffered;

    public FakeConnection(FakeServer server, Socket socket, int index, CancellationToken stop)
    {
        _server = server;
        _socket = socket;
        _stop = stop;
        Index = index;
    }

    /// <summary>0 for the first connection accepted, 1 for the next, ...</summary>
    public int Index { get; }

    /// <summary>Reads the next whole request; null if the client closed the connection first.</summary>
    public async Task<Request?> ReceiveAsync()
    {
        while (true)
        {
            var sequence = new ReadOnlySequence<byte>(_buffer, 0, _buffered);
            var reader = new SequenceReader<byte>(sequence);
            var status = _decoder.TryDecode(ref reader, out var message, out var violation);
            if (status == DecodeStatus.Complete)
            {
                var request = new Request(message.RequestUid, message.Operation, message.Payload.ToArray());
                int used = (int)reader.Consumed;
                Buffer.BlockCopy(_buffer, used, _buffer, 0, _buffered - used);
                _buffered -= used;
                return request;
            }

            if (status == DecodeStatus.Violation)
            {
                throw new InvalidDataException($"the client sent a bad request: {violation.Describe()}");
            }

            if (_buffered == _buffer.Length)
            {
                Array.Resize(ref _buffer, _buffer.Length * 2);
            }

            int read = await _socket.ReceiveAsync(_buffer.AsMemory(_buffered), SocketFlags.None, _stop);
            if (read == 0)
            {
                return null;
            }

            _server.CountReceived(read);
            _buffered += read;
        }
    }

    /// <summary>Reads until the client closes, counting what it sends.</summary>
    public async Task DrainAsync()
    {
        var scratch = new byte[4096];
        while (true)
        {
            int read = await _socket.ReceiveAsync(scratch, SocketFlags.None, _stop);
            if (read == 0)
            {
                return;
            }

            _server.CountReceived(read);
        }
    }

    public async Task SendAsync(byte[] bytes)
    {
        await _socket.SendAsync(bytes, SocketFlags.None, _stop);
    }

    /// <summary>Answers every request correctly until the client closes.</summary>
    public async Task ServeWellAsync()
    {
        while (await ReceiveAsync() is { } request)
        {
            await SendAsync(request.Operation == Operation.Get
                ? Wire.Data(request.Uid, Operation.Get, FakeServer.GoodData)
                : Wire.Status(request.Uid, request.Operation, StatusCode.Ok));
        }
    }

    /// <summary>Closes in order (FIN).</summary>
    public void Close()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        _socket.Dispose();
    }

    /// <summary>Closes with a reset (RST).</summary>
    public void Reset()
    {
        try
        {
            _socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        _socket.Dispose();
    }
}

/// <summary>A request as the fake server decoded it.</summary>
internal sealed record Request(uint Uid, Operation Operation, byte[] Payload);

/// <summary>Encoders for the raw responses a fake server sends.</summary>
internal static class Wire
{
    public static byte[] Status(uint uid, Operation operation, StatusCode status) => Encode(w => Responses.WriteStatus(w, uid, operation, status));

    public static byte[] StatusByte(uint uid, Operation operation, byte status) => Encode(w => Responses.WriteStatus(w, uid, operation, (StatusCode)status));

    public static byte[] Data(uint uid, Operation operation, byte[] data) => Encode(w => Responses.WriteData(w, uid, operation, data));

    public static byte[] Empty(uint uid, Operation operation) => Encode(w => Responses.WriteEmpty(w, uid, operation));

    public static byte[] Encode(Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        return buffer.WrittenSpan.ToArray();
    }
}
