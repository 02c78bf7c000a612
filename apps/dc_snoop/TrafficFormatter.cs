using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Distcache.Protocol;

namespace Distcache.Apps.Snoop;

/// <summary>Which way bytes travel through the snoop.</summary>
internal enum Direction
{
    /// <summary>From the connecting client to the server: requests.</summary>
    ToServer,

    /// <summary>From the server back to the client: responses.</summary>
    ToClient,
}

/// <summary>
/// Turns traffic events into output lines, either readable text or one JSON object per line, and hands them to
/// the <see cref="OutputSink"/> in batches. One instance per forwarding loop: it keeps a buffer and a JSON writer
/// that must not be shared between threads.
/// </summary>
internal sealed class TrafficFormatter : IDisposable
{
    private readonly OutputSink _sink;
    private readonly long _start;
    private readonly bool _json;
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);
    private readonly StringBuilder _line = new(256);
    private readonly Utf8JsonWriter? _writer;

    public TrafficFormatter(OutputSink sink, long startTimestamp, bool json)
    {
        _sink = sink;
        _start = startTimestamp;
        _json = json;
        if (json)
        {
            // Relaxed escaping keeps "->" and "<-" readable; the output goes to terminals and pipes, never into HTML.
            _writer = new Utf8JsonWriter(_buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        }
    }

    public void Dispose() => _writer?.Dispose();

    public static string Arrow(Direction direction) => direction == Direction.ToServer ? "->" : "<-";

    /// <summary>A connection was accepted and its server connection made.</summary>
    public void Open(long connection, long timestamp, string client, string server)
    {
        if (BeginJson(connection, timestamp, "open") is { } w)
        {
            w.WriteString("client", client);
            w.WriteString("server", server);
            EndJson(w);
            return;
        }

        BeginText(connection, timestamp).Append(CultureInfo.InvariantCulture, $"open client={client} server={server}");
        EndText();
    }

    /// <summary>A whole request went by.</summary>
    public void Request(long connection, long timestamp, in Message message)
    {
        ReadOnlySpan<byte> payload = message.Payload.Span;
        ReadOnlySpan<byte> id = payload;
        uint? timeout = null;
        int? dataLength = null;
        string? note = null;
        if (message.Operation == Operation.Add)
        {
            id = default;
            note = DescribeAdd(message.Payload, out timeout, out id, out dataLength);
        }
        else if (!Requests.IsValidSessionId(id.Length))
        {
            note = "id length out of range, the server answers NOTOK";
        }

        if (BeginJson(connection, timestamp, "request") is { } w)
        {
            w.WriteString("dir", "->");
            WriteCommonJson(w, message);
            w.WriteString("id", Hex(id));
            if (timeout is { } t)
            {
                w.WriteNumber("timeout_ms", t);
            }

            if (dataLength is { } d)
            {
                w.WriteNumber("data_len", d);
            }

            if (note is not null)
            {
                w.WriteString("note", note);
            }

            EndJson(w);
            return;
        }

        StringBuilder line = BeginText(connection, timestamp);
        AppendCommonText(line, "->", message);
        line.Append(" id=").Append(Hex(id));
        if (timeout is { } timeoutMs)
        {
            line.Append(CultureInfo.InvariantCulture, $" timeout={timeoutMs}ms");
        }

        if (dataLength is { } data)
        {
            line.Append(CultureInfo.InvariantCulture, $" data={data}");
        }

        if (note is not null)
        {
            line.Append(" (").Append(note).Append(')');
        }

        EndText();
    }

    /// <summary>A whole response went by; <paramref name="latency"/> is the time since its request, if one was seen.</summary>
    public void Response(long connection, long timestamp, in Message message, TimeSpan? latency)
    {
        ReadOnlySpan<byte> payload = message.Payload.Span;
        ResponseKind kind = Responses.Classify(payload);
        string? status = kind == ResponseKind.Status ? ((StatusCode)payload[0]).ToWireName() : null;
        if (BeginJson(connection, timestamp, "response") is { } w)
        {
            w.WriteString("dir", "<-");
            WriteCommonJson(w, message);
            w.WriteString("kind", kind switch { ResponseKind.Empty => "empty", ResponseKind.Status => "status", _ => "data" });
            if (status is not null)
            {
                w.WriteString("status", status);
                w.WriteNumber("status_byte", payload[0]);
            }

            if (latency is { } l)
            {
                w.WriteNumber("latency_ms", Math.Round(l.TotalMilliseconds, 3));
            }
            else
            {
                w.WriteNull("latency_ms");
            }

            EndJson(w);
            return;
        }

        StringBuilder line = BeginText(connection, timestamp);
        AppendCommonText(line, "<-", message);
        line.Append(kind switch { ResponseKind.Empty => " empty", ResponseKind.Status => " status=" + status, _ => " data" });
        if (latency is { } elapsed)
        {
            line.Append(CultureInfo.InvariantCulture, $" time={elapsed.TotalMilliseconds:F3}ms");
        }
        else
        {
            line.Append(" (no matching request)");
        }

        EndText();
    }

    /// <summary>A direction stopped decoding; its bytes are still forwarded.</summary>
    public void Violation(long connection, long timestamp, Direction direction, string description, long streamOffset)
    {
        if (BeginJson(connection, timestamp, "violation") is { } w)
        {
            w.WriteString("dir", Arrow(direction));
            w.WriteString("violation", description);
            w.WriteNumber("stream_offset", streamOffset);
            EndJson(w);
            return;
        }

        BeginText(connection, timestamp).Append(CultureInfo.InvariantCulture,
            $"{Arrow(direction)} VIOLATION at byte {streamOffset} of the stream: {description}; the rest of this direction is forwarded undecoded");
        EndText();
    }

    /// <summary>Both directions are closed.</summary>
    public void Close(long connection, long timestamp, in ConnectionSummary summary)
    {
        if (BeginJson(connection, timestamp, "close") is { } w)
        {
            w.WriteString("client_end", summary.ClientEnd);
            w.WriteString("server_end", summary.ServerEnd);
            w.WriteNumber("requests", summary.Requests);
            w.WriteNumber("responses", summary.Responses);
            w.WriteNumber("bytes_to_server", summary.BytesToServer);
            w.WriteNumber("bytes_to_client", summary.BytesToClient);
            EndJson(w);
            return;
        }

        BeginText(connection, timestamp).Append(CultureInfo.InvariantCulture,
            $"close client={summary.ClientEnd} server={summary.ServerEnd} requests={summary.Requests} responses={summary.Responses} bytes->={summary.BytesToServer} bytes<-={summary.BytesToClient}");
        EndText();
    }

    /// <summary>Hands the lines formatted so far to the sink.</summary>
    public void Flush()
    {
        if (_buffer.WrittenCount > 0)
        {
            _sink.Write(_buffer.WrittenSpan.ToArray());
            _buffer.ResetWrittenCount();
        }
    }

    // ADD carries its id inside the payload; a malformed one is shown with what can be read and what the server will say.
    private static string? DescribeAdd(ReadOnlyMemory<byte> message, out uint? timeout, out ReadOnlySpan<byte> id, out int? dataLength)
    {
        ReadOnlySpan<byte> payload = message.Span;
        timeout = null;
        id = default;
        dataLength = null;
        if (payload.Length < ProtocolConstants.AddRequestPrefixSize)
        {
            return "ADD payload shorter than 8 bytes, the server drops the connection";
        }

        timeout = BinaryPrimitives.ReadUInt32BigEndian(payload);
        uint idLength = BinaryPrimitives.ReadUInt32BigEndian(payload[4..]);
        int rest = payload.Length - ProtocolConstants.AddRequestPrefixSize;
        if (idLength < (uint)rest)
        {
            id = payload.Slice(ProtocolConstants.AddRequestPrefixSize, (int)idLength);
            dataLength = rest - (int)idLength;
        }

        AddRequestParseResult verdict = AddRequest.TryParse(message, out _);
        return verdict == AddRequestParseResult.Valid ? null : "the server answers " + verdict.ToStatusCode().ToWireName();
    }

    private static string Hex(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(bytes);

    private static void WriteCommonJson(Utf8JsonWriter w, in Message message)
    {
        w.WriteNumber("uid", message.RequestUid);
        w.WriteString("op", message.Operation.ToWireName());
        w.WriteNumber("len", message.Payload.Length);
        w.WriteNumber("frames", message.FrameCount);
        if (message.PatchLevel != 0)
        {
            w.WriteNumber("patch_level", message.PatchLevel);
        }
    }

    private static void AppendCommonText(StringBuilder line, string arrow, in Message message)
    {
        line.Append(CultureInfo.InvariantCulture, $"{arrow} uid={message.RequestUid} {message.Operation.ToWireName()} len={message.Payload.Length}");
        if (message.FrameCount > 1)
        {
            line.Append(CultureInfo.InvariantCulture, $" frames={message.FrameCount}");
        }

        if (message.PatchLevel != 0)
        {
            line.Append(CultureInfo.InvariantCulture, $" patch={message.PatchLevel}");
        }
    }

    private double Seconds(long timestamp) => System.Diagnostics.Stopwatch.GetElapsedTime(_start, timestamp).TotalSeconds;

    private Utf8JsonWriter? BeginJson(long connection, long timestamp, string type)
    {
        if (!_json)
        {
            return null;
        }

        Utf8JsonWriter w = _writer!;
        w.WriteStartObject();
        w.WriteNumber("t", Math.Round(Seconds(timestamp), 6));
        w.WriteNumber("conn", connection);
        w.WriteString("type", type);
        return w;
    }

    private void EndJson(Utf8JsonWriter w)
    {
        w.WriteEndObject();
        w.Flush();
        _buffer.Write("\n"u8);
        // One object per line: the writer refuses a second top-level value unless it starts afresh.
        w.Reset(_buffer);
    }

    private StringBuilder BeginText(long connection, long timestamp)
    {
        _line.Clear();
        return _line.Append(CultureInfo.InvariantCulture, $"{Seconds(timestamp),12:F6} #{connection} ");
    }

    private void EndText()
    {
        _line.Append('\n');
        foreach (ReadOnlyMemory<char> chunk in _line.GetChunks())
        {
            Encoding.UTF8.GetBytes(chunk.Span, _buffer);
        }
    }
}

/// <summary>How a connection ended, for its closing line.</summary>
internal readonly record struct ConnectionSummary(string ClientEnd, string ServerEnd, long Requests, long Responses, long BytesToServer, long BytesToClient);
