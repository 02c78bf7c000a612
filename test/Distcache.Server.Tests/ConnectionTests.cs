using System.Buffers;
using Distcache.Protocol;

namespace Distcache.Server.Tests;

/// <summary>The connection loop: pipelining, ordering, violations, shutdown.</summary>
public sealed class ConnectionTests
{
    [Fact]
    public async Task Pipelined_requests_are_answered_in_order()
    {
        await using var server = new InProcess();
        const int count = 500;
        await server.SendAsync(w =>
        {
            for (uint i = 0; i < count; i++)
            {
                byte[] id = BitConverter.GetBytes(i);
                Requests.WriteAdd(w, (i * 3) + 1, 60_000, id, [(byte)i, 1, 2, 3, 4, 5]);
                Requests.WriteIdRequest(w, (i * 3) + 2, Operation.Get, id);
                Requests.WriteIdRequest(w, (i * 3) + 3, Operation.Have, id);
            }
        });
        for (uint i = 0; i < count; i++)
        {
            var add = await server.ReceiveMessageAsync();
            var get = await server.ReceiveMessageAsync();
            var have = await server.ReceiveMessageAsync();
            Assert.Equal(((i * 3) + 1, Operation.Add), (add.Uid, add.Op));
            Assert.Equal([0], add.Payload);
            Assert.Equal((i * 3) + 2, get.Uid);
            Assert.Equal(new byte[] { (byte)i, 1, 2, 3, 4, 5 }, get.Payload);
            Assert.Equal([0], have.Payload);
        }
    }

    [Fact]
    public async Task Lookups_read_together_are_answered_as_if_one_by_one()
    {
        // A read holding several lookups is handed to the store's prefetch before any is answered; the answers must
        // still follow the requests' order, each seeing what the ones before it did, and a violation met while
        // looking ahead must be reported only when the loop gets there.
        await using var server = new InProcess();
        await server.SendAsync(w => Requests.WriteAdd(w, 1, 60_000, [7], [1, 2, 3]));
        Assert.Equal([0], (await server.ReceiveMessageAsync()).Payload);

        var bytes = new ArrayBufferWriter<byte>();
        Requests.WriteIdRequest(bytes, 2, Operation.Get, [7]);
        Requests.WriteIdRequest(bytes, 3, Operation.Remove, [7]);
        Requests.WriteIdRequest(bytes, 4, Operation.Get, [7]);
        Requests.WriteIdRequest(bytes, 5, Operation.Have, [7]);
        Requests.WriteAdd(bytes, 6, 60_000, [7], [4, 5]);
        Requests.WriteIdRequest(bytes, 7, Operation.Get, [7]);
        Requests.WriteIdRequest(bytes, 8, Operation.Get, [8]);
        await server.SendAsync([.. bytes.WrittenSpan, 0x00, 0x12]);

        await ExpectAsync(2, 1, 2, 3);
        await ExpectAsync(3, 0);
        await ExpectAsync(4, 1);
        await ExpectAsync(5, 1);
        await ExpectAsync(6, 0);
        await ExpectAsync(7, 4, 5);
        await ExpectAsync(8, 1);
        Assert.Equal(ProtocolViolationKind.WrongVersion, (await server.Served.WaitAsync(TimeSpan.FromSeconds(5)))?.Kind);

        async Task ExpectAsync(uint uid, params byte[] payload)
        {
            var answer = await server.ReceiveMessageAsync();
            Assert.Equal(uid, answer.Uid);
            Assert.Equal(payload, answer.Payload);
        }
    }

    [Fact]
    public async Task Requests_before_a_violation_are_answered_then_the_connection_closes()
    {
        await using var server = new InProcess();
        var bytes = new ArrayBufferWriter<byte>();
        Requests.WriteIdRequest(bytes, 1, Operation.Have, [1]);
        Requests.WriteIdRequest(bytes, 2, Operation.Have, [2]);
        await server.SendAsync(bytes.WrittenSpan.ToArray());
        await server.SendAsync([0x00, 0x12]);
        var violation = await server.Served.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(ProtocolViolationKind.WrongVersion, violation?.Kind);
        Assert.Equal(1u, (await server.ReceiveMessageAsync()).Uid);
        Assert.Equal(2u, (await server.ReceiveMessageAsync()).Uid);
    }

    [Fact]
    public async Task A_message_cut_off_by_the_peer_closing_is_reported_as_truncated()
    {
        await using var server = new InProcess();
        await server.SendAsync([0x00, 0x11, 0x00, 0x00, 0x00]);
        server.CloseClientSide();
        var violation = await server.Served.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(ProtocolViolationKind.TruncatedMessage, violation?.Kind);
    }

    [Fact]
    public async Task A_clean_close_is_not_a_violation()
    {
        await using var server = new InProcess();
        await server.SendAsync(w => Requests.WriteIdRequest(w, 1, Operation.Have, [1]));
        await server.ReceiveMessageAsync();
        server.CloseClientSide();
        Assert.Null(await server.Served.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(0, server.Server.Statistics.ProtocolViolations);
    }

    [Fact]
    public async Task Shutdown_stops_an_idle_connection()
    {
        await using var server = new InProcess();
        server.Shutdown();
        Assert.Null(await server.Served.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(0, server.Server.Statistics.ConnectionsOpen);
    }

    [Fact]
    public async Task One_connections_violation_leaves_another_served()
    {
        var shared = new DistcacheServer(new Distcache.Storage.MemorySessionStore());
        await using var bad = new InProcess(shared);
        await using var good = new InProcess(shared);
        await bad.SendAsync([0xFF]);
        Assert.Equal(ProtocolViolationKind.WrongVersion, (await bad.Served.WaitAsync(TimeSpan.FromSeconds(5)))?.Kind);
        await good.SendAsync(w => Requests.WriteIdRequest(w, 42, Operation.Have, [1]));
        Assert.Equal(42u, (await good.ReceiveMessageAsync()).Uid);
    }
}
