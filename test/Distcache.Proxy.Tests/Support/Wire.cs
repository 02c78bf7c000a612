using System.Buffers;
using System.Text;
using Distcache.Protocol;

namespace Distcache.Proxy.Tests.Support;

/// <summary>Encoded requests and responses, built with the protocol library the proxy is tested against.</summary>
internal static class Wire
{
    public static byte[] Add(uint uid, string id, byte[] data, uint timeoutMilliseconds = 60_000) =>
        Encode(w => Requests.WriteAdd(w, uid, timeoutMilliseconds, Encoding.ASCII.GetBytes(id), data));

    public static byte[] Get(uint uid, string id) => IdRequest(uid, Operation.Get, id);

    public static byte[] Remove(uint uid, string id) => IdRequest(uid, Operation.Remove, id);

    public static byte[] Have(uint uid, string id) => IdRequest(uid, Operation.Have, id);

    public static byte[] IdRequest(uint uid, Operation operation, string id) =>
        Encode(w => Requests.WriteIdRequest(w, uid, operation, Encoding.ASCII.GetBytes(id)));

    public static byte[] Status(uint uid, Operation operation, StatusCode status) =>
        Encode(w => Responses.WriteStatus(w, uid, operation, status));

    public static byte[] Data(uint uid, Operation operation, byte[] data) =>
        Encode(w => Responses.WriteData(w, uid, operation, data));

    /// <summary>The exact bytes of a one-byte DISCONNECTED answer.</summary>
    public static byte[] Disconnected(uint uid, Operation operation) => Status(uid, operation, StatusCode.Disconnected);

    public static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    private static byte[] Encode(Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        return buffer.WrittenSpan.ToArray();
    }
}

/// <summary>One decoded message, with the bytes it arrived as.</summary>
internal sealed record Received(uint ProtoLevel, uint Uid, Operation Operation, byte[] Payload, byte[] Raw)
{
    public StatusCode? Status => Payload.Length == 1 ? (StatusCode)Payload[0] : null;
}

/// <summary>Accumulates bytes from a stream and decodes whole messages from them.</summary>
internal sealed class MessageBuffer(MessageDirection direction)
{
    private readonly MessageDecoder _decoder = new(direction);
    private byte[] _data = new byte[64 * 1024];
    private int _length;

    public int Length => _length;

    public Memory<byte> GetFreeSpace(int atLeast = 4096)
    {
        if (_data.Length - _length < atLeast)
        {
            Array.Resize(ref _data, Math.Max(_data.Length * 2, _length + atLeast));
        }

        return _data.AsMemory(_length);
    }

    public void Commit(int count) => _length += count;

    public bool TryTake(int count, out byte[] bytes)
    {
        if (_length < count)
        {
            bytes = [];
            return false;
        }

        bytes = _data.AsSpan(0, count).ToArray();
        Consume(count);
        return true;
    }

    public bool TryDecode(out Received? message)
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(_data, 0, _length));
        DecodeStatus status = _decoder.TryDecode(ref reader, out Message decoded, out ProtocolViolation violation);
        if (status == DecodeStatus.Violation)
        {
            throw new InvalidDataException("protocol violation in received bytes: " + violation.Describe());
        }

        if (status == DecodeStatus.NeedMoreData)
        {
            message = null;
            return false;
        }

        int used = (int)reader.Consumed;
        message = new Received(decoded.ProtoLevel, decoded.RequestUid, decoded.Operation, decoded.Payload.ToArray(), _data.AsSpan(0, used).ToArray());
        Consume(used);
        return true;
    }

    private void Consume(int count)
    {
        _data.AsSpan(count, _length - count).CopyTo(_data);
        _length -= count;
    }
}
