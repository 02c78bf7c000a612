using System.Buffers;
using Distcache.Client.Tests.Support;
using Distcache.Networking;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>The client against the real server code (<see cref="Server.DistcacheServer"/> over a memory store), on
/// TCP loopback and on a unix socket.</summary>
public sealed class InProcessServerTests : IDisposable
{
    private readonly TempDir _dir = new();

    // "-native": the client's connection on the native transport (ConnectionOptions.NativeTransport), as dc_client's
    // link to the server has it.
    public static TheoryData<string> Transports => new() { "tcp", "unix", "tcp-native", "unix-native" };

    public void Dispose() => _dir.Dispose();

    private InProcessServer StartServer(string transport) =>
        InProcessServer.Start(transport.StartsWith("tcp", StringComparison.Ordinal) ? "IP:127.0.0.1:0" : $"UNIX:{_dir.File("dc.sock")}");

    private static DistcacheClientOptions OptionsFor(Address address, string transport)
    {
        DistcacheClientOptions options = TestHelpers.Options(address);
        if (transport.EndsWith("-native", StringComparison.Ordinal))
        {
            options.Connection = new ConnectionOptions { NativeTransport = true };
        }

        return options;
    }

    [Theory(Timeout = 30_000)]
    [MemberData(nameof(Transports))]
    public async Task Every_operation_round_trips_async(string transport)
    {
        await using var server = StartServer(transport);
        await using var client = await DistcacheClient.ConnectAsync(OptionsFor(server.Address, transport));
        byte[] id = Bytes("session-1");
        byte[] data = Bytes("the session data");

        Assert.False(await client.ContainsAsync(id));
        Assert.Null(await client.GetAsync(id));
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(id, data, TimeSpan.FromMinutes(1)));
        Assert.Equal(AddOutcome.AlreadyExists, await client.AddAsync(id, Bytes("other"), TimeSpan.FromMinutes(1)));
        Assert.True(await client.ContainsAsync(id));
        Assert.Equal(data, await client.GetAsync(id));

        var writer = new ArrayBufferWriter<byte>();
        writer.Write(Bytes(">"));
        Assert.Equal(GetOutcome.Found, await client.GetAsync(id, writer));
        Assert.Equal(Bytes(">the session data"), writer.WrittenSpan.ToArray());
        using (var lease = await client.GetLeaseAsync(id))
        {
            Assert.Equal(data, lease!.Memory.ToArray());
        }

        Assert.True(await client.RemoveAsync(id));
        Assert.False(await client.RemoveAsync(id));
        Assert.False(await client.ContainsAsync(id));
        Assert.Equal(GetOutcome.NotFound, await client.GetAsync(id, writer));
        Assert.Null(await client.GetLeaseAsync(id));
    }

    [Theory(Timeout = 30_000)]
    [MemberData(nameof(Transports))]
    public async Task Every_operation_round_trips_sync(string transport)
    {
        await using var server = StartServer(transport);
        await using var client = await DistcacheClient.ConnectAsync(OptionsFor(server.Address, transport));
        byte[] id = Bytes("session-2");
        byte[] data = new byte[5000];
        Random.Shared.NextBytes(data);

        await Task.Run(() =>
        {
            Assert.False(client.Contains(id));
            Assert.Equal(AddOutcome.Stored, client.Add(id, data, TimeSpan.FromMinutes(1)));
            Assert.Equal(AddOutcome.AlreadyExists, client.Add(id, data, TimeSpan.FromMinutes(1)));
            Assert.Equal(data, client.Get(id));
            var writer = new ArrayBufferWriter<byte>();
            Assert.Equal(GetOutcome.Found, client.Get(id, writer));
            Assert.Equal(data, writer.WrittenSpan.ToArray());
            using (var lease = client.GetLease(id))
            {
                Assert.Equal(data, lease!.Memory.ToArray());
            }

            Assert.True(client.Contains(id));
            Assert.True(client.Remove(id));
            Assert.False(client.Remove(id));
            Assert.Null(client.Get(id));
        });
    }

    [Fact(Timeout = 30_000)]
    public async Task A_session_expires_after_its_timeout()
    {
        await using var server = StartServer("tcp");
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));
        byte[] id = Bytes("short-lived");

        // Long enough to be found by the next request, however a busy machine delays it.
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(id, Bytes("data"), TimeSpan.FromSeconds(3)));
        Assert.True(await client.ContainsAsync(id));
        await Poll.UntilAsync(() => !client.Contains(id), TimeSpan.FromSeconds(15), "the session to expire");
        Assert.Null(await client.GetAsync(id));
    }

    [Fact(Timeout = 30_000)]
    public async Task One_byte_session_data_is_stored_but_reads_back_as_a_miss_because_the_protocol_cannot_tell()
    {
        await using var server = StartServer("tcp");
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));

        Assert.Equal(AddOutcome.Stored, await client.AddAsync(Bytes("one"), new byte[] { 9 }, TimeSpan.FromMinutes(1)));
        Assert.True(await client.ContainsAsync(Bytes("one")));
        Assert.Null(await client.GetAsync(Bytes("one")));
        Assert.Equal(GetOutcome.NotFound, await client.GetAsync(Bytes("one"), new ArrayBufferWriter<byte>()));

        // Two bytes is enough for this client (1.5.1's client needs five).
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(Bytes("two"), new byte[] { 9, 8 }, TimeSpan.FromMinutes(1)));
        Assert.Equal(new byte[] { 9, 8 }, await client.GetAsync(Bytes("two")));
    }

    [Fact(Timeout = 30_000)]
    public async Task Multi_frame_sessions_of_every_size_class_round_trip()
    {
        await using var server = StartServer("tcp");
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));
        int[] sizes = [2, 2047, 2048, 2049, 4096, 4097, 20_000, 32_000, SessionLimits.MaxAddIdAndData - 4];

        var adds = sizes.Select(async size =>
        {
            byte[] data = new byte[size];
            Random.Shared.NextBytes(data);
            byte[] id = BitConverter.GetBytes(size);
            Assert.Equal(AddOutcome.Stored, await client.AddAsync(id, data, TimeSpan.FromMinutes(1)));
            Assert.Equal(data, await client.GetAsync(id));
        });
        await Task.WhenAll(adds);
    }

    [Fact(Timeout = 30_000)]
    public async Task Connect_from_a_connection_string_and_use_at_once()
    {
        await using var server = StartServer("unix");

        // Connect returns before the connection is up; the first request waits for it.
        using var client = DistcacheClient.Connect($"{server.Address},timeout=3000,reconnectMax=500");
        Assert.Equal(server.Address, client.Address);
        Assert.False(client.Contains(Bytes("x")));
        Assert.True(client.IsConnected);
    }

    [Fact(Timeout = 30_000)]
    public async Task Connecting_to_nothing_fails_with_the_address_in_the_message()
    {
        string path = _dir.File("nobody.sock");
        var exception = await Assert.ThrowsAsync<DistcacheConnectionException>(() => DistcacheClient.ConnectAsync($"UNIX:{path}"));
        Assert.Contains(path, exception.Message, StringComparison.Ordinal);
        Assert.NotNull(exception.Address);

        // The background form fails fast on first use instead, well before its (20 s) timeout.
        using var client = DistcacheClient.Connect($"UNIX:{path},timeout=20000");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Throws<DistcacheConnectionException>(() => client.Contains(Bytes("x")));
        await Assert.ThrowsAsync<DistcacheConnectionException>(() => client.ContainsAsync(Bytes("x")).AsTask());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
    }

    [Fact(Timeout = 30_000)]
    public async Task A_canceled_request_completes_at_once_and_its_late_response_is_discarded()
    {
        // A 20 s timeout, so that only the cancellation can end the held request within the bound below.
        var store = new GatedStore();
        await using var server = InProcessServer.Start("IP:127.0.0.1:0", store);
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 20_000));
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(Bytes("held"), Bytes("held data"), TimeSpan.FromMinutes(1)));

        store.Close();
        using var cancel = new CancellationTokenSource();
        var held = client.GetAsync(Bytes("held"), cancel.Token).AsTask();
        await Poll.UntilAsync(() => store.Waiting == 1, TimeSpan.FromSeconds(5), "the GET to reach the store");
        cancel.Cancel();
        var (_, elapsed) = await TimedThrowsAsync<OperationCanceledException>(() => held);
        Assert.True(elapsed < TimeSpan.FromSeconds(5), $"took {elapsed}");

        // The canceled GET's response arrives after its caller left; the next request gets its own answer.
        var next = client.ContainsAsync(Bytes("held")).AsTask();
        store.Open();
        Assert.True(await next);
        Assert.Equal(Bytes("held data"), await client.GetAsync(Bytes("held")));
        Assert.Equal(1, server.Accepted);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_sync_request_is_canceled_by_its_token()
    {
        var store = new GatedStore();
        await using var server = InProcessServer.Start("IP:127.0.0.1:0", store);
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 20_000));

        store.Close();
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        var (_, elapsed) = await TimedThrowsOnThreadAsync<OperationCanceledException>(() => client.Get(Bytes("x"), cancel.Token));
        Assert.True(elapsed < TimeSpan.FromSeconds(5), $"took {elapsed}");
        store.Open();
        Assert.False(await client.ContainsAsync(Bytes("x")));
    }

    [Fact(Timeout = 30_000)]
    public async Task An_already_canceled_token_sends_nothing()
    {
        await using var server = new FakeServer(c => c.DrainAsync());
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.ContainsAsync(Bytes("x"), cancel.Token).AsTask());
        Assert.ThrowsAny<OperationCanceledException>(() => client.Contains(Bytes("x"), cancel.Token));
        await Task.Delay(50);
        Assert.Equal(0, server.BytesReceived);
    }

    [Fact(Timeout = 30_000)]
    public async Task Disposing_fails_outstanding_requests_with_ObjectDisposedException()
    {
        await using var server = new FakeServer(c => c.DrainAsync());
        var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 20_000));

        var waiting = Enumerable.Range(0, 8).Select(i => client.GetAsync(Bytes($"x{i}")).AsTask())
            .Append(Task.Factory.StartNew(() => client.Get(Bytes("sync")), TaskCreationOptions.LongRunning))
            .ToArray();
        await Poll.UntilAsync(() => server.BytesReceived >= 9 * 16, TimeSpan.FromSeconds(5), "the requests to be sent");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await client.DisposeAsync();
        foreach (var request in waiting)
        {
            await Assert.ThrowsAsync<ObjectDisposedException>(() => request.WaitAsync(TimeSpan.FromSeconds(5)));
        }

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        await Assert.ThrowsAsync<ObjectDisposedException>(() => client.GetAsync(Bytes("later")).AsTask());
        Assert.Throws<ObjectDisposedException>(() => client.Contains(Bytes("later")));
        await client.DisposeAsync();
        client.Dispose();
    }

    [Fact(Timeout = 30_000)]
    public async Task Synchronous_dispose_also_fails_outstanding_requests()
    {
        await using var server = new FakeServer(c => c.DrainAsync());
        var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 20_000));
        var waiting = client.ContainsAsync(Bytes("x")).AsTask();
        await Poll.UntilAsync(() => server.BytesReceived > 0, TimeSpan.FromSeconds(5), "the request to be sent");

        client.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(5)));
    }
}
