using System.Net.Sockets;

namespace Distcache.Tools.Tests.Support;

/// <summary>
/// A raw TCP endpoint that records every byte it receives on each connection, echoes them back if asked, and when
/// the peer finishes sending, answers with a farewell and closes: enough to see exactly what a relay forwarded,
/// in both directions, and how it passed a half-close on.
/// </summary>
internal sealed class RecordingServer : IAsyncDisposable
{
    private readonly bool _echo;
    private readonly byte[] _farewell;
    private readonly FakeServer _server;

    public RecordingServer(bool echo, byte[]? farewell = null)
    {
        _echo = echo;
        _farewell = farewell ?? [];
        _server = new FakeServer(ServeAsync);
    }

    public string Address => _server.Address.ToString();

    /// <summary>Connections that have ended (the peer finished sending), with everything they received.</summary>
    public List<byte[]> Finished { get; } = [];

    /// <summary>The bytes of the first connection that received any (connect probes receive none).</summary>
    public async Task<byte[]> WaitForFirstNonEmptyAsync(TimeSpan timeout)
    {
        byte[]? found = null;
        await Poll.UntilAsync(
            () =>
            {
                lock (Finished)
                {
                    found = Finished.FirstOrDefault(bytes => bytes.Length > 0);
                }

                return found is not null;
            },
            timeout,
            "a connection to the recording server to finish",
            interval: TimeSpan.FromMilliseconds(20));
        return found!;
    }

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private async Task ServeAsync(FakeConnection connection)
    {
        using var received = new MemoryStream();
        var buffer = new byte[8192];
        while (true)
        {
            int n = await connection.Socket.ReceiveAsync(buffer, SocketFlags.None, connection.Stopping);
            if (n == 0)
            {
                break;
            }

            received.Write(buffer, 0, n);
            if (_echo)
            {
                await connection.Socket.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, connection.Stopping);
            }
        }

        lock (Finished)
        {
            Finished.Add(received.ToArray());
        }

        if (_farewell.Length > 0)
        {
            await connection.SendAsync(_farewell);
        }
    }
}
