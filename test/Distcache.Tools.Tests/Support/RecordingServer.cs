using System.Net.Sockets;

namespace Distcache.Tools.Tests.Support;

/// <summary>
/// A raw TCP endpoint that records every byte it receives on each connection, echoes them back if asked, and when
/// the peer finishes sending, answers with a farewell and closes: enough to see exactly what a relay forwarded,
/// in both directions, and how it passed a half-close on.
/// </summary>
internal sealed class RecordingServer : LoopbackServer
{
    private readonly bool _echo;
    private readonly byte[] _farewell;
    private readonly List<MemoryStream> _received = [];

    public RecordingServer(bool echo, byte[]? farewell = null)
    {
        _echo = echo;
        _farewell = farewell ?? [];
        Start();
    }

    /// <summary>Connections that have ended (the peer finished sending), with everything they received.</summary>
    public List<byte[]> Finished { get; } = [];

    /// <summary>The bytes of the first connection that received any (connect probes receive none).</summary>
    public async Task<byte[]> WaitForFirstNonEmptyAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            lock (Finished)
            {
                if (Finished.FirstOrDefault(bytes => bytes.Length > 0) is { } found)
                {
                    return found;
                }
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"no connection to the recording server finished within {timeout}");
            }

            await Task.Delay(20);
        }
    }

    protected override async ValueTask OnStoppedAsync()
    {
        foreach (MemoryStream stream in _received)
        {
            await stream.DisposeAsync();
        }
    }

    protected override async Task ServeAsync(Socket socket)
    {
        var received = new MemoryStream();
        lock (_received)
        {
            _received.Add(received);
        }

        var buffer = new byte[8192];
        try
        {
            while (true)
            {
                int n = await socket.ReceiveAsync(buffer, SocketFlags.None, Stopping);
                if (n == 0)
                {
                    break;
                }

                received.Write(buffer, 0, n);
                if (_echo)
                {
                    await socket.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, Stopping);
                }
            }

            lock (Finished)
            {
                Finished.Add(received.ToArray());
            }

            if (_farewell.Length > 0)
            {
                await socket.SendAsync(_farewell, SocketFlags.None, Stopping);
            }

            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException)
        {
        }
    }
}
