using System.Buffers;
using System.Net.Sockets;
using Distcache.Protocol;

namespace Distcache.EndToEnd.Tests.Support;

/// <summary>Blocking request/response helpers over a raw socket, with a receive timeout so no test hangs.</summary>
internal static class Wire
{
    public static Socket Open(string address, int timeoutMs = 5000)
    {
        var socket = Tool.Connect(address);
        socket.ReceiveTimeout = timeoutMs;
        socket.SendTimeout = timeoutMs;
        return socket;
    }

    public static void Send(Socket socket, Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        socket.Send(buffer.WrittenSpan);
    }

    public static byte[] ReceiveExactly(Socket socket, int count)
    {
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

    /// <summary>Reads one whole response message.</summary>
    public static (uint Uid, Operation Op, byte[] Payload) Receive(Socket socket)
    {
        var decoder = new MessageDecoder(MessageDirection.Responses);
        var buffer = new List<byte>();
        var chunk = new byte[4096];
        while (true)
        {
            var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(buffer.ToArray()));
            var status = decoder.TryDecode(ref reader, out var message, out var violation);
            if (status == DecodeStatus.Complete)
            {
                if (!reader.End)
                {
                    throw new InvalidOperationException("more than one response arrived; use ReceiveExactly for pipelines");
                }

                return (message.RequestUid, message.Operation, message.Payload.ToArray());
            }

            if (status == DecodeStatus.Violation)
            {
                throw new InvalidDataException(violation.Describe());
            }

            int n = socket.Receive(chunk);
            if (n == 0)
            {
                throw new EndOfStreamException("closed mid-response");
            }

            buffer.AddRange(chunk.AsSpan(0, n).ToArray());
        }
    }

    public static byte[] Ask(Socket socket, Action<IBufferWriter<byte>> request)
    {
        Send(socket, request);
        return Receive(socket).Payload;
    }

    public static byte[] Add(Socket socket, byte[] id, byte[] data, uint timeoutMs = 60_000) =>
        Ask(socket, w => Requests.WriteAdd(w, 1, timeoutMs, id, data));

    public static byte[] Get(Socket socket, byte[] id) => Ask(socket, w => Requests.WriteIdRequest(w, 1, Operation.Get, id));

    public static bool Have(Socket socket, byte[] id) => Ask(socket, w => Requests.WriteIdRequest(w, 1, Operation.Have, id))[0] == 0;

    /// <summary>True if the peer closed the connection (EOF or reset) within the socket's receive timeout.</summary>
    public static bool IsClosedByPeer(Socket socket)
    {
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
