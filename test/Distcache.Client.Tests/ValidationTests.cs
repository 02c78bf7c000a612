using Distcache.Protocol;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>Every protocol limit is checked before anything is sent: the server receives not one byte.</summary>
public sealed class ValidationTests
{
    private static readonly byte[] GoodId = new byte[ProtocolConstants.MaxSessionIdLength];
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);

    public static TheoryData<string, byte[], byte[], TimeSpan, string> BadAdds => new()
    {
        { "empty id", [], [1], Minute, "1 to 64 bytes" },
        { "65-byte id", new byte[65], [1], Minute, "1 to 64 bytes" },
        { "empty data", [1], [], Minute, "must not be empty" },
        { "id + data over 32760", GoodId, new byte[SessionLimits.MaxAddIdAndData - GoodId.Length + 1], Minute, "at most 32768 payload bytes" },
        { "negative timeout", [1], [1], TimeSpan.FromMilliseconds(-1), "0 to 7 days" },
        { "timeout over 7 days", [1], [1], TimeSpan.FromDays(7) + TimeSpan.FromMilliseconds(1), "0 to 7 days" },
    };

    [Theory(Timeout = 30_000)]
    [MemberData(nameof(BadAdds))]
    public async Task An_add_outside_the_limits_throws_and_sends_nothing(string what, byte[] id, byte[] data, TimeSpan timeout, string message)
    {
        await using var server = new FakeServer(c => c.DrainAsync());
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));

        var async = Assert.ThrowsAny<ArgumentException>(() => { _ = client.AddAsync(id, data, timeout).AsTask(); });
        var sync = Assert.ThrowsAny<ArgumentException>(() => client.Add(id, data, timeout));
        Assert.Contains(message, async.Message, StringComparison.Ordinal);
        Assert.Contains(message, sync.Message, StringComparison.Ordinal);

        // Something that is sent afterwards arrives, so "nothing" above is not just slowness.
        await AssertNothingSentAsync(server, client, what);
    }

    [Theory(Timeout = 30_000)]
    [InlineData(0)]
    [InlineData(65)]
    public async Task An_id_outside_1_to_64_bytes_throws_for_every_operation_and_sends_nothing(int length)
    {
        await using var server = new FakeServer(c => c.DrainAsync());
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));
        byte[] id = new byte[length];
        var writer = new System.Buffers.ArrayBufferWriter<byte>();

        Action[] calls =
        [
            () => client.Get(id),
            () => client.Get(id, writer),
            () => client.GetLease(id),
            () => client.Remove(id),
            () => client.Contains(id),
            () => _ = client.GetAsync(id).AsTask(),
            () => _ = client.GetAsync(id, writer).AsTask(),
            () => _ = client.GetLeaseAsync(id).AsTask(),
            () => _ = client.RemoveAsync(id).AsTask(),
            () => _ = client.ContainsAsync(id).AsTask(),
        ];
        foreach (var call in calls)
        {
            var exception = Assert.ThrowsAny<ArgumentException>(call);
            Assert.Equal("id", exception.ParamName);
            Assert.Contains($"this one is {length} bytes", exception.Message, StringComparison.Ordinal);
        }

        await AssertNothingSentAsync(server, client, $"{length}-byte id");
    }

    [Fact(Timeout = 30_000)]
    public async Task The_largest_valid_add_is_accepted()
    {
        await using var server = InProcessServer.Start("IP:127.0.0.1:0");
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));
        byte[] data = new byte[SessionLimits.MaxAddIdAndData - GoodId.Length];
        Random.Shared.NextBytes(data);

        Assert.Equal(AddOutcome.Stored, await client.AddAsync(GoodId, data, SessionLimits.MaxTimeout));
        Assert.Equal(data, await client.GetAsync(GoodId));
    }

    private static async Task AssertNothingSentAsync(FakeServer server, DistcacheClient client, string what)
    {
        await Task.Delay(50);
        Assert.True(server.BytesReceived == 0, $"{what}: the server received {server.BytesReceived} bytes");
        _ = client.ContainsAsync(Bytes("probe")).AsTask();
        await Poll.UntilAsync(() => server.BytesReceived > 0, TimeSpan.FromSeconds(5), "a valid request to arrive");
        Assert.Equal(ProtocolConstants.FrameHeaderSize + "probe".Length, server.BytesReceived);
    }
}
