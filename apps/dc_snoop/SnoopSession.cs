using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using Distcache.Networking;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;

namespace Distcache.Apps.Snoop;

/// <summary>
/// One accepted connection and the server connection made for it, joined by two forwarding loops. Each loop
/// forwards every byte as it arrives and decodes a copy on the side; decoding can stop (a violation) without
/// forwarding stopping, because the snoop must never change what the endpoints see.
/// </summary>
internal sealed class SnoopSession
{
    // Past this many unanswered requests the oldest are forgotten: a server that never answers must not make the
    // snoop's memory grow without bound. Their responses, if they come, are shown without a time.
    private const int MaxPendingRequests = 100_000;

    private readonly long _number;
    private readonly NetworkConnection _client;
    private readonly Address _serverAddress;
    private readonly OutputSink _sink;
    private readonly long _start;
    private readonly bool _json;
    private readonly ILogger _logger;
    private readonly Lock _pendingGate = new();
    private readonly Queue<(uint Uid, long Timestamp)> _pending = new();

    public SnoopSession(long number, NetworkConnection client, Address serverAddress, OutputSink sink, long start, bool json, ILogger logger)
    {
        _number = number;
        _client = client;
        _serverAddress = serverAddress;
        _sink = sink;
        _start = start;
        _json = json;
        _logger = logger;
    }

    /// <summary>Connects to the server and forwards until both directions have ended.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        await using (_client.ConfigureAwait(false))
        {
            NetworkConnection server;
            try
            {
                server = await NetworkConnection.ConnectAsync(_serverAddress, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is NetworkException or OperationCanceledException)
            {
                if (!cancellationToken.IsCancellationRequested)
                {
                    Log.ServerConnectFailed(_logger, _number, _client.PeerDescription, _serverAddress.ToString(), e.Message);
                }

                // The client must not believe it reached a server: it gets a reset, as if nothing accepted.
                _client.Abort();
                return;
            }

            await using (server.ConfigureAwait(false))
            {
                using var opening = new TrafficFormatter(_sink, _start, _json);
                opening.Open(_number, Stopwatch.GetTimestamp(), _client.PeerDescription, server.PeerDescription);
                opening.Flush();

                using CancellationTokenRegistration stop = cancellationToken.Register(() =>
                {
                    _client.Abort();
                    server.Abort();
                });

                using var up = new Pump(this, _client, server, Direction.ToServer);
                using var down = new Pump(this, server, _client, Direction.ToClient);
                await Task.WhenAll(Task.Run(up.RunAsync, CancellationToken.None), Task.Run(down.RunAsync, CancellationToken.None)).ConfigureAwait(false);

                using var closing = new TrafficFormatter(_sink, _start, _json);
                string clientEnd = down.DestinationReset ? "reset" : up.SourceEnd;
                string serverEnd = up.DestinationReset ? "reset" : down.SourceEnd;
                closing.Close(_number, Stopwatch.GetTimestamp(), new ConnectionSummary(clientEnd, serverEnd, up.Messages, down.Messages, up.BytesForwarded, down.BytesForwarded));
                closing.Flush();
            }
        }
    }

    private void RequestSeen(uint uid, long timestamp)
    {
        lock (_pendingGate)
        {
            if (_pending.Count >= MaxPendingRequests)
            {
                _pending.Dequeue();
            }

            _pending.Enqueue((uid, timestamp));
        }
    }

    // Responses come in request order, so the match is nearly always the oldest pending request; a proxy that
    // answers out of order (or a uid that was never seen) takes the slow path.
    private TimeSpan? ResponseSeen(uint uid, long timestamp)
    {
        lock (_pendingGate)
        {
            if (_pending.TryPeek(out var oldest) && oldest.Uid == uid)
            {
                _pending.Dequeue();
                return Stopwatch.GetElapsedTime(oldest.Timestamp, timestamp);
            }

            long? sent = null;
            int count = _pending.Count;
            for (int i = 0; i < count; i++)
            {
                var entry = _pending.Dequeue();
                if (sent is null && entry.Uid == uid)
                {
                    sent = entry.Timestamp;
                    continue;
                }

                _pending.Enqueue(entry);
            }

            return sent is { } s ? Stopwatch.GetElapsedTime(s, timestamp) : null;
        }
    }

    /// <summary>One direction: read from one side, decode a copy, forward the bytes unchanged to the other.</summary>
    private sealed class Pump : IDisposable
    {
        private readonly SnoopSession _session;
        private readonly NetworkConnection _source;
        private readonly NetworkConnection _destination;
        private readonly Direction _direction;
        private readonly MessageDecoder _decoder;
        private readonly TrafficFormatter _formatter;
        private bool _decoding = true;
        private long _decodedBytes;

        public Pump(SnoopSession session, NetworkConnection source, NetworkConnection destination, Direction direction)
        {
            _session = session;
            _source = source;
            _destination = destination;
            _direction = direction;
            _decoder = new MessageDecoder(direction == Direction.ToServer ? MessageDirection.Requests : MessageDirection.Responses);
            _formatter = new TrafficFormatter(session._sink, session._start, session._json);
        }

        /// <summary>How the source side ended: closed (end of stream), reset (read failed), or aborted (the other side failed, or shutdown).</summary>
        public string SourceEnd { get; private set; } = "aborted";

        /// <summary>Whether writing to the destination failed: it reset the connection (or closed it and then got data).</summary>
        public bool DestinationReset { get; private set; }

        public long Messages { get; private set; }

        public long BytesForwarded { get; private set; }

        public void Dispose() => _formatter.Dispose();

        public async Task RunAsync()
        {
            PipeReader input;
            PipeWriter output;
            try
            {
                input = _source.Input;
                output = _destination.Output;
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            // Bytes at the start of each read buffer that were forwarded already but not yet decoded: the decoder
            // keeps an incomplete message unconsumed, while forwarding never waits for one to complete.
            long forwardedAhead = 0;
            bool writing = false;
            try
            {
                while (true)
                {
                    ReadResult read = await input.ReadAsync().ConfigureAwait(false);
                    if (read.IsCanceled)
                    {
                        break;
                    }

                    ReadOnlySequence<byte> buffer = read.Buffer;
                    long now = Stopwatch.GetTimestamp();

                    // Decode before forwarding: a request's line is then always queued before the server can have
                    // answered it, so a response never prints above its request.
                    SequencePosition consumed = _decoding ? Decode(buffer, now) : buffer.End;
                    _formatter.Flush();

                    ReadOnlySequence<byte> fresh = buffer.Slice(forwardedAhead);
                    foreach (ReadOnlyMemory<byte> segment in fresh)
                    {
                        output.Write(segment.Span);
                    }

                    BytesForwarded += fresh.Length;
                    forwardedAhead = buffer.Slice(consumed).Length;
                    bool ended = read.IsCompleted;
                    if (ended && _decoding && forwardedAhead > 0)
                    {
                        _formatter.Violation(_session._number, now, _direction,
                            $"{ProtocolViolationKind.TruncatedMessage.Describe()} ({forwardedAhead} bytes of an unfinished message)", _decodedBytes);
                        _formatter.Flush();
                    }

                    input.AdvanceTo(consumed, buffer.End);
                    if (!fresh.IsEmpty)
                    {
                        writing = true;
                        FlushResult flushed = await output.FlushAsync().ConfigureAwait(false);
                        writing = false;
                        if (flushed.IsCanceled)
                        {
                            break;
                        }
                    }

                    if (ended)
                    {
                        SourceEnd = "closed";
                        HalfClose();
                        return;
                    }
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                // A read failure is the source's reset, a write failure the destination's. Either way the pair cannot
                // continue: reset both, as a plain TCP relay would.
                if (!_source.IsAborted && !_destination.IsAborted)
                {
                    if (writing)
                    {
                        DestinationReset = true;
                    }
                    else
                    {
                        SourceEnd = "reset";
                    }
                }
            }
#pragma warning disable CA1031 // One connection's unexpected failure must not take the snoop, or other connections, down.
            catch (Exception e)
#pragma warning restore CA1031
            {
                Log.ConnectionError(_session._logger, _session._number, e);
            }

            _source.Abort();
            _destination.Abort();
        }

        private SequencePosition Decode(ReadOnlySequence<byte> buffer, long now)
        {
            var reader = new SequenceReader<byte>(buffer);
            while (true)
            {
                long messageStart = reader.Consumed;
                DecodeStatus status = _decoder.TryDecode(ref reader, out Message message, out ProtocolViolation violation);
                if (status == DecodeStatus.NeedMoreData)
                {
                    _decodedBytes += reader.Consumed;
                    return reader.Position;
                }

                if (status == DecodeStatus.Violation)
                {
                    // Reported once; from here on this direction is only forwarded. The endpoint decides what to do.
                    _decoding = false;
                    _formatter.Violation(_session._number, now, _direction, violation.Describe(), _decodedBytes + messageStart + violation.Offset);
                    return buffer.End;
                }

                Messages++;
                if (_direction == Direction.ToServer)
                {
                    _session.RequestSeen(message.RequestUid, now);
                    _formatter.Request(_session._number, now, message);
                }
                else
                {
                    _formatter.Response(_session._number, now, message, _session.ResponseSeen(message.RequestUid, now));
                }
            }
        }

        // The source finished sending; pass that on as our own end of sending, and keep the other direction open
        // so that responses to the last requests still reach the client.
        private void HalfClose()
        {
            try
            {
                _destination.Socket?.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // The destination is already gone; its own loop sees that.
            }
        }
    }
}
