using System.Buffers;
using Distcache.Protocol;

namespace Distcache.Testing;

/// <summary>Accumulates bytes from a stream and decodes whole messages from them.</summary>
/// <param name="direction">Whether the stream carries requests or responses.</param>
public sealed class MessageBuffer(MessageDirection direction)
{
    private readonly MessageDecoder _decoder = new(direction);
    private byte[] _data = new byte[64 * 1024];
    private int _length;

    /// <summary>Bytes received and not yet taken.</summary>
    public int Length => _length;

    /// <summary>Room for the next read; <see cref="Commit"/> says how much of it was filled.</summary>
    /// <param name="atLeast">How much room the read needs.</param>
    /// <returns>The free space.</returns>
    public Memory<byte> GetFreeSpace(int atLeast = 4096)
    {
        if (_data.Length - _length < atLeast)
        {
            Array.Resize(ref _data, Math.Max(_data.Length * 2, _length + atLeast));
        }

        return _data.AsMemory(_length);
    }

    /// <summary>Adds the bytes a read put into <see cref="GetFreeSpace"/>.</summary>
    /// <param name="count">How many.</param>
    public void Commit(int count) => _length += count;

    /// <summary>Takes exactly <paramref name="count"/> raw bytes, if that many are there.</summary>
    /// <param name="count">How many.</param>
    /// <param name="bytes">The bytes, or empty.</param>
    /// <returns>Whether they were there.</returns>
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

    /// <summary>Takes the first whole message, if one is there; throws <see cref="InvalidDataException"/> on bytes
    /// that break the protocol.</summary>
    /// <param name="message">The message, or null.</param>
    /// <returns>Whether a whole message was there.</returns>
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

    /// <summary>Reads with <paramref name="read"/> until a whole message is there, and takes it.</summary>
    /// <param name="read">Reads into the memory it is given and returns how many bytes it read; 0 at the end of the stream.</param>
    /// <returns>The message.</returns>
    public Received Read(Func<Memory<byte>, int> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        while (true)
        {
            if (TryDecode(out Received? message))
            {
                return message!;
            }

            int n = read(GetFreeSpace());
            if (n == 0)
            {
                throw new EndOfStreamException($"the peer closed the connection ({_length} bytes of a message pending)");
            }

            Commit(n);
        }
    }

    private void Consume(int count)
    {
        _data.AsSpan(count, _length - count).CopyTo(_data);
        _length -= count;
    }
}
