using System.Diagnostics;
using System.Globalization;
using Distcache.Networking;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>
/// The client library through a <see cref="FaultProxy"/> in front of a real server: latency, a bandwidth cap,
/// silence, resets in the middle of a frame and garbage. Every request ends (answer or exception) within bounds,
/// the client reconnects by itself, and no answer ever carries another request's data (every session's data is
/// derived from its id, so a mix-up shows).
/// </summary>
public sealed class FaultInjectionTests
{
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);

    private static void Report(string line) => TestContext.Current.TestOutputHelper?.WriteLine(line);

    /// <summary>A real server in process, and the fault proxy in front of it that the client connects to.</summary>
    private static (InProcessServer Server, FaultProxy Proxy) Start()
    {
        var server = InProcessServer.Start("IP:127.0.0.1:0");
        var proxy = FaultProxy.Start(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, server.Address.Port));
        return (server, proxy);
    }

    private static Address At(FaultProxy proxy) => Address.Parse(proxy.Address);

    private static async Task FillAsync(DistcacheClient client, int count, int length)
    {
        for (int i = 0; i < count; i++)
        {
            byte[] id = Bytes($"s{i}");
            Assert.Equal(AddOutcome.Stored, await EventuallyAsync(() => client.AddAsync(id, SessionData.For(id, length), Minute).AsTask()));
        }
    }

    // For a test whose client has a short timeout, through a client of its own with the default timeout: before any fault is set, the first requests of a run
    // may take longer than a test's short timeout on a busy machine (JIT, the first connect), and an ADD that timed
    // out cannot simply be retried (it may have been stored).
    private static async Task FillAsync(FaultProxy proxy, int count, int length)
    {
        await using var filler = await DistcacheClient.ConnectAsync(Options(At(proxy)));
        for (int i = 0; i < count; i++)
        {
            byte[] id = Bytes($"s{i}");
            Assert.Equal(AddOutcome.Stored, await EventuallyAsync(() => filler.AddAsync(id, SessionData.For(id, length), Minute).AsTask()));
        }
    }

    [Fact(Timeout = 30_000)]
    public async Task Added_latency_delays_every_answer_and_each_is_its_own()
    {
        var (server, proxy) = Start();
        await using var _ = server;
        await using var __ = proxy;
        await using var client = await DistcacheClient.ConnectAsync(Options(At(proxy)));
        await FillAsync(client, 40, 300);

        proxy.ToClient.Delay = TimeSpan.FromMilliseconds(150);
        var clock = Stopwatch.StartNew();
        byte[]?[] answers = await Task.WhenAll(Enumerable.Range(0, 40).Reverse().Select(i => client.GetAsync(Bytes($"s{i}")).AsTask()));
        Report($"40 pipelined GETs with 150 ms added latency: {clock.ElapsedMilliseconds} ms");
        Assert.InRange(clock.ElapsedMilliseconds, 140, 5000);
        for (int i = 0; i < 40; i++)
        {
            Assert.Equal(SessionData.For($"s{39 - i}", 300), answers[i]);
        }
    }

    [Fact(Timeout = 30_000)]
    public async Task A_bandwidth_cap_slows_a_large_answer_which_still_arrives_whole()
    {
        var (server, proxy) = Start();
        await using var _ = server;
        await using var __ = proxy;
        await using var client = await DistcacheClient.ConnectAsync(Options(At(proxy)));
        byte[] id = Bytes("large");
        byte[] data = SessionData.For(id, 30_000);
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(id, data, Minute));

        proxy.ToClient.BytesPerSecond = 100_000;
        var clock = Stopwatch.StartNew();
        Assert.Equal(data, await client.GetAsync(id));
        Report($"30,000-byte GET at 100 KB/s: {clock.ElapsedMilliseconds} ms");
        Assert.InRange(clock.ElapsedMilliseconds, 200, 4000);
    }

    [Theory(Timeout = 30_000)]
    [InlineData(FaultDirection.ToServer)]
    [InlineData(FaultDirection.ToClient)]
    public async Task Silence_is_answered_by_the_timeout_promptly_and_the_client_recovers(FaultDirection direction)
    {
        var (server, proxy) = Start();
        await using var _ = server;
        await using var __ = proxy;
        await using var client = await DistcacheClient.ConnectAsync(Options(At(proxy), timeoutMs: 300));
        await FillAsync(proxy, 10, 100);

        FaultSettings faults = direction == FaultDirection.ToServer ? proxy.ToServer : proxy.ToClient;
        faults.Silent = true;
        // The first request to see a whole timeout pass with nothing back times out; the link is then presumed dead,
        // which fails the others on it at once with a connection error.
        var timings = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => TimedThrowsAsync<Exception>(() => client.GetAsync(Bytes($"s{i}")).AsTask())));
        Assert.All(timings, t => Assert.True(t.Exception is TimeoutException or DistcacheConnectionException, t.Exception.ToString()));
        TimeSpan worst = timings.Max(t => t.Elapsed);
        Report($"{direction} silent: 10 GETs timed out after {timings.Min(t => t.Elapsed).TotalMilliseconds:0}..{worst.TotalMilliseconds:0} ms (timeout 300 ms)");
        Assert.All(timings, t => Assert.InRange(t.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(10)));

        faults.Silent = false;
        for (int i = 0; i < 10; i++)
        {
            byte[] id = Bytes($"s{i}");
            Assert.Equal(SessionData.For(id, 100), await EventuallyAsync(() => client.GetAsync(id).AsTask(), retryTimeouts: true));
        }
    }

    /// <summary>
    /// Rounds of concurrent GETs while the answers' latency jumps above and below the timeout: some requests time
    /// out and their answers arrive late, on the same link or a dying one. Every answer a request does get must be
    /// its own session's data.
    /// </summary>
    [Fact(Timeout = 60_000)]
    public async Task Late_answers_after_timeouts_are_never_matched_to_later_requests()
    {
        var (server, proxy) = Start();
        await using var _ = server;
        await using var __ = proxy;
        const int Sessions = 30;

        await FillAsync(proxy, Sessions, 64);

        await using var client = await DistcacheClient.ConnectAsync(Options(At(proxy), timeoutMs: 200));

        var random = new Random(7);
        int answered = 0, failed = 0;
        for (int round = 0; round < 12; round++)
        {
            // A timed-out link is replaced in the background; each round starts on a live one.
            await Poll.UntilAsync(() => client.IsConnected, TimeSpan.FromSeconds(10), "the client reconnects");
            proxy.ToClient.Delay = TimeSpan.FromMilliseconds(round % 3 == 1 ? 350 : random.Next(0, 120));
            int[] picks = [.. Enumerable.Range(0, 20).Select(_ => random.Next(Sessions))];
            var results = await Task.WhenAll(picks.Select(async n =>
            {
                byte[] id = Bytes($"s{n}");
                try
                {
                    byte[]? got = await client.GetAsync(id);
                    Assert.NotNull(got);
                    Assert.True(SessionData.Matches(id, got), $"GET s{n} received another session's data");
                    return true;
                }
                catch (Exception e) when (e is TimeoutException or DistcacheConnectionException)
                {
                    return false;
                }
            }));
            answered += results.Count(r => r);
            failed += results.Count(r => !r);
        }

        Report($"{answered} answered correctly, {failed} timed out or failed, 0 wrong; {proxy.ConnectionsAccepted} connections");
        Assert.True(answered > 0 && failed > 0, $"the rounds should mix answers ({answered}) and timeouts ({failed})");
        proxy.ToClient.Clear();
        Assert.Equal(SessionData.For("s0", 64), await EventuallyAsync(() => client.GetAsync(Bytes("s0")).AsTask(), retryTimeouts: true));
    }

    [Theory(Timeout = 30_000)]
    [InlineData(FaultDirection.ToServer, 10)]
    [InlineData(FaultDirection.ToClient, 5)]
    [InlineData(FaultDirection.ToClient, 3000)]
    public async Task A_reset_mid_frame_fails_the_request_promptly_and_the_client_reconnects(FaultDirection direction, int afterBytes)
    {
        var (server, proxy) = Start();
        await using var _ = server;
        await using var __ = proxy;
        // A 20 s timeout, so that only the reset can end the GET within the bound below.
        await using var client = await DistcacheClient.ConnectAsync(Options(At(proxy), timeoutMs: 20_000));
        byte[] id = Bytes("big");
        byte[] data = SessionData.For(id, 10_000);
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(id, data, Minute));

        (direction == FaultDirection.ToServer ? proxy.ToServer : proxy.ToClient).ResetAfter(afterBytes);
        var (_, elapsed) = await TimedThrowsAsync<DistcacheConnectionException>(() => client.GetAsync(id).AsTask());
        Report($"reset after {afterBytes} bytes {direction}: the GET failed after {elapsed.TotalMilliseconds:0} ms");
        Assert.True(elapsed < TimeSpan.FromSeconds(5), $"failed after {elapsed}");
        Assert.Equal(1, proxy.Resets);

        var clock = Stopwatch.StartNew();
        Assert.Equal(data, await EventuallyAsync(() => client.GetAsync(id).AsTask()));
        Report($"  served again {clock.ElapsedMilliseconds} ms later, on connection {proxy.ConnectionsAccepted}");
        Assert.True(proxy.ConnectionsAccepted >= 2);
    }

    [Fact(Timeout = 30_000)]
    public async Task Garbage_in_the_answers_drops_the_link_and_the_client_reconnects()
    {
        var (server, proxy) = Start();
        await using var _ = server;
        await using var __ = proxy;
        // A 20 s timeout, so that only the garbage can end the held GET within the bound below.
        await using var client = await DistcacheClient.ConnectAsync(Options(At(proxy), timeoutMs: 20_000));
        await FillAsync(client, 1, 50);

        // The request is held on its way to the server, so the garbage is the first thing to come back while it waits.
        proxy.ToServer.Silent = true;
        Task<byte[]?> pending = client.GetAsync(Bytes("s0")).AsTask();
        await Task.Delay(50);
        proxy.Inject(FaultDirection.ToClient, "HTTP/1.1 400 Bad Request\r\n\r\n"u8);
        var (_, elapsed) = await TimedThrowsAsync<DistcacheConnectionException>(() => pending);
        Assert.True(elapsed < TimeSpan.FromSeconds(5), $"failed after {elapsed}");
        proxy.ToServer.Silent = false;

        Assert.Equal(SessionData.For("s0", 50), await EventuallyAsync(() => client.GetAsync(Bytes("s0")).AsTask()));
        Assert.True(proxy.ConnectionsAccepted >= 2);
    }

    [Fact(Timeout = 30_000)]
    public async Task Garbage_towards_the_server_costs_the_link_which_the_client_replaces()
    {
        var (server, proxy) = Start();
        await using var _ = server;
        await using var __ = proxy;
        await using var client = await DistcacheClient.ConnectAsync(Options(At(proxy)));
        await FillAsync(client, 1, 50);

        proxy.Inject(FaultDirection.ToServer, [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        await Poll.UntilAsync(() => server.Server.Statistics.ProtocolViolations == 1, TimeSpan.FromSeconds(5), "the server counts the violation");
        Assert.Equal(SessionData.For("s0", 50), await EventuallyAsync(() => client.GetAsync(Bytes("s0")).AsTask()));
        Assert.True(proxy.ConnectionsAccepted >= 2);
    }

    [Fact(Timeout = 30_000)]
    public async Task Dc_ctx_times_out_promptly_on_silence_and_heals_on_the_next_call()
    {
        var (server, proxy) = Start();
        await using var _ = server;
        await using var __ = proxy;
        byte[] id = Bytes("ctx");
        await using (var filler = await DistcacheClient.ConnectAsync(Options(At(proxy))))
        {
            Assert.Equal(AddOutcome.Stored, await EventuallyAsync(() => filler.AddAsync(id, SessionData.For(id, 200), Minute).AsTask()));
        }

        // The context's first call connects and may take longer than its timeout on a busy machine (JIT, the first
        // connect); a GET can be retried where the ADD could not, so the context is warmed with GETs until one answers.
        // One second, rather than less, leaves the call after the silence (a new connection) room to heal on a busy
        // machine, while staying well apart from the 5 s default a missing timeout would give.
        using var context = DcContext.Create(Options(At(proxy), timeoutMs: 1000), DcContextFlags.Persistent);
        var buffer = new byte[200];
        await Poll.UntilAsync(() => context.Get(id, buffer) == 200, TimeSpan.FromSeconds(10), "the context's first GET answers");

        proxy.ToClient.Silent = true;
        var clock = Stopwatch.StartNew();
        Assert.Equal(-1, context.Has(id));
        Report($"DC_CTX has() on a silent link: -1 after {clock.ElapsedMilliseconds} ms (timeout 1000 ms)");
        Assert.InRange(clock.ElapsedMilliseconds, 950, 4_500);
        Assert.NotNull(context.LastError);

        proxy.ToClient.Clear();
        Array.Clear(buffer);
        Assert.Equal(200, context.Get(id, buffer));
        Assert.Equal(SessionData.For(id, 200), buffer);
    }

    [Fact(Timeout = 30_000)]
    public async Task Dc_ctx_with_retry_rides_over_a_reset_mid_frame()
    {
        var (server, proxy) = Start();
        await using var _ = server;
        await using var __ = proxy;
        using var context = DcContext.Create(Options(At(proxy)), DcContextFlags.Persistent | DcContextFlags.PersistentRetry);
        byte[] id = Bytes("ctx-retry");
        Assert.True(context.Add(id, SessionData.For(id, 5000), 60_000));

        proxy.ToClient.ResetAfter(100);
        var buffer = new byte[5000];
        Assert.Equal(5000, context.Get(id, buffer));
        Assert.Equal(SessionData.For(id, 5000), buffer);
        Assert.Equal(1, proxy.Resets);
        Report(string.Create(CultureInfo.InvariantCulture, $"DC_CTX GET retried over a reset after 100 bytes: {proxy.ConnectionsAccepted} connections"));
    }
}
