using System.Buffers;
using Distcache.Protocol;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>How every possible answer byte is reported, against a server that answers exactly as told.</summary>
public sealed class AnswerTests
{
    private static readonly byte[] Id = Bytes("answer-id");

    /// <summary>A server that answers each request with <paramref name="answer"/>.</summary>
    private static FakeServer Answering(Func<Received, byte[]> answer) => new(async c =>
    {
        while (await c.ReceiveAsync() is { } request)
        {
            await c.SendAsync(answer(request));
        }
    });

    [Theory(Timeout = 30_000)]
    [InlineData(0, AddOutcome.Stored)]
    [InlineData(101, AddOutcome.AlreadyExists)]
    [InlineData(100, AddOutcome.Corrupt)]
    [InlineData(102, AddOutcome.TimeoutOutOfRange)]
    [InlineData(103, AddOutcome.IdOutOfRange)]
    [InlineData(104, AddOutcome.DataOutOfRange)]
    [InlineData(2, AddOutcome.Disconnected)]
    [InlineData(1, AddOutcome.Rejected)]
    [InlineData(77, AddOutcome.Rejected)]
    public async Task Add_reports_each_status_byte_by_name(byte status, AddOutcome expected)
    {
        await using var server = Answering(r => Frames.Status(r.Uid, r.Operation, (StatusCode)status));
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));

        Assert.Equal(expected, await client.AddAsync(Id, new byte[10], TimeSpan.FromMinutes(1)));
        Assert.Equal(expected, await Task.Run(() => client.Add(Id, new byte[10], TimeSpan.FromMinutes(1))));
    }

    [Fact(Timeout = 30_000)]
    public async Task A_proxys_empty_answer_to_an_add_is_disconnected()
    {
        await using var server = Answering(r => Frames.Empty(r.Uid, r.Operation));
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));

        Assert.Equal(AddOutcome.Disconnected, await client.AddAsync(Id, new byte[10], TimeSpan.FromMinutes(1)));
    }

    [Fact(Timeout = 30_000)]
    public async Task Add_sends_the_id_data_and_timeout_in_1_5_1_layout()
    {
        Received? seen = null;
        await using var server = Answering(r =>
        {
            seen = r;
            return Frames.Status(r.Uid, r.Operation, StatusCode.Ok);
        });
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));

        await client.AddAsync(Bytes("ab"), Bytes("xyz"), TimeSpan.FromMilliseconds(1234.9));
        Assert.NotNull(seen);
        Assert.Equal(Operation.Add, seen.Operation);
        Assert.Equal(new byte[] { 0, 0, 4, 210, 0, 0, 0, 2, (byte)'a', (byte)'b', (byte)'x', (byte)'y', (byte)'z' }, seen.Payload);
    }

    [Fact(Timeout = 30_000)]
    public async Task Get_distinguishes_data_a_miss_and_a_disconnected_proxy()
    {
        byte[] answerFor(Received r) => System.Text.Encoding.ASCII.GetString(r.Payload) switch
        {
            "hit" => Frames.Data(r.Uid, Operation.Get, Bytes("the data")),
            "two" => Frames.Data(r.Uid, Operation.Get, [7, 8]),
            "miss" => Frames.Status(r.Uid, Operation.Get, StatusCode.NotOk),
            "one-byte" => Frames.Status(r.Uid, Operation.Get, (StatusCode)42),
            "down" => Frames.Status(r.Uid, Operation.Get, StatusCode.Disconnected),
            _ => Frames.Empty(r.Uid, Operation.Get),
        };
        await using var server = Answering(answerFor);
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));

        Assert.Equal(Bytes("the data"), await client.GetAsync(Bytes("hit")));
        Assert.Equal(new byte[] { 7, 8 }, client.Get(Bytes("two")));
        Assert.Null(await client.GetAsync(Bytes("miss")));
        Assert.Null(client.Get(Bytes("one-byte")));
        await Assert.ThrowsAsync<DistcacheProxyDisconnectedException>(() => client.GetAsync(Bytes("down")).AsTask());
        var empty = Assert.Throws<DistcacheProxyDisconnectedException>(() => client.Get(Bytes("empty")));
        Assert.Contains("empty response", empty.Message, StringComparison.Ordinal);

        var writer = new ArrayBufferWriter<byte>();
        Assert.Equal(GetOutcome.Found, await client.GetAsync(Bytes("hit"), writer));
        Assert.Equal(GetOutcome.NotFound, await client.GetAsync(Bytes("miss"), writer));
        Assert.Equal(GetOutcome.NotFound, client.Get(Bytes("one-byte"), writer));
        Assert.Equal(GetOutcome.Disconnected, await client.GetAsync(Bytes("down"), writer));
        Assert.Equal(GetOutcome.Disconnected, client.Get(Bytes("empty"), writer));
        Assert.Equal(Bytes("the data"), writer.WrittenSpan.ToArray());

        using (var lease = await client.GetLeaseAsync(Bytes("hit")))
        {
            Assert.Equal(Bytes("the data"), lease!.Memory.ToArray());
        }

        Assert.Null(client.GetLease(Bytes("miss")));
        await Assert.ThrowsAsync<DistcacheProxyDisconnectedException>(() => client.GetLeaseAsync(Bytes("down")).AsTask());
    }

    [Theory(Timeout = 30_000)]
    [InlineData(0, true)]
    [InlineData(1, false)]
    public async Task Remove_and_contains_read_ok_and_notok(byte status, bool expected)
    {
        await using var server = Answering(r => Frames.Status(r.Uid, r.Operation, (StatusCode)status));
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));

        Assert.Equal(expected, await client.RemoveAsync(Id));
        Assert.Equal(expected, client.Remove(Id));
        Assert.Equal(expected, await client.ContainsAsync(Id));
        Assert.Equal(expected, client.Contains(Id));
    }

    [Fact(Timeout = 30_000)]
    public async Task Remove_and_contains_throw_when_a_proxy_has_no_server()
    {
        int n = 0;
        await using var server = Answering(r => Interlocked.Increment(ref n) % 2 == 0
            ? Frames.Status(r.Uid, r.Operation, StatusCode.Disconnected)
            : Frames.Empty(r.Uid, r.Operation));
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));

        await Assert.ThrowsAsync<DistcacheProxyDisconnectedException>(() => client.RemoveAsync(Id).AsTask());
        Assert.Throws<DistcacheProxyDisconnectedException>(() => client.Remove(Id));
        await Assert.ThrowsAsync<DistcacheProxyDisconnectedException>(() => client.ContainsAsync(Id).AsTask());
        var exception = Assert.Throws<DistcacheProxyDisconnectedException>(() => client.Contains(Id));
        Assert.Contains("DISCONNECTED", exception.Message, StringComparison.Ordinal);

        // A proxy's answer is not a broken link: the same connection carries on.
        Assert.True(client.IsConnected);
        Assert.Equal(1, server.Accepted);
    }

    [Fact(Timeout = 30_000)]
    public void A_lease_cannot_be_read_after_it_is_disposed()
    {
        var lease = new SessionLease(ArrayPool<byte>.Shared.Rent(10), 10);
        Assert.Equal(10, lease.Memory.Length);
        lease.Dispose();
        lease.Dispose();
        Assert.Throws<ObjectDisposedException>(() => lease.Memory);
    }
}
