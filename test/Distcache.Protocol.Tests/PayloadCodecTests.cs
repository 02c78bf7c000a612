using System.Buffers.Binary;
using Distcache.Protocol;
using Distcache.Protocol.Tests.Support;

namespace Distcache.Protocol.Tests;

public sealed class PayloadCodecTests
{
    private static byte[] AddPayload(uint timeout, uint idLength, int actualId, int data)
    {
        var p = new byte[8 + actualId + data];
        BinaryPrimitives.WriteUInt32BigEndian(p, timeout);
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(4), idLength);
        for (int i = 8; i < p.Length; i++)
        {
            p[i] = (byte)i;
        }

        return p;
    }

    public static TheoryData<string, byte[], AddRequestParseResult> AddCases() => new()
    {
        { "valid", AddPayload(1000, 3, 3, 5), AddRequestParseResult.Valid },
        { "7 bytes", AddPayload(1000, 0, 0, 0)[..7], AddRequestParseResult.PayloadTooShort },
        { "empty", [], AddRequestParseResult.PayloadTooShort },
        { "timeout 7 days is fine", AddPayload(604_800_000, 3, 3, 5), AddRequestParseResult.Valid },
        { "timeout 7 days + 1 ms", AddPayload(604_800_001, 3, 3, 5), AddRequestParseResult.TimeoutOutOfRange },
        { "timeout high bit", AddPayload(0x8000_0000, 3, 3, 5), AddRequestParseResult.TimeoutOutOfRange },
        { "timeout checked before corruption", AddPayload(604_800_001, 99, 3, 5), AddRequestParseResult.TimeoutOutOfRange },
        { "id_len equals the rest", AddPayload(1000, 8, 3, 5), AddRequestParseResult.Corrupt },
        { "id_len beyond the rest", AddPayload(1000, 9, 3, 5), AddRequestParseResult.Corrupt },
        { "id_len high bit", AddPayload(1000, 0x8000_0003, 3, 5), AddRequestParseResult.Corrupt },
        { "only the prefix", AddPayload(1000, 0, 0, 0), AddRequestParseResult.Corrupt },
        { "id_len 0", AddPayload(1000, 0, 0, 5), AddRequestParseResult.IdOutOfRange },
        { "id_len 65", AddPayload(1000, 65, 65, 5), AddRequestParseResult.IdOutOfRange },
        { "id_len 64", AddPayload(1000, 64, 64, 5), AddRequestParseResult.Valid },
        { "data of 1 byte", AddPayload(0, 1, 1, 1), AddRequestParseResult.Valid },
    };

    [Theory]
    [MemberData(nameof(AddCases))]
    public void Add_request_checks_run_in_1_5_1_order(string name, byte[] payload, AddRequestParseResult expected)
    {
        Assert.True(expected == AddRequest.TryParse(payload, out _), name);
    }

    [Fact]
    public void Add_request_data_over_32768_bytes_is_out_of_range()
    {
        // Not reachable inside one message (the payload is at most 32768 bytes), but the check exists in 1.5.1;
        // a payload assembled outside the decoder reaches it.
        var payload = AddPayload(1000, 1, 1, 32769);
        Assert.Equal(AddRequestParseResult.DataOutOfRange, AddRequest.TryParse(payload, out _));
    }

    [Fact]
    public void Add_request_parse_slices_id_and_data()
    {
        var id = Frames.Random(32, 1);
        var data = Frames.Random(3000, 2);
        var stream = Frames.Encode(w => Requests.WriteAdd(w, 77, 300_000, id, data));
        var message = Assert.Single(Decode.All(stream, MessageDirection.Requests).Messages);
        Assert.Equal(AddRequestParseResult.Valid, AddRequest.TryParse(message.Payload, out var request));
        Assert.Equal(300_000u, request.TimeoutMilliseconds);
        Assert.Equal(id, request.Id.ToArray());
        Assert.Equal(data, request.Data.ToArray());
        Assert.Equal(message.Payload.Length, request.PayloadLength);
        Assert.Equal(stream, Frames.Encode(w => request.WriteTo(w, 77)));
    }

    [Theory]
    [InlineData(AddRequestParseResult.Valid, StatusCode.Ok)]
    [InlineData(AddRequestParseResult.TimeoutOutOfRange, StatusCode.AddErrTimeoutRange)]
    [InlineData(AddRequestParseResult.Corrupt, StatusCode.AddErrCorrupt)]
    [InlineData(AddRequestParseResult.IdOutOfRange, StatusCode.AddErrIdRange)]
    [InlineData(AddRequestParseResult.DataOutOfRange, StatusCode.AddErrDataRange)]
    public void Add_parse_results_map_to_their_status_codes(AddRequestParseResult result, StatusCode status) =>
        Assert.Equal(status, result.ToStatusCode());

    [Fact]
    public void Too_short_add_has_no_status_code() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => AddRequestParseResult.PayloadTooShort.ToStatusCode());

    [Theory]
    [InlineData(Operation.Get)]
    [InlineData(Operation.Remove)]
    [InlineData(Operation.Have)]
    public void Id_requests_carry_the_id_as_payload(Operation operation)
    {
        var id = Frames.Random(64, 3);
        var stream = Frames.Encode(w => Requests.WriteIdRequest(w, 12, operation, id));
        Assert.Equal(14 + 64, stream.Length);
        var message = Assert.Single(Decode.All(stream, MessageDirection.Requests).Messages);
        Assert.Equal(operation, message.Operation);
        Assert.Equal(id, message.Payload);
    }

    [Fact]
    public void Id_request_refuses_add() =>
        Assert.Throws<ArgumentException>(() => Frames.Encode(w => Requests.WriteIdRequest(w, 1, Operation.Add, [1])));

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(64, true)]
    [InlineData(65, false)]
    public void Session_id_length_limits(int length, bool valid) => Assert.Equal(valid, Requests.IsValidSessionId(length));

    [Theory]
    [InlineData(StatusCode.Ok)]
    [InlineData(StatusCode.NotOk)]
    [InlineData(StatusCode.Disconnected)]
    [InlineData(StatusCode.AddErrMatchingSession)]
    public void Status_response_is_one_15_byte_frame(StatusCode status)
    {
        var stream = Frames.Encode(w => Responses.WriteStatus(w, 0x01020304, Operation.Add, status));
        Assert.Equal(Frames.Concat(Frames.Header(isResponse: 1, uid: 0x01020304, operation: 0, dataLength: 1), [(byte)status]), stream);
        var message = Assert.Single(Decode.All(stream, MessageDirection.Responses).Messages);
        Assert.Equal(ResponseKind.Status, Responses.Classify(message.Payload));
        Assert.True(Responses.TryReadStatus(message.Payload, out var read));
        Assert.Equal(status, read);
    }

    [Fact]
    public void Empty_response_is_1_5_1_proxy_failure()
    {
        var stream = Frames.Encode(w => Responses.WriteEmpty(w, 1, Operation.Add));
        Assert.Equal(Frames.Header(isResponse: 1, uid: 1, operation: 0, dataLength: 0), stream);
        Assert.Equal(ResponseKind.Empty, Responses.Classify([]));
        Assert.False(Responses.TryReadStatus([], out _));
    }

    [Fact]
    public void Data_response_is_classified_as_data() => Assert.Equal(ResponseKind.Data, Responses.Classify([1, 2]));
}
