using System.Buffers;
using System.Buffers.Binary;
using Distcache.Apps.Snoop;
using Distcache.Protocol;
using Distcache.Server;
using Distcache.Storage;

namespace Distcache.Fuzz;

/// <summary>
/// Target "payload": the request payload decoders, <see cref="AddRequest.TryParse"/> for ADD and the session id
/// checks of GET, REMOVE and HAVE, both on their own and as dc_server applies them (<see cref="RequestProcessor"/>
/// over a real <see cref="MemorySessionStore"/>), and as dc_snoop prints them.
/// </summary>
/// <remarks>
/// Input: byte 0 chooses the operation (low two bits) and the patch level announced (the rest); the remaining
/// bytes are the payload. Checks: the ADD verdict is the one 1.5.1's checks give, in 1.5.1's order; an accepted
/// ADD's id and data are the payload's bytes and within the limits, and the request encodes and decodes back to
/// the same payload; the server answers every request with exactly one well-formed response echoing its uid and
/// operation (or drops the connection for a too-short ADD, and only then); a stored session reads back as stored.
/// </remarks>
public static class PayloadTarget
{
    private const uint Uid = 0x01020304;

    private static readonly MemorySessionStore Store = new(new MemorySessionStoreOptions { MaxSessions = 16, TimeProvider = new FrozenClock() });
    private static readonly RequestProcessor Processor = new(Store);
    private static readonly TrafficFormatter Text = new(new OutputSink(Stream.Null, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance), 0, json: false);
    private static readonly TrafficFormatter Json = new(new OutputSink(Stream.Null, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance), 0, json: true);

    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }

        var operation = (Operation)(input[0] & 3);
        uint protoLevel = ProtocolConstants.ProtoLevel | (uint)(input[0] >> 2);
        int length = Math.Min(input.Length - 1, ProtocolConstants.MaxMessagePayload);
        byte[] payload = input.Slice(1, length).ToArray();
        var message = new Message(protoLevel, false, Uid, operation, payload, MessageWriter.FrameCount(payload.Length));

        if (operation == Operation.Add)
        {
            CheckAdd(payload, message);
        }
        else
        {
            CheckIdRequest(payload, message);
        }

        Text.Request(1, 0, message);
        Json.Request(1, 0, message);
        Text.Flush();
        Json.Flush();
    }

    private static void CheckAdd(byte[] payload, in Message message)
    {
        long allocation = Allocation.Start();
        AddRequestParseResult result = AddRequest.TryParse(payload, out AddRequest request);
        Allocation.End(allocation, "AddRequest.TryParse");
        Check.Equal(Expected(payload), result, "ADD verdict");
        if (result != AddRequestParseResult.Valid)
        {
            Check.Equal(default, request, "request returned with a rejected ADD");
        }
        else
        {
            Check.That(request.Id.Length is >= 1 and <= ProtocolConstants.MaxSessionIdLength, $"accepted an id of {request.Id.Length} bytes");
            Check.That(request.Data.Length is >= 1 and <= ProtocolConstants.MaxSessionDataLength, $"accepted data of {request.Data.Length} bytes");
            Check.That(request.TimeoutMilliseconds <= ProtocolConstants.MaxTimeoutMilliseconds, $"accepted a timeout of {request.TimeoutMilliseconds} ms");
            Check.Equal(payload.Length, request.PayloadLength, "payload length of an accepted ADD");
            Check.That(request.Id.Span.SequenceEqual(payload.AsSpan(8, request.Id.Length)), "id is not the bytes after the prefix");
            Check.That(request.Data.Span.SequenceEqual(payload.AsSpan(8 + request.Id.Length)), "data is not the bytes after the id");

            // Encoding the request and decoding it again gives back the same payload and the same verdict.
            var output = new ArrayBufferWriter<byte>();
            request.WriteTo(output, Uid);
            Message decoded = DecodeOne(output.WrittenMemory, MessageDirection.Requests, "an encoded ADD");
            Check.That(decoded.Payload.Span.SequenceEqual(payload), "an encoded ADD decodes to another payload");
            Check.Equal(AddRequestParseResult.Valid, AddRequest.TryParse(decoded.Payload, out AddRequest again), "verdict on a re-encoded ADD");
            Check.Equal(request.TimeoutMilliseconds, again.TimeoutMilliseconds, "timeout of a re-encoded ADD");
        }

        ProtocolViolationKind? dropped = Process(message, out ArrayBufferWriter<byte> response);
        if (result == AddRequestParseResult.PayloadTooShort)
        {
            Check.Equal(ProtocolViolationKind.AddPayloadTooShort, dropped, "server's answer to a too-short ADD");
            Check.Equal(0, response.WrittenCount, "bytes written for a dropped connection");
            return;
        }

        Check.Equal(null, dropped, "server dropped the connection for an ADD");
        StatusCode status = Status(response, Operation.Add);
        if (result != AddRequestParseResult.Valid)
        {
            Check.Equal(result.ToStatusCode(), status, "server's answer to a rejected ADD");
            return;
        }

        Check.Equal(StatusCode.Ok, status, "server's answer to a valid ADD on an empty store");
        try
        {
            // With the clock frozen, a session lives unless its timeout is zero.
            if (request.TimeoutMilliseconds > 0)
            {
                Check.Equal(null, Process(message with { Operation = Operation.Get, Payload = request.Id }, out response), "GET dropped");
                Message data = DecodeOne(response.WrittenMemory, MessageDirection.Responses, "the GET response");
                Check.That(data.Payload.Span.SequenceEqual(request.Data.Span), "a stored session reads back different");
                Check.Equal(null, Process(message, out response), "second ADD dropped");
                Check.Equal(StatusCode.AddErrMatchingSession, Status(response, Operation.Add), "answer to an ADD of a live id");
            }
        }
        finally
        {
            // Each input starts from an empty store, so the fuzzer sees the same behaviour for the same input.
            Process(message with { Operation = Operation.Remove, Payload = request.Id }, out _);
        }

        Check.Equal(0L, Store.Count, "sessions left in the store");
    }

    private static void CheckIdRequest(byte[] payload, in Message message)
    {
        bool valid = Requests.IsValidSessionId(payload.Length);
        Check.Equal(payload.Length is >= 1 and <= 64, valid, "session id check");

        var output = new ArrayBufferWriter<byte>();
        Requests.WriteIdRequest(output, Uid, message.Operation, payload);
        Message decoded = DecodeOne(output.WrittenMemory, MessageDirection.Requests, "an encoded id request");
        Check.That(decoded.Payload.Span.SequenceEqual(payload), "an encoded id request decodes to another payload");

        Check.Equal(null, Process(message, out ArrayBufferWriter<byte> response), $"server dropped the connection for {message.Operation.ToWireName()}");
        // Nothing is stored between inputs, so every lookup misses.
        Check.Equal(StatusCode.NotOk, Status(response, message.Operation), $"server's answer to {message.Operation.ToWireName()} on an empty store");
    }

    // 1.5.1's order of checks, with the lengths in 64-bit arithmetic so no wrap-around can hide a mistake.
    private static AddRequestParseResult Expected(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 8)
        {
            return AddRequestParseResult.PayloadTooShort;
        }

        long timeout = BinaryPrimitives.ReadUInt32BigEndian(payload);
        long idLength = BinaryPrimitives.ReadUInt32BigEndian(payload[4..]);
        long rest = payload.Length - 8L;
        if (timeout > 7L * 24 * 3600 * 1000)
        {
            return AddRequestParseResult.TimeoutOutOfRange;
        }

        if (idLength >= rest)
        {
            return AddRequestParseResult.Corrupt;
        }

        if (idLength is < 1 or > 64)
        {
            return AddRequestParseResult.IdOutOfRange;
        }

        long dataLength = rest - idLength;
        return dataLength is < 1 or > 32768 ? AddRequestParseResult.DataOutOfRange : AddRequestParseResult.Valid;
    }

    private static ProtocolViolationKind? Process(in Message message, out ArrayBufferWriter<byte> output)
    {
        output = new ArrayBufferWriter<byte>();
        ValueTask<ProtocolViolationKind?> pending = Processor.ProcessAsync(message, output);
        if (!pending.IsCompleted)
        {
            throw new FuzzFailureException("the server's processing of a request to the memory store did not complete at once");
        }

        return pending.Result;
    }

    private static StatusCode Status(ArrayBufferWriter<byte> response, Operation operation)
    {
        Message message = DecodeOne(response.WrittenMemory, MessageDirection.Responses, "the server's response");
        Check.Equal(operation, message.Operation, "operation of the server's response");
        Check.That(Responses.TryReadStatus(message.Payload.Span, out StatusCode status), $"the server answered {operation.ToWireName()} with {message.Payload.Length} bytes, not a status");
        return status;
    }

    // Exactly one whole message, echoing the uid.
    private static Message DecodeOne(ReadOnlyMemory<byte> bytes, MessageDirection direction, string what)
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(bytes));
        DecodeStatus status = new MessageDecoder(direction).TryDecode(ref reader, out Message message, out ProtocolViolation violation);
        Check.That(status == DecodeStatus.Complete, $"{what} does not decode: {status} {violation}");
        Check.Equal(0L, reader.Remaining, $"bytes after {what}");
        Check.Equal(Uid, message.RequestUid, $"uid of {what}");
        return message;
    }

    // Expiry must not depend on when an input happens to run.
    private sealed class FrozenClock : TimeProvider
    {
        public override long GetTimestamp() => 1_000_000_000;
    }
}
