using Distcache.Protocol;

namespace Distcache.Server.Tests;

/// <summary>What the server answers, request by request (PROTOCOL.md sections 2 and 3), in process.</summary>
public sealed class RequestTests
{
    private static readonly byte[] Id = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    private static readonly byte[] Data = Enumerable.Range(0, 3000).Select(i => (byte)i).ToArray();

    private static async Task<byte[]> AskAsync(InProcess server, Action<System.Buffers.IBufferWriter<byte>> request, uint uid, Operation op)
    {
        await server.SendAsync(request);
        var (ruid, rop, payload) = await server.ReceiveMessageAsync();
        Assert.Equal(uid, ruid);
        Assert.Equal(op, rop);
        return payload;
    }

    [Fact]
    public async Task Add_get_have_remove_round()
    {
        await using var server = new InProcess();
        Assert.Equal([1], await AskAsync(server, w => Requests.WriteIdRequest(w, 1, Operation.Get, Id), 1, Operation.Get));
        Assert.Equal([1], await AskAsync(server, w => Requests.WriteIdRequest(w, 2, Operation.Have, Id), 2, Operation.Have));
        Assert.Equal([0], await AskAsync(server, w => Requests.WriteAdd(w, 3, 60_000, Id, Data), 3, Operation.Add));
        Assert.Equal([101], await AskAsync(server, w => Requests.WriteAdd(w, 4, 60_000, Id, [9, 9]), 4, Operation.Add));
        Assert.Equal(Data, await AskAsync(server, w => Requests.WriteIdRequest(w, 5, Operation.Get, Id), 5, Operation.Get));
        Assert.Equal([0], await AskAsync(server, w => Requests.WriteIdRequest(w, 6, Operation.Have, Id), 6, Operation.Have));
        Assert.Equal([0], await AskAsync(server, w => Requests.WriteIdRequest(w, 7, Operation.Remove, Id), 7, Operation.Remove));
        Assert.Equal([1], await AskAsync(server, w => Requests.WriteIdRequest(w, 8, Operation.Remove, Id), 8, Operation.Remove));
        Assert.Equal([1], await AskAsync(server, w => Requests.WriteIdRequest(w, 9, Operation.Get, Id), 9, Operation.Get));
        Assert.Equal(9, server.Server.Statistics.Operations);
    }

    [Theory]
    [InlineData(604_800_001u, 10, 5, 102)]
    [InlineData(1000u, 0, 5, 103)]
    [InlineData(1000u, 65, 5, 103)]
    public async Task Add_errors_are_answered_not_closed(uint timeout, int idLength, int dataLength, byte code)
    {
        await using var server = new InProcess();
        Assert.Equal([code], await AskAsync(server, w => Requests.WriteAdd(w, 1, timeout, new byte[idLength], new byte[dataLength]), 1, Operation.Add));
        Assert.Equal([1], await AskAsync(server, w => Requests.WriteIdRequest(w, 2, Operation.Have, Id), 2, Operation.Have));
    }

    [Fact]
    public async Task Add_corrupt_and_empty_data_codes()
    {
        await using var server = new InProcess();
        // id_len says 10 but only 10 bytes follow: no data, so corrupt (100).
        Assert.Equal([100], await AskAsync(server, w => Requests.WriteAdd(w, 1, 1000, Id, []), 1, Operation.Add));
        Assert.Equal(0, server.Server.Statistics.ProtocolViolations);
    }

    [Theory]
    [InlineData(Operation.Get, 0)]
    [InlineData(Operation.Get, 65)]
    [InlineData(Operation.Remove, 0)]
    [InlineData(Operation.Have, 65)]
    public async Task Out_of_range_ids_are_answered_notok_like_1_5_1(Operation op, int idLength)
    {
        await using var server = new InProcess();
        Assert.Equal([1], await AskAsync(server, w => Requests.WriteIdRequest(w, 1, op, new byte[idLength]), 1, op));
    }

    [Fact]
    public async Task Add_shorter_than_8_bytes_closes_the_connection()
    {
        await using var server = new InProcess();
        await server.SendAsync(w =>
        {
            var writer = new MessageWriter(w, false, 1, Operation.Add, 7);
            writer.Write(new byte[7]);
            writer.Complete();
        });
        var violation = await server.Served.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(ProtocolViolationKind.AddPayloadTooShort, violation?.Kind);
        Assert.Equal(1, server.Server.Statistics.ProtocolViolations);
    }

    [Fact]
    public async Task Expired_sessions_are_invisible()
    {
        await using var server = new InProcess();
        Assert.Equal([0], await AskAsync(server, w => Requests.WriteAdd(w, 1, 0, Id, Data), 1, Operation.Add));
        Assert.Equal([1], await AskAsync(server, w => Requests.WriteIdRequest(w, 2, Operation.Have, Id), 2, Operation.Have));
        Assert.Equal([0], await AskAsync(server, w => Requests.WriteAdd(w, 3, 60_000, Id, Data), 3, Operation.Add));
    }

    [Fact]
    public async Task Maximum_size_session_round_trips()
    {
        await using var server = new InProcess();
        var id = new byte[64];
        var data = Enumerable.Range(0, ProtocolConstants.MaxMessagePayload - 8 - 64).Select(i => (byte)(i * 7)).ToArray();
        Assert.Equal([0], await AskAsync(server, w => Requests.WriteAdd(w, 1, 60_000, id, data), 1, Operation.Add));
        Assert.Equal(data, await AskAsync(server, w => Requests.WriteIdRequest(w, 2, Operation.Get, id), 2, Operation.Get));
    }
}
