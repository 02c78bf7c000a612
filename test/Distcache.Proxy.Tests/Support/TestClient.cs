using System.Net.Sockets;
using Distcache.Protocol;

namespace Distcache.Proxy.Tests.Support;

/// <summary>An application talking to the proxy over its unix socket, with a bound on every wait.</summary>
internal sealed class TestClient : IDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _socket;
    private readonly MessageBuffer _received = new(MessageDirection.Responses);
    private bool _endOfStream;

    private TestClient(Socket socket) => _socket = socket;

    public static async Task<TestClient> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            using var timeout = new CancellationTokenSource(DefaultTimeout);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token);
            return new TestClient(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public Socket Socket => _socket;

    public async Task SendAsync(byte[] bytes)
    {
        using var timeout = new CancellationTokenSource(DefaultTimeout);
        await _socket.SendAsync(bytes, SocketFlags.None, timeout.Token);
    }

    /// <summary>Sends a request and returns its answer.</summary>
    public async Task<Received> CallAsync(byte[] request, TimeSpan? timeout = null)
    {
        await SendAsync(request);
        return await ReceiveAsync(timeout);
    }

    /// <summary>The next whole message; fails on end of stream or after the timeout.</summary>
    public async Task<Received> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        while (true)
        {
            if (_received.TryDecode(out Received? message))
            {
                return message!;
            }

            if (!await FillAsync(cts.Token))
            {
                throw new EndOfStreamException($"the proxy closed the connection ({_received.Length} bytes of a message pending)");
            }
        }
    }

    /// <summary>Exactly <paramref name="count"/> raw bytes.</summary>
    public async Task<byte[]> ReceiveBytesAsync(int count, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        while (true)
        {
            if (_received.TryTake(count, out byte[] bytes))
            {
                return bytes;
            }

            if (!await FillAsync(cts.Token))
            {
                throw new EndOfStreamException($"the proxy closed the connection after {_received.Length} of {count} bytes");
            }
        }
    }

    /// <summary>True if the proxy closes (or resets) the connection within the time, without sending anything more.</summary>
    public async Task<bool> ClosesWithinAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await FillAsync(cts.Token))
            {
                if (_received.Length > 0)
                {
                    throw new InvalidOperationException($"received {_received.Length} unexpected bytes");
                }
            }

            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>True if no byte arrives within the time (and the connection stays open).</summary>
    public async Task<bool> StaysSilentAsync(TimeSpan time)
    {
        if (_received.Length > 0)
        {
            return false;
        }

        using var cts = new CancellationTokenSource(time);
        try
        {
            // Anything at all (bytes, or the end of the stream) within the time breaks the silence.
            await FillAsync(cts.Token);
            return false;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }

    public void ShutdownSend() => _socket.Shutdown(SocketShutdown.Send);

    public void Dispose() => _socket.Dispose();

    // False at end of stream (a reset counts as one).
    private async Task<bool> FillAsync(CancellationToken cancellationToken)
    {
        if (_endOfStream)
        {
            return false;
        }

        int n;
        try
        {
            n = await _socket.ReceiveAsync(_received.GetFreeSpace(), SocketFlags.None, cancellationToken);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
        {
            n = 0;
        }

        if (n == 0)
        {
            _endOfStream = true;
            return false;
        }

        _received.Commit(n);
        return true;
    }
}
