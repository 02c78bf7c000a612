using Distcache.Protocol;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>
/// A server that sends the wrong bytes: each case ends in a clear exception within a bounded time (never a hang),
/// drops that connection, and the client then reconnects by itself; the second connection of every fake server
/// here behaves well.
/// </summary>
public sealed class HostilePeerTests
{
    private static readonly byte[] Id = Bytes("hostile-peer-id");

    // For the cases that must fail promptly: a timeout far above the bound on the failure, so that only the
    // detection under test can end the request in time, however a busy machine slows it.
    private const int LongTimeoutMs = 20_000;
    private static readonly TimeSpan Promptly = TimeSpan.FromSeconds(5);

    /// <summary>The first connection misbehaves with <paramref name="onFirst"/>; later ones answer correctly.</summary>
    private static FakeServer MisbehaveOnce(Func<FakeConnection, Task> onFirst) =>
        new(connection => connection.Index == 0 ? onFirst(connection) : connection.ServeWellAsync());

    private static async Task AssertRecoversAsync(DistcacheClient client, FakeServer server, bool shortTimeout = false)
    {
        // With a short operation timeout, the first requests over the new connection may outlast it on a busy
        // machine: those that time out are retried too, as an application would.
        Assert.True(await EventuallyAsync(() => client.ContainsAsync(Id).AsTask(), retryTimeouts: shortTimeout));
        byte[]? data = shortTimeout ? await EventuallyAsync(() => client.GetAsync(Id).AsTask(), retryTimeouts: true) : await client.GetAsync(Id);
        Assert.Equal(FakeServer.GoodData, data);
        Assert.True(server.Accepted >= 2, "the answers came over a new connection");
    }

    private static async Task<DistcacheConnectionException> AssertViolationAsync(Func<Task> request, ProtocolViolationKind kind)
    {
        var (exception, elapsed) = await TimedThrowsAsync<DistcacheConnectionException>(request);
        Assert.True(elapsed < Promptly, $"failed after {elapsed}");
        var violation = Assert.IsType<ProtocolViolationException>(exception.InnerException);
        Assert.Equal(kind, violation.Kind);
        return exception;
    }

    [Fact(Timeout = 30_000)]
    public async Task A_response_with_an_unknown_uid_drops_the_link_and_the_client_reconnects()
    {
        await using var server = MisbehaveOnce(async c =>
        {
            var request = await c.ReceiveAsync();
            await c.SendAsync(Frames.Status(request!.Uid + 1000, request.Operation, StatusCode.Ok));
            await c.DrainAsync();
        });
        var logs = new LogCapture();
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, LongTimeoutMs, logs));

        var exception = await AssertViolationAsync(() => client.ContainsAsync(Id).AsTask(), ProtocolViolationKind.ResponseUidMismatch);
        Assert.Contains(server.Address.ToString(), exception.Message, StringComparison.Ordinal);
        Assert.Single(logs.Messages, m => m.StartsWith("Warning: distcache at", StringComparison.Ordinal) && m.Contains("broke the protocol", StringComparison.Ordinal));
        await AssertRecoversAsync(client, server);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_response_with_a_uid_of_another_request_in_flight_is_matched_by_uid()
    {
        // Two requests in flight; the server answers the second first. Matching by uid delivers each answer to its
        // own caller even out of order.
        await using var server = new FakeServer(async c =>
        {
            var first = await c.ReceiveAsync();
            var second = await c.ReceiveAsync();
            await c.SendAsync(Frames.Status(second!.Uid, second.Operation, StatusCode.NotOk));
            await c.SendAsync(Frames.Status(first!.Uid, first.Operation, StatusCode.Ok));
            await c.ServeWellAsync();
        });
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));

        var yes = client.ContainsAsync(Bytes("first")).AsTask();
        var no = client.RemoveAsync(Bytes("second")).AsTask();
        Assert.True(await yes);
        Assert.False(await no);
        Assert.Equal(1, server.Accepted);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_response_with_the_right_uid_but_another_operation_drops_the_link()
    {
        await using var server = MisbehaveOnce(async c =>
        {
            var request = await c.ReceiveAsync();
            await c.SendAsync(Frames.Status(request!.Uid, Operation.Have, StatusCode.Ok));
            await c.DrainAsync();
        });
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, LongTimeoutMs));

        await AssertViolationAsync(() => client.GetAsync(Id).AsTask(), ProtocolViolationKind.ResponseOperationMismatch);
        await AssertRecoversAsync(client, server);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_frame_with_a_bad_version_drops_the_link()
    {
        await using var server = MisbehaveOnce(async c =>
        {
            var request = await c.ReceiveAsync();
            byte[] response = Frames.Status(request!.Uid, request.Operation, StatusCode.Ok);
            response[1] = 0x12;
            await c.SendAsync(response);
            await c.DrainAsync();
        });
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, LongTimeoutMs));

        await AssertViolationAsync(() => client.ContainsAsync(Id).AsTask(), ProtocolViolationKind.WrongVersion);
        await AssertRecoversAsync(client, server);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_close_in_the_middle_of_a_response_fails_the_request_as_truncated()
    {
        await using var server = MisbehaveOnce(async c =>
        {
            var request = await c.ReceiveAsync();
            byte[] response = Frames.Data(request!.Uid, Operation.Get, new byte[3000]);
            await c.SendAsync(response[..2100]);
            c.Close();
        });
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, LongTimeoutMs));

        var exception = await AssertViolationAsync(() => client.GetAsync(Id).AsTask(), ProtocolViolationKind.TruncatedMessage);
        Assert.Contains("middle of a response", exception.Message, StringComparison.Ordinal);
        await AssertRecoversAsync(client, server);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_close_between_responses_fails_the_requests_in_flight_and_the_client_reconnects()
    {
        await using var server = MisbehaveOnce(async c =>
        {
            await c.ReceiveAsync();
            c.Close();
        });
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, LongTimeoutMs));

        var (exception, elapsed) = await TimedThrowsAsync<DistcacheConnectionException>(() => client.ContainsAsync(Id).AsTask());
        Assert.True(elapsed < Promptly, $"failed after {elapsed}");
        Assert.Contains("closed the connection", exception.Message, StringComparison.Ordinal);
        await AssertRecoversAsync(client, server);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_server_that_never_answers_hits_the_operation_timeout_then_the_silent_link_is_replaced()
    {
        await using var server = MisbehaveOnce(c => c.DrainAsync());
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 300));

        var (asyncTimeout, elapsed) = await TimedThrowsAsync<TimeoutException>(() => client.ContainsAsync(Id).AsTask());
        Assert.InRange(elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(10));
        Assert.Contains("300 ms", asyncTimeout.Message, StringComparison.Ordinal);

        // Nothing at all came back for a whole timeout: the link is presumed dead and a new one is made.
        await AssertRecoversAsync(client, server, shortTimeout: true);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_sync_call_to_a_server_that_never_answers_times_out_on_its_own_thread()
    {
        await using var server = MisbehaveOnce(c => c.DrainAsync());
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 300));

        var (_, elapsed) = await TimedThrowsOnThreadAsync<TimeoutException>(() => client.Contains(Id));
        Assert.InRange(elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(10));
        await AssertRecoversAsync(client, server, shortTimeout: true);
    }

    [Fact(Timeout = 30_000)]
    public async Task An_unsolicited_response_drops_the_link_even_with_nothing_in_flight()
    {
        await using var server = MisbehaveOnce(async c =>
        {
            // One right answer, then a second copy of it: by then nothing is in flight.
            var request = await c.ReceiveAsync();
            byte[] answer = Frames.Status(request!.Uid, request.Operation, StatusCode.Ok);
            await c.SendAsync([.. answer, .. answer]);
            await c.DrainAsync();
        });
        var logs = new LogCapture();
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, logging: logs));

        Assert.True(await client.ContainsAsync(Id));
        await Poll.UntilAsync(() => logs.Messages.Any(m => m.Contains("while no request was in flight", StringComparison.Ordinal)), TimeSpan.FromSeconds(5), "violation logged");
        await server.WaitForConnectionsAsync(2, TimeSpan.FromSeconds(5));
        await AssertRecoversAsync(client, server);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_status_operation_answered_with_data_is_a_violation()
    {
        await using var server = MisbehaveOnce(async c =>
        {
            var request = await c.ReceiveAsync();
            await c.SendAsync(Frames.Data(request!.Uid, request.Operation, [0, 0, 0]));
            await c.DrainAsync();
        });
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, LongTimeoutMs));

        var exception = await AssertViolationAsync(() => client.RemoveAsync(Id).AsTask(), ProtocolViolationKind.ResponseOperationMismatch);
        Assert.Contains("3-byte payload", exception.Message, StringComparison.Ordinal);
        await AssertRecoversAsync(client, server);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_server_that_closes_each_new_connection_at_once_does_not_leave_the_client_stuck()
    {
        // Regression: a link closed by the peer before the reconnect loop published it used to be published dead,
        // with no loop left running, and the client never reconnected.
        await using var server = new FakeServer(c =>
        {
            if (c.Index < 6)
            {
                c.Close();
                return Task.CompletedTask;
            }

            return c.ServeWellAsync();
        });
        await using var client = DistcacheClient.Connect(Options(server.Address));

        Assert.True(await EventuallyAsync(() => client.ContainsAsync(Id).AsTask()));
        Assert.True(server.Accepted >= 7);
    }

    [Fact(Timeout = 30_000)]
    public async Task Every_request_in_flight_fails_when_the_link_drops_and_none_hangs()
    {
        await using var server = MisbehaveOnce(async c =>
        {
            for (int i = 0; i < 20; i++)
            {
                await c.ReceiveAsync();
            }

            c.Reset();
        });
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, LongTimeoutMs));

        var asyncCalls = Enumerable.Range(0, 16).Select(i => client.ContainsAsync(Bytes($"id-{i}")).AsTask()).ToArray();
        var syncCalls = Enumerable.Range(0, 4).Select(i => Task.Factory.StartNew(() => client.Contains(Bytes($"sync-{i}")), TaskCreationOptions.LongRunning)).ToArray();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        foreach (var call in asyncCalls.Concat(syncCalls))
        {
            await Assert.ThrowsAnyAsync<DistcacheConnectionException>(() => call.WaitAsync(TimeSpan.FromSeconds(5)));
        }

        Assert.True(clock.Elapsed < Promptly, $"took {clock.Elapsed}");
        await AssertRecoversAsync(client, server);
    }
}
