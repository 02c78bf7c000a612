using System.Buffers;
using System.IO.Pipelines;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;

namespace Distcache.Server;

/// <summary>
/// One client connection: reads everything available, answers every complete request in it, and flushes the
/// responses once. Pipelined requests therefore cost one read and one write system call per batch.
/// </summary>
internal sealed class ServerConnection
{
    private readonly IDuplexPipe _transport;
    private readonly string _peer;
    private readonly RequestProcessor _processor;
    private readonly ServerStatistics _statistics;
    private readonly ILogger _logger;
    private readonly MessageDecoder _decoder = new(MessageDirection.Requests);
    private volatile bool _stopping;

    public ServerConnection(IDuplexPipe transport, string peer, RequestProcessor processor, ServerStatistics statistics, ILogger logger)
    {
        _transport = transport;
        _peer = peer;
        _processor = processor;
        _statistics = statistics;
        _logger = logger;
    }

    public string Peer => _peer;

    public long Requests { get; private set; }

    /// <summary>Asks the loop to finish the batch it is answering and stop.</summary>
    public void Stop()
    {
        _stopping = true;
        _transport.Input.CancelPendingRead();
    }

    /// <summary>Serves until the peer closes, breaks the protocol, or <see cref="Stop"/> is called.
    /// Returns the violation that closed the connection, if any.</summary>
    public async Task<ProtocolViolation?> RunAsync(CancellationToken cancellationToken)
    {
        PipeReader input = _transport.Input;
        PipeWriter output = _transport.Output;
        while (true)
        {
            ReadResult read = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = read.Buffer;
            SequencePosition position = buffer.Start;
            long answered = 0;
            ProtocolViolation? violation = null;
            while (true)
            {
                DecodeStatus status = DecodeNext(buffer.Slice(position), out Message request, out SequencePosition next, out ProtocolViolation frameViolation);
                if (status == DecodeStatus.NeedMoreData)
                {
                    break;
                }

                if (status == DecodeStatus.Violation)
                {
                    violation = frameViolation;
                    break;
                }

                // The request's payload points into 'buffer', which stays valid until AdvanceTo below, even across
                // an asynchronous store call.
                ValueTask<ProtocolViolationKind?> processing = _processor.ProcessAsync(request, output, cancellationToken);
                ProtocolViolationKind? refused = processing.IsCompletedSuccessfully ? processing.Result : await processing.ConfigureAwait(false);
                if (refused is { } kind)
                {
                    violation = new ProtocolViolation(kind, ProtocolConstants.FrameHeaderSize);
                    break;
                }

                position = next;
                answered++;
            }

            // Responses to everything before a violation are still sent: those requests were well-formed.
            input.AdvanceTo(position, buffer.End);
            if (answered > 0)
            {
                Requests += answered;
                _statistics.AddOperations(answered);
                FlushResult flushed = await output.FlushAsync(cancellationToken).ConfigureAwait(false);
                if (flushed.IsCompleted)
                {
                    return null;
                }
            }

            if (violation is { } v)
            {
                _statistics.Violation();
                Log.ProtocolViolation(_logger, _peer, v.Describe());
                return v;
            }

            if (read.IsCompleted)
            {
                long pending = buffer.Slice(position).Length;
                if (pending > 0)
                {
                    var truncated = new ProtocolViolation(ProtocolViolationKind.TruncatedMessage, pending);
                    _statistics.Violation();
                    Log.ProtocolViolation(_logger, _peer, $"{truncated.Kind.Describe()} ({pending} bytes pending)");
                    return truncated;
                }

                return null;
            }

            if (read.IsCanceled && _stopping)
            {
                return null;
            }
        }
    }

    // SequenceReader is a ref struct and cannot live across the awaits of the loop, so each decode gets its own.
    private DecodeStatus DecodeNext(ReadOnlySequence<byte> unread, out Message message, out SequencePosition next, out ProtocolViolation violation)
    {
        var reader = new SequenceReader<byte>(unread);
        DecodeStatus status = _decoder.TryDecode(ref reader, out message, out violation);
        next = reader.Position;
        return status;
    }
}
