using System.Buffers;
using System.Net.Sockets;
using Distcache.Protocol;

namespace Distcache.Testing;

/// <summary>Blocking request/response helpers over a raw socket, with a receive timeout so no test hangs.</summary>
public static class Wire
{
    /// <summary>A socket connected to <paramref name="address"/> whose sends and receives time out.</summary>
    /// <param name="address">An <c>IP:host:port</c> or <c>UNIX:path</c> address.</param>
    /// <param name="timeoutMs">The send and receive timeout.</param>
    /// <returns>The connected socket.</returns>
    public static Socket Open(string address, int timeoutMs = 5000)
    {
        var socket = Tool.Connect(address);
        socket.ReceiveTimeout = timeoutMs;
        socket.SendTimeout = timeoutMs;
        return socket;
    }

    /// <summary>Sends what <paramref name="write"/> writes.</summary>
    /// <param name="socket">The socket.</param>
    /// <param name="write">Writes the bytes to send (a <see cref="Requests"/> method, say).</param>
    public static void Send(Socket socket, Action<IBufferWriter<byte>> write)
    {
        ArgumentNullException.ThrowIfNull(socket);
        socket.Send(Frames.Encode(write));
    }

    /// <summary>Exactly <paramref name="count"/> bytes; throws if the peer closes first.</summary>
    /// <param name="socket">The socket.</param>
    /// <param name="count">How many.</param>
    /// <returns>The bytes.</returns>
    public static byte[] ReceiveExactly(Socket socket, int count)
    {
        ArgumentNullException.ThrowIfNull(socket);
        var bytes = new byte[count];
        int got = 0;
        while (got < count)
        {
            int n = socket.Receive(bytes, got, count - got, SocketFlags.None);
            if (n == 0)
            {
                throw new EndOfStreamException($"closed after {got} of {count} bytes");
            }

            got += n;
        }

        return bytes;
    }

    /// <summary>Reads one whole response message; throws if more than one arrived (use
    /// <see cref="ReceiveExactly"/> for pipelines).</summary>
    /// <param name="socket">The socket.</param>
    /// <returns>The response's uid, operation and payload.</returns>
    public static (uint Uid, Operation Op, byte[] Payload) Receive(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        var buffer = new MessageBuffer(MessageDirection.Responses);
        Received message = buffer.Read(free => socket.Receive(free.Span));
        if (buffer.Length > 0)
        {
            throw new InvalidOperationException("more than one response arrived; use ReceiveExactly for pipelines");
        }

        return (message.Uid, message.Operation, message.Payload);
    }

    /// <summary>Sends a request and returns the payload of its response.</summary>
    /// <param name="socket">The socket.</param>
    /// <param name="request">Writes the request.</param>
    /// <returns>The response's payload.</returns>
    public static byte[] Ask(Socket socket, Action<IBufferWriter<byte>> request)
    {
        Send(socket, request);
        return Receive(socket).Payload;
    }

    /// <summary>ADD; returns the response's payload (the status byte).</summary>
    /// <param name="socket">The socket.</param>
    /// <param name="id">The session id.</param>
    /// <param name="data">The session data.</param>
    /// <param name="timeoutMs">The session's lifetime.</param>
    /// <returns>The response's payload.</returns>
    public static byte[] Add(Socket socket, byte[] id, byte[] data, uint timeoutMs = 60_000) =>
        Ask(socket, w => Requests.WriteAdd(w, 1, timeoutMs, id, data));

    /// <summary>GET; returns the response's payload (the data, or a status byte).</summary>
    /// <param name="socket">The socket.</param>
    /// <param name="id">The session id.</param>
    /// <returns>The response's payload.</returns>
    public static byte[] Get(Socket socket, byte[] id) => Ask(socket, w => Requests.WriteIdRequest(w, 1, Operation.Get, id));

    /// <summary>HAVE; true if the answer is OK.</summary>
    /// <param name="socket">The socket.</param>
    /// <param name="id">The session id.</param>
    /// <returns>Whether the session is there.</returns>
    public static bool Have(Socket socket, byte[] id) => Ask(socket, w => Requests.WriteIdRequest(w, 1, Operation.Have, id))[0] == 0;

    /// <summary>
    /// Waits until a new connection to <paramref name="address"/> is served (a HAVE answered), trying again while
    /// connecting or the answer fails: for a server that is expected to come back to serving, after a flood or a
    /// restart. Fails the wait after <paramref name="timeout"/>.
    /// </summary>
    /// <param name="address">Where the server listens.</param>
    /// <param name="timeout">How long to keep trying.</param>
    /// <param name="what">What is awaited, for the failure message.</param>
    /// <returns>A task that completes once a connection was served.</returns>
    public static Task ServedAgainAsync(string address, TimeSpan timeout, string what) =>
        Poll.UntilAsync(
            () =>
            {
                try
                {
                    using Socket socket = Open(address, timeoutMs: 1000);
                    return !Have(socket, [4, 5, 6]);
                }
                catch (Exception e) when (e is SocketException or IOException)
                {
                    return false;
                }
            },
            timeout,
            what);

    /// <summary>True if the peer closed the connection (EOF or reset) within the socket's receive timeout.</summary>
    /// <param name="socket">The socket.</param>
    /// <returns>Whether the peer closed it.</returns>
    public static bool IsClosedByPeer(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        try
        {
            var b = new byte[256];
            while (true)
            {
                if (socket.Receive(b) == 0)
                {
                    return true;
                }
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
        {
            return false;
        }
    }
}
