using System.Diagnostics;
using Distcache.Client.Tests.Support;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>The server goes away and comes back on the same address: requests in flight fail promptly, requests
/// while it is away fail fast, and later requests succeed with no help from the application.</summary>
public sealed class ReconnectTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory(Timeout = 60_000)]
    [InlineData("tcp")]
    [InlineData("unix")]
    public async Task Requests_in_flight_fail_promptly_when_the_server_dies_and_later_ones_succeed_after_it_returns(string transport)
    {
        var store = new GatedStore();
        var server = InProcessServer.Start(transport == "tcp" ? "IP:127.0.0.1:0" : $"UNIX:{_dir.File("dc.sock")}", store);
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 20_000));
        byte[] id = Bytes("survives-restarts");
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(id, Bytes("kept by the store"), TimeSpan.FromMinutes(5)));

        // Hold the server's GETs so that requests really are in flight when it dies.
        store.Close();
        Task<byte[]?>[] asyncCalls = [.. Enumerable.Range(0, 12).Select(_ => client.GetAsync(id).AsTask())];
        Task<byte[]?>[] syncCalls = [.. Enumerable.Range(0, 4).Select(_ => Task.Factory.StartNew(() => client.Get(id), TaskCreationOptions.LongRunning))];
        await Poll.UntilAsync(() => store.Waiting == 1, TimeSpan.FromSeconds(5), "the first GET to reach the store");

        var clock = Stopwatch.StartNew();
        server.Kill();
        foreach (var call in asyncCalls.Concat(syncCalls))
        {
            var exception = await Assert.ThrowsAsync<DistcacheConnectionException>(() => call.WaitAsync(TimeSpan.FromSeconds(5)));
            Assert.Contains(server.Address.ToString(), exception.Message, StringComparison.Ordinal);
        }

        // Well below the 20 s timeout they would otherwise wait for, with room for a busy machine.
        TimeSpan failedAfter = clock.Elapsed;
        Assert.True(failedAfter < TimeSpan.FromSeconds(5), $"in-flight requests failed after {failedAfter}");
        store.Open();
        await server.WaitStoppedAsync();

        // While nothing listens, requests fail fast instead of waiting for their (20 s) timeout.
        await Poll.UntilAsync(() => !client.IsConnected, TimeSpan.FromSeconds(5), "the client to notice");
        var (_, fastFailure) = await TimedThrowsAsync<DistcacheConnectionException>(() => client.ContainsAsync(id).AsTask());
        Assert.True(fastFailure < TimeSpan.FromSeconds(5), $"took {fastFailure}");
        Assert.Throws<DistcacheConnectionException>(() => client.Contains(id));

        await using var restarted = InProcessServer.Restart(server);
        Assert.Equal(Bytes("kept by the store"), await EventuallyAsync(() => client.GetAsync(id).AsTask()));
        Assert.True(client.IsConnected);
        Assert.True(client.Contains(id));
    }

    [Fact(Timeout = 60_000)]
    public async Task The_client_survives_several_restarts_in_a_row()
    {
        var server = InProcessServer.Start("IP:127.0.0.1:0");
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));
        for (int round = 0; round < 4; round++)
        {
            byte[] id = Bytes($"round-{round}");
            Assert.Equal(AddOutcome.Stored, await EventuallyAsync(() => client.AddAsync(id, Bytes("data"), TimeSpan.FromMinutes(1)).AsTask()));
            Assert.True(client.Contains(id));
            server.Kill();
            await server.WaitStoppedAsync();
            server = InProcessServer.Restart(server);
        }

        Assert.True(await EventuallyAsync(() => client.ContainsAsync(Bytes("round-3")).AsTask()));
        await server.DisposeAsync();
    }

    [Fact(Timeout = 60_000)]
    public async Task An_idle_client_reconnects_in_the_background_before_it_is_used_again()
    {
        var logs = new LogCapture();
        var server = InProcessServer.Start("IP:127.0.0.1:0");
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, logging: logs));
        Assert.False(await client.ContainsAsync(Bytes("x")));

        server.Kill();
        await server.WaitStoppedAsync();
        await Poll.UntilAsync(() => !client.IsConnected, TimeSpan.FromSeconds(5), "the drop to be noticed");
        await using var restarted = InProcessServer.Restart(server);
        await Poll.UntilAsync(() => client.IsConnected, TimeSpan.FromSeconds(10), "the client to reconnect by itself");
        Assert.False(await client.ContainsAsync(Bytes("x")));
        Assert.Single(logs.Messages, m => m.Contains("Lost the link", StringComparison.Ordinal));
    }

    [Fact(Timeout = 60_000)]
    public async Task Reconnect_attempts_back_off_while_the_server_is_away()
    {
        var logs = new LogCapture();
        var server = InProcessServer.Start("IP:127.0.0.1:0");
        var options = Options(server.Address, logging: logs);
        options.ReconnectMinDelay = TimeSpan.FromMilliseconds(50);
        options.ReconnectMaxDelay = TimeSpan.FromMilliseconds(400);
        await using var client = await DistcacheClient.ConnectAsync(options);
        Assert.False(await client.ContainsAsync(Bytes("x")));

        // Started before the kill: the first attempt follows the drop at once, maybe before the server has stopped.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        server.Kill();
        await server.WaitStoppedAsync();
        int Attempts() => logs.Messages.Count(m => m.Contains("failed (attempt", StringComparison.Ordinal));

        // Delays of 50, 100, 200, 400, 400 ... ms (+-20%, never above the cap). A slow machine can only stretch them,
        // so the checks are one-sided: four attempts take at least the first three delays, and once at the cap
        // attempts are at least 320 ms apart, a few a second, not hundreds. (Counting attempts in a fixed window
        // failed on a loaded machine: the window is measured, and a stretched one may hold more.)
        await Poll.UntilAsync(() => Attempts() >= 4, TimeSpan.FromSeconds(20), "four reconnect attempts");
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(0.8 * (50 + 100 + 200)), $"four attempts after {clock.Elapsed.TotalMilliseconds} ms");
        var window = System.Diagnostics.Stopwatch.StartNew();
        int atCap = Attempts();
        await Task.Delay(1000);
        int more = Attempts() - atCap;
        Assert.InRange(more, 0, (int)(window.Elapsed.TotalMilliseconds / 300) + 1);
        await using var restarted = InProcessServer.Restart(server);
        Assert.False(await EventuallyAsync(() => client.ContainsAsync(Bytes("x")).AsTask()));
    }
}
