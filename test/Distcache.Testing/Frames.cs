using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Distcache.Protocol;

namespace Distcache.Testing;

/// <summary>
/// Raw protocol bytes for tests: whole requests and responses encoded with the protocol library, hand-made frame
/// headers (right or wrong), and buffers split into segments the way a pipe may deliver them.
/// </summary>
public static class Frames
{
    /// <summary>A frame header with every field chosen, including values the protocol forbids.</summary>
    /// <param name="protoLevel">The protocol level (0x00110000 is 1.5.1's).</param>
    /// <param name="isResponse">0 for a request, 1 for a response.</param>
    /// <param name="uid">The request uid.</param>
    /// <param name="opClass">The operation class (always 0 in 1.5.1).</param>
    /// <param name="operation">The operation byte.</param>
    /// <param name="complete">1 on the last frame of a message, 0 on the others.</param>
    /// <param name="dataLength">How many bytes of data the header announces.</param>
    /// <returns>The 14 header bytes.</returns>
    public static byte[] Header(
        uint protoLevel = ProtocolConstants.ProtoLevel,
        byte isResponse = 0,
        uint uid = 1,
        byte opClass = 0,
        byte operation = (byte)Operation.Get,
        byte complete = 1,
        ushort dataLength = 0)
    {
        var h = new byte[ProtocolConstants.FrameHeaderSize];
        BinaryPrimitives.WriteUInt32BigEndian(h, protoLevel);
        h[4] = isResponse;
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(5), uid);
        h[9] = opClass;
        h[10] = operation;
        h[11] = complete;
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(12), dataLength);
        return h;
    }

    /// <summary>A header followed by <paramref name="dataLength"/> bytes of <paramref name="fill"/>.</summary>
    /// <param name="header">The header.</param>
    /// <param name="dataLength">How many data bytes follow it.</param>
    /// <param name="fill">The value of every data byte.</param>
    /// <returns>The frame.</returns>
    public static byte[] Frame(byte[] header, int dataLength, byte fill = 0xAB)
    {
        ArgumentNullException.ThrowIfNull(header);
        var f = new byte[header.Length + dataLength];
        header.CopyTo(f, 0);
        f.AsSpan(header.Length).Fill(fill);
        return f;
    }

    /// <summary>The parts one after another.</summary>
    /// <param name="parts">The parts.</param>
    /// <returns>Their bytes in one array.</returns>
    public static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    /// <summary>What <paramref name="write"/> writes, as an array.</summary>
    /// <param name="write">Writes to the buffer it is given (a <see cref="Requests"/> or <see cref="Responses"/> method, say).</param>
    /// <returns>The bytes written.</returns>
    public static byte[] Encode(Action<IBufferWriter<byte>> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Random bytes, the same for the same seed.</summary>
    /// <param name="length">How many.</param>
    /// <param name="seed">The seed.</param>
    /// <returns>The bytes.</returns>
    public static byte[] Random(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>An ADD request for an ASCII id.</summary>
    /// <param name="uid">The request uid.</param>
    /// <param name="id">The session id.</param>
    /// <param name="data">The session data.</param>
    /// <param name="timeoutMilliseconds">The session's lifetime.</param>
    /// <returns>The encoded request.</returns>
    public static byte[] Add(uint uid, string id, byte[] data, uint timeoutMilliseconds = 60_000) =>
        Encode(w => Requests.WriteAdd(w, uid, timeoutMilliseconds, Encoding.ASCII.GetBytes(id), data));

    /// <summary>A GET request for an ASCII id.</summary>
    /// <param name="uid">The request uid.</param>
    /// <param name="id">The session id.</param>
    /// <returns>The encoded request.</returns>
    public static byte[] Get(uint uid, string id) => IdRequest(uid, Operation.Get, id);

    /// <summary>A REMOVE request for an ASCII id.</summary>
    /// <param name="uid">The request uid.</param>
    /// <param name="id">The session id.</param>
    /// <returns>The encoded request.</returns>
    public static byte[] Remove(uint uid, string id) => IdRequest(uid, Operation.Remove, id);

    /// <summary>A HAVE request for an ASCII id.</summary>
    /// <param name="uid">The request uid.</param>
    /// <param name="id">The session id.</param>
    /// <returns>The encoded request.</returns>
    public static byte[] Have(uint uid, string id) => IdRequest(uid, Operation.Have, id);

    /// <summary>A GET, REMOVE or HAVE request for an ASCII id.</summary>
    /// <param name="uid">The request uid.</param>
    /// <param name="operation">The operation.</param>
    /// <param name="id">The session id.</param>
    /// <returns>The encoded request.</returns>
    public static byte[] IdRequest(uint uid, Operation operation, string id) =>
        Encode(w => Requests.WriteIdRequest(w, uid, operation, Encoding.ASCII.GetBytes(id)));

    /// <summary>A one-byte status response; any byte, defined or not.</summary>
    /// <param name="uid">The request uid it answers.</param>
    /// <param name="operation">The operation it answers.</param>
    /// <param name="status">The status.</param>
    /// <returns>The encoded response.</returns>
    public static byte[] Status(uint uid, Operation operation, StatusCode status) =>
        Encode(w => Responses.WriteStatus(w, uid, operation, status));

    /// <summary>A response carrying data (a GET hit).</summary>
    /// <param name="uid">The request uid it answers.</param>
    /// <param name="operation">The operation it answers.</param>
    /// <param name="data">The data.</param>
    /// <returns>The encoded response.</returns>
    public static byte[] Data(uint uid, Operation operation, byte[] data) =>
        Encode(w => Responses.WriteData(w, uid, operation, data));

    /// <summary>A response with no payload at all.</summary>
    /// <param name="uid">The request uid it answers.</param>
    /// <param name="operation">The operation it answers.</param>
    /// <returns>The encoded response.</returns>
    public static byte[] Empty(uint uid, Operation operation) => Encode(w => Responses.WriteEmpty(w, uid, operation));

    /// <summary>The exact bytes of a one-byte DISCONNECTED answer.</summary>
    /// <param name="uid">The request uid it answers.</param>
    /// <param name="operation">The operation it answers.</param>
    /// <returns>The encoded response.</returns>
    public static byte[] Disconnected(uint uid, Operation operation) => Status(uid, operation, StatusCode.Disconnected);

    /// <summary>A sequence whose segments end at the given offsets, so that parsers meet data split anywhere.</summary>
    /// <param name="data">The bytes.</param>
    /// <param name="cuts">Where segments end; offsets outside the data are ignored.</param>
    /// <returns>The sequence.</returns>
    public static ReadOnlySequence<byte> Segmented(byte[] data, IEnumerable<int> cuts)
    {
        ArgumentNullException.ThrowIfNull(data);
        var points = cuts.Where(c => c > 0 && c < data.Length).Distinct().Order().ToList();
        if (points.Count == 0)
        {
            return new ReadOnlySequence<byte>(data);
        }

        Segment? first = null, last = null;
        int start = 0;
        foreach (int end in points.Append(data.Length))
        {
            var memory = data.AsMemory(start, end - start);
            if (first is null)
            {
                first = last = new Segment(memory, 0);
            }
            else
            {
                last = last!.Append(memory);
            }

            start = end;
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    /// <summary>A sequence of segments of <paramref name="segmentSize"/> bytes (the last one shorter).</summary>
    /// <param name="data">The bytes.</param>
    /// <param name="segmentSize">The size of every segment but the last.</param>
    /// <returns>The sequence.</returns>
    public static ReadOnlySequence<byte> Segmented(byte[] data, int segmentSize)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentSize, 1);
        return Segmented(data, Enumerable.Range(1, data.Length / segmentSize).Select(n => n * segmentSize));
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
