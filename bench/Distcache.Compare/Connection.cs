using System.Buffers;
using System.Buffers.Text;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Distcache.Protocol;
using Distcache.Tools;

namespace Distcache.Compare;

/// <summary>One connection's loop, closed (writes as many requests as were answered in one send) or paced by -rate
/// (writes those that have fallen due); reads whatever arrived, decodes the responses in place. No allocation per
/// request.</summary>
internal sealed class Connection : IDisposable
{
    private const byte Get = 0;
    private const byte Add = 1;
    private const int PrefillDepth = 16;

    // dc_test's session lifetime, in the distcache ADD's milliseconds (the text protocols say 3600 seconds).
    private const uint SessionTimeoutMilliseconds = 3_600_000;

    private readonly LoadOptions _o;
    private readonly LoadGenerator.Shared _shared;
    private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
    private readonly byte[] _recv = new byte[256 * 1024];
    private readonly byte[] _send;
    private readonly byte[] _ops;
    private readonly long[] _sentAt;
    private readonly bool[] _measured;
    private readonly byte[] _getHead;
    private readonly byte[] _getTail;
    private readonly byte[] _addHead;
    private readonly byte[] _addMiddle;
    private readonly byte[] _addTail;
    private readonly SendBuffer _writer;
    private readonly MessageDecoder _decoder = new(MessageDirection.Responses);
    private readonly byte[] _id;
    private uint _nextUid = 1;
    private int _rs;
    private int _re;
    private int _sendLen;
    private int _head;
    private int _count;
    private ulong _rng;
    private bool _prefill;
    private int _nextKey;
    private int _stride;

    // -rate: this connection's share of the requests falls due every _interval ticks, the next at _nextSlot.
    private readonly long _interval;
    private long _nextSlot;

    public Connection(LoadOptions o, LoadGenerator.Shared shared, ulong seed)
    {
        _o = o;
        _shared = shared;
        _rng = seed;
        int ring = Math.Max(o.Pipeline, PrefillDepth);
        _ops = new byte[ring];
        _sentAt = new long[ring];
        _measured = new bool[ring];
        int perRequest = Math.Max(o.DataSize + o.IdSize + 128, MessageWriter.EncodedLength(ProtocolConstants.AddRequestPrefixSize + o.IdSize + o.DataSize));
        _send = new byte[ring * perRequest];
        _writer = new SendBuffer(_send);
        _id = new byte[o.IdSize];
        shared.Prefix.CopyTo(_id, 0);
        _interval = o.Rate > 0 ? Math.Max(1, (long)(Stopwatch.Frequency * (double)o.Clients / o.Rate)) : 0;
        string id = o.IdSize.ToString(System.Globalization.CultureInfo.InvariantCulture);
        string data = o.DataSize.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (o.Protocol == Protocol.Memcache)
        {
            _getHead = Encoding.ASCII.GetBytes("get ");
            _getTail = Encoding.ASCII.GetBytes("\r\n");
            _addHead = Encoding.ASCII.GetBytes("add ");
            _addMiddle = Encoding.ASCII.GetBytes($" 0 3600 {data}\r\n");
            _addTail = Encoding.ASCII.GetBytes("\r\n");
        }
        else if (o.Protocol == Protocol.Redis)
        {
            _getHead = Encoding.ASCII.GetBytes($"*2\r\n$3\r\nGET\r\n${id}\r\n");
            _getTail = Encoding.ASCII.GetBytes("\r\n");
            _addHead = Encoding.ASCII.GetBytes($"*6\r\n$3\r\nSET\r\n${id}\r\n");
            _addMiddle = Encoding.ASCII.GetBytes($"\r\n${data}\r\n");
            _addTail = Encoding.ASCII.GetBytes("\r\n$2\r\nNX\r\n$2\r\nEX\r\n$4\r\n3600\r\n");
        }
        else
        {
            // The distcache protocol is binary and framed: Distcache.Protocol's request writers encode it (EncodeDistcache).
            _getHead = _getTail = _addHead = _addMiddle = _addTail = [];
        }
    }

    public LoadGenerator.Stats Stats { get; } = new();

    public string? FirstError { get; private set; }

    public Task ConnectAsync() => _socket.ConnectAsync(IPAddress.Parse(_o.Host), _o.Port);

    public Task PrefillAsync(int first, int stride)
    {
        _prefill = true;
        _nextKey = first;
        _stride = stride;
        return LoopAsync(PrefillDepth);
    }

    public Task RunAsync()
    {
        _prefill = false;
        if (_interval > 0)
        {
            // Staggered, so that the connections' requests do not all fall due together.
            _nextSlot = Stopwatch.GetTimestamp() + (long)(_interval * (double)(_rng % 1024) / 1024);
        }

        return LoopAsync(_o.Pipeline);
    }

    public void Dispose() => _socket.Dispose();

    private async Task LoopAsync(int depth)
    {
        try
        {
            long now = Stopwatch.GetTimestamp();
            for (int i = 0; i < depth && TryEnqueue(now); i++)
            {
            }

            await FlushAsync();
            while (_count > 0 || (_interval > 0 && !_prefill && Stopwatch.GetTimestamp() < _shared.StopAt))
            {
                if (_count == 0)
                {
                    // Paced, with nothing to read until the next request falls due. As in dc_test -rate: timers
                    // tick in milliseconds, so the requests due within one go out together, each timed from when it
                    // is sent; while answers are awaited, due requests go out with the next read's.
                    await WaitForSlotAsync();
                    now = Stopwatch.GetTimestamp();
                    while (_count < depth && TryEnqueue(now))
                    {
                    }

                    if (_sendLen > 0)
                    {
                        await FlushAsync();
                    }

                    continue;
                }

                if (_recv.Length - _re < 32 * 1024)
                {
                    Buffer.BlockCopy(_recv, _rs, _recv, 0, _re - _rs);
                    _re -= _rs;
                    _rs = 0;
                }

                int n = await _socket.ReceiveAsync(_recv.AsMemory(_re), SocketFlags.None);
                if (n == 0)
                {
                    Fail("the server closed the connection");
                    return;
                }

                _re += n;
                now = Stopwatch.GetTimestamp();
                int answered = ParseAll(now);
                if (answered < 0)
                {
                    return;
                }

                // Closed loop: as many as were answered. Paced: whatever has fallen due, as far as the pipeline allows.
                while (_count < depth && TryEnqueue(now))
                {
                }

                if (_sendLen > 0)
                {
                    await FlushAsync();
                }
            }
        }
        catch (SocketException e)
        {
            Fail(e.Message);
        }
    }

    private async Task WaitForSlotAsync()
    {
        // Whole milliseconds, rounded up: a delay rounding to zero would spin on the cores the server needs. A timer
        // may fire up to a millisecond early, hence the loop.
        long wait;
        while ((wait = Math.Min(_nextSlot, _shared.StopAt) - Stopwatch.GetTimestamp()) > 0)
        {
            await Task.Delay((int)Math.Ceiling(wait * 1000.0 / Stopwatch.Frequency));
        }
    }

    private async Task FlushAsync()
    {
        int sent = 0;
        while (sent < _sendLen)
        {
            sent += await _socket.SendAsync(_send.AsMemory(sent, _sendLen - sent), SocketFlags.None);
        }

        _sendLen = 0;
    }

    private bool TryEnqueue(long now)
    {
        byte op;
        int key;
        if (_prefill)
        {
            if (_nextKey >= _o.Prefill)
            {
                return false;
            }

            op = Add;
            key = _nextKey;
            _nextKey += _stride;
        }
        else
        {
            if (now >= _shared.StopAt || (_interval > 0 && now < _nextSlot))
            {
                return false;
            }

            _nextSlot += _interval;

            ulong r = Next();
            op = (int)(r % (ulong)(_o.GetWeight + _o.AddWeight)) < _o.GetWeight ? Get : Add;
            key = (int)((r >> 20) % (ulong)_o.Keys);
        }

        Span<byte> s = _send.AsSpan(_sendLen);
        int p = 0;
        if (_o.Protocol == Protocol.Distcache)
        {
            p = EncodeDistcache(op, key);
        }
        else if (op == Get)
        {
            p += Copy(_getHead, s[p..]);
            p += WriteKey(key, s[p..]);
            p += Copy(_getTail, s[p..]);
        }
        else
        {
            p += Copy(_addHead, s[p..]);
            p += WriteKey(key, s[p..]);
            p += Copy(_addMiddle, s[p..]);
            p += Copy(_shared.Data, s[p..]);
            p += Copy(_addTail, s[p..]);
        }

        _sendLen += p;
        int slot = (_head + _count) % _ops.Length;
        _ops[slot] = op;
        _sentAt[slot] = now;
        _measured[slot] = !_prefill && now >= _shared.MeasureFrom && now < _shared.StopAt;
        _count++;
        return true;
    }

    /// <summary>Encodes one distcache request at the end of the send buffer; returns its length. The id is the same
    /// bytes as the text protocols' key name; the uid counts up, so each answer can be matched to its request.</summary>
    private int EncodeDistcache(byte op, int key)
    {
        WriteKey(key, _id);
        _writer.Written = _sendLen;
        if (op == Get)
        {
            Requests.WriteIdRequest(_writer, _nextUid, Operation.Get, _id);
        }
        else
        {
            Requests.WriteAdd(_writer, _nextUid, SessionTimeoutMilliseconds, _id, _shared.Data);
        }

        _nextUid++;
        return _writer.Written - _sendLen;
    }

    private int WriteKey(int key, Span<byte> s)
    {
        int p = Copy(_shared.Prefix, s);
        for (int i = KeyNames.Digits - 1; i >= 0; i--)
        {
            s[p + i] = (byte)('0' + (key % 10));
            key /= 10;
        }

        return p + KeyNames.Digits;
    }

    private static int Copy(ReadOnlySpan<byte> from, Span<byte> to)
    {
        from.CopyTo(to);
        return from.Length;
    }

    /// <summary>Decodes every complete response; returns how many, or -1 after a protocol error.</summary>
    private int ParseAll(long now)
    {
        int answered = 0;
        while (_count > 0)
        {
            ReadOnlySpan<byte> span = _recv.AsSpan(_rs, _re - _rs);
            byte op = _ops[_head];
            bool hit;
            string? error;
            int consumed = _o.Protocol switch
            {
                Protocol.Memcache => ParseMemcache(span, op, out hit, out error),
                Protocol.Redis => ParseRedis(span, out hit, out error),
                _ => ParseDistcache(op, out hit, out error),
            };
            if (error is not null)
            {
                Fail($"{(op == Get ? "get" : "add")}: {error}");
                return -1;
            }

            if (consumed == 0)
            {
                break;
            }

            _rs += consumed;
            if (_measured[_head])
            {
                LoadGenerator.Stats s = Stats;
                s.Latency.Record((long)((now - _sentAt[_head]) * (1e9 / Stopwatch.Frequency)));
                if (op == Get)
                {
                    s.Gets++;
                    s.GetHits += hit ? 1 : 0;
                }
                else
                {
                    s.Adds++;
                    s.AddStored += hit ? 1 : 0;
                }
            }

            _head = (_head + 1) % _ops.Length;
            _count--;
            answered++;
        }

        if (_rs == _re)
        {
            _rs = _re = 0;
        }

        return answered;
    }

    private static int ParseMemcache(ReadOnlySpan<byte> span, byte op, out bool hit, out string? error)
    {
        hit = false;
        error = null;
        int eol = span.IndexOf("\r\n"u8);
        if (eol < 0)
        {
            return 0;
        }

        ReadOnlySpan<byte> line = span[..eol];
        if (op == Add)
        {
            hit = line.SequenceEqual("STORED"u8);
            if (!hit && !line.SequenceEqual("NOT_STORED"u8))
            {
                error = Encoding.ASCII.GetString(line);
            }

            return eol + 2;
        }

        if (line.SequenceEqual("END"u8))
        {
            return eol + 2;
        }

        int space = line.LastIndexOf((byte)' ');
        if (!line.StartsWith("VALUE "u8) || !Utf8Parser.TryParse(line[(space + 1)..], out int length, out _))
        {
            error = Encoding.ASCII.GetString(line);
            return 0;
        }

        int need = eol + 2 + length + 2 + 5;
        if (span.Length < need)
        {
            return 0;
        }

        if (!span[(need - 5)..need].SequenceEqual("END\r\n"u8))
        {
            error = "VALUE not followed by END";
            return 0;
        }

        hit = true;
        return need;
    }

    private static int ParseRedis(ReadOnlySpan<byte> span, out bool hit, out string? error)
    {
        hit = false;
        error = null;
        int eol = span.IndexOf("\r\n"u8);
        if (eol < 0)
        {
            return 0;
        }

        ReadOnlySpan<byte> line = span[..eol];
        switch (line[0])
        {
            case (byte)'+':
                hit = true;
                return eol + 2;
            case (byte)'$' when Utf8Parser.TryParse(line[1..], out int length, out _):
                if (length < 0)
                {
                    return eol + 2;
                }

                if (span.Length < eol + 2 + length + 2)
                {
                    return 0;
                }

                hit = true;
                return eol + 2 + length + 2;
            default:
                error = Encoding.ASCII.GetString(line);
                return 0;
        }
    }

    /// <summary>Decodes the distcache response at the start of the unread input with the protocol library's decoder
    /// (which checks every framing rule). GET: the session's data is a hit, NOTOK a miss. ADD: OK is stored,
    /// ADD_ERR_MATCHING_SESSION (already present) not stored. Anything else, or an answer to another request, is an
    /// error.</summary>
    private int ParseDistcache(byte op, out bool hit, out string? error)
    {
        hit = false;
        error = null;
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(_recv, _rs, _re - _rs));
        DecodeStatus status = _decoder.TryDecode(ref reader, out Message response, out ProtocolViolation violation);
        if (status == DecodeStatus.NeedMoreData)
        {
            return 0;
        }

        if (status == DecodeStatus.Violation)
        {
            error = "protocol violation from the server: " + violation.Describe();
            return 0;
        }

        // Answers come in request order, so the oldest request in flight is the one answered.
        Operation expected = op == Get ? Operation.Get : Operation.Add;
        uint expectedUid = _nextUid - (uint)_count;
        if (response.RequestUid != expectedUid || response.Operation != expected)
        {
            error = $"response uid {response.RequestUid} {response.Operation.ToWireName()} answers uid {expectedUid} {expected.ToWireName()}";
            return 0;
        }

        ReadOnlySpan<byte> payload = response.Payload.Span;
        bool isStatus = Responses.TryReadStatus(payload, out StatusCode answer);
        if (op == Get && payload.Length == _o.DataSize)
        {
            hit = true;
        }
        else if (op == Add && isStatus && answer is StatusCode.Ok or StatusCode.AddErrMatchingSession)
        {
            hit = answer == StatusCode.Ok;
        }
        else if (!(op == Get && isStatus && answer == StatusCode.NotOk))
        {
            error = isStatus ? $"answered with status {answer.ToWireName()}"
                : payload.IsEmpty ? "answered with an empty response (a proxy without its server?)"
                : $"answered with {payload.Length} bytes of data{(op == Get ? $", not {_o.DataSize}" : string.Empty)}";
            return 0;
        }

        return (int)reader.Consumed;
    }

    private void Fail(string message)
    {
        Stats.Errors++;
        FirstError ??= message;
        _count = 0;
    }

    private ulong Next()
    {
        // SplitMix64.
        ulong z = _rng += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
