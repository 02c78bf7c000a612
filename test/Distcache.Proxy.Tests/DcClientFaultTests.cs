using System.Diagnostics;
using System.Globalization;
using Distcache.Protocol;
using Distcache.Proxy.Tests.Support;

namespace Distcache.Proxy.Tests;

/// <summary>
/// The real dc_client whose server link runs through a <see cref="FaultProxy"/> to the real dc_server: a link
/// that goes silent, is reset in the middle of a frame, or carries garbage costs the applications nothing but
/// prompt DISCONNECTED answers, and service resumes by itself; under latency and a bandwidth cap every
/// application still gets its own answers.
/// </summary>
public sealed class DcClientFaultTests(ITestOutputHelper output)
{
    private const int RetryMs = 100;

    // The silence test waits for this; the others use a long one, so that an answer well before it cannot be the
    // timeout's doing.
    private const int TimeoutMs = 400;
    private const int LongTimeoutMs = 10_000;

    private sealed class Rig : IAsyncDisposable
    {
        private readonly TempDir _dir;

        private Rig(TempDir dir, Tool server, FaultProxy proxy, Tool client, string socket)
        {
            _dir = dir;
            Server = server;
            Proxy = proxy;
            Client = client;
            Socket = socket;
        }

        public Tool Server { get; }

        public FaultProxy Proxy { get; }

        public Tool Client { get; }

        public string Socket { get; }

        public static async Task<Rig> StartAsync(int timeoutMs = LongTimeoutMs)
        {
            string serverAddress = $"IP:127.0.0.1:{Tool.FreePort()}";
            Tool server = Tool.Start("dc_server", "-listen", serverAddress, "-msgtimeout", "500");
            await server.WaitForListenerAsync(serverAddress);
            FaultProxy proxy = FaultProxy.Start(serverAddress);
            var dir = new TempDir();
            string socket = dir.File("dc_client.sock");
            Tool client = Tool.Start("dc_client", "-listen", "UNIX:" + socket, "-server", proxy.Address,
                "-retry", RetryMs.ToString(CultureInfo.InvariantCulture), "-timeout", timeoutMs.ToString(CultureInfo.InvariantCulture));
            await LoadTests.WaitForLinkAsync(client);
            return new Rig(dir, server, proxy, client, socket);
        }

        public Task<TestClient> ConnectAsync() => TestClient.ConnectAsync(Socket);

        /// <summary>Asks until the answer is not DISCONNECTED (the link is back), bounded; returns it and how long that took.</summary>
        public async Task<(Received Answer, TimeSpan Took)> UntilServedAsync(Func<uint, byte[]> request)
        {
            var clock = Stopwatch.StartNew();
            using TestClient app = await ConnectAsync();
            for (uint uid = 1; ; uid++)
            {
                Received answer = await app.CallAsync(request(uid));
                if (answer.Status != StatusCode.Disconnected)
                {
                    return (answer, clock.Elapsed);
                }

                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "service did not resume within 10 s");
                await Task.Delay(20);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            await Proxy.DisposeAsync();
            await Server.DisposeAsync();
            _dir.Dispose();
        }
    }

    [Fact]
    public async Task A_silent_link_is_answered_DISCONNECTED_within_the_timeout_and_service_resumes()
    {
        await using Rig rig = await Rig.StartAsync(TimeoutMs);
        using TestClient app = await rig.ConnectAsync();
        byte[] data = SessionData.For("quiet", 500);

        // The first request through a cold dc_client, FaultProxy and dc_server may take longer than the short
        // timeout on a busy machine, so the ADD is repeated until it is served; one answered DISCONNECTED may have
        // been stored all the same, and its repeat then finds the session there.
        var (added, _) = await rig.UntilServedAsync(uid => Frames.Add(uid, "quiet", data));
        Assert.True(added.Status is StatusCode.Ok or StatusCode.AddErrMatchingSession, $"ADD answered {added.Status}");

        rig.Proxy.ToClient.Silent = true;
        var clock = Stopwatch.StartNew();
        Received answer = await app.CallAsync(Frames.Get(2, "quiet"), TimeSpan.FromSeconds(10));
        TimeSpan waited = clock.Elapsed;
        Assert.Equal(Frames.Disconnected(2, Operation.Get), answer.Raw);
        output.WriteLine($"silent link: DISCONNECTED after {waited.TotalMilliseconds:0} ms (-timeout {TimeoutMs})");
        Assert.InRange(waited, TimeSpan.FromMilliseconds(TimeoutMs - 50), TimeSpan.FromMilliseconds(TimeoutMs + 4000));

        rig.Proxy.ToClient.Clear();
        var (again, took) = await rig.UntilServedAsync(uid => Frames.Get(uid, "quiet"));
        output.WriteLine($"  served again {took.TotalMilliseconds:0} ms after the link was healed (-retry {RetryMs})");
        Assert.Equal(data, again.Payload);
        Assert.False(rig.Client.HasExited);
    }

    [Theory]
    [InlineData(FaultDirection.ToClient, 3000)]
    [InlineData(FaultDirection.ToClient, 7)]
    [InlineData(FaultDirection.ToServer, 2000)]
    public async Task A_reset_mid_frame_on_the_link_answers_the_request_DISCONNECTED_at_once_and_service_resumes(FaultDirection direction, int afterBytes)
    {
        await using Rig rig = await Rig.StartAsync();
        using TestClient app = await rig.ConnectAsync();
        byte[] data = SessionData.For("large", 12_000);
        Assert.Equal(StatusCode.Ok, (await app.CallAsync(Frames.Add(1, "large", data))).Status);

        // Towards the client the GET's answer is cut; towards the server an ADD of a second large session is.
        (direction == FaultDirection.ToClient ? rig.Proxy.ToClient : rig.Proxy.ToServer).ResetAfter(afterBytes);
        byte[] request = direction == FaultDirection.ToClient ? Frames.Get(2, "large") : Frames.Add(2, "other", SessionData.For("other", 12_000));
        var clock = Stopwatch.StartNew();
        Received answer = await app.CallAsync(request, TimeSpan.FromSeconds(15));
        output.WriteLine($"reset after {afterBytes} bytes {direction}: {answer.Status} after {clock.ElapsedMilliseconds} ms");
        Assert.Equal(StatusCode.Disconnected, answer.Status);
        Assert.Equal(2u, answer.Uid);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"answered after {clock.Elapsed}, not at once (-timeout {LongTimeoutMs})");
        Assert.Equal(1, rig.Proxy.Resets);

        var (again, took) = await rig.UntilServedAsync(uid => Frames.Get(uid, "large"));
        output.WriteLine($"  served again after {took.TotalMilliseconds:0} ms (-retry {RetryMs})");
        Assert.Equal(data, again.Payload);
    }

    [Fact]
    public async Task Garbage_on_the_link_drops_it_answers_DISCONNECTED_and_service_resumes()
    {
        await using Rig rig = await Rig.StartAsync();
        using TestClient app = await rig.ConnectAsync();
        byte[] data = SessionData.For("g", 100);
        Assert.Equal(StatusCode.Ok, (await app.CallAsync(Frames.Add(1, "g", data))).Status);

        // The request is held on its way to the server, so the garbage is what comes back while it waits.
        rig.Proxy.ToServer.Silent = true;
        await app.SendAsync(Frames.Get(2, "g"));
        await Task.Delay(50);
        rig.Proxy.Inject(FaultDirection.ToClient, "SSH-2.0-OpenSSH_9.2\r\n"u8);
        var clock = Stopwatch.StartNew();
        Received answer = await app.ReceiveAsync(TimeSpan.FromSeconds(15));
        output.WriteLine($"garbage on the link: {answer.Status} after {clock.ElapsedMilliseconds} ms");
        Assert.Equal(Frames.Disconnected(2, Operation.Get), answer.Raw);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"answered after {clock.Elapsed}, not at once (-timeout {LongTimeoutMs})");
        await rig.Client.WaitUntilAsync(() => rig.Client.Stderr.Contains("protocol violation", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "dc_client logs the violation");

        rig.Proxy.ToServer.Clear();
        var (again, _) = await rig.UntilServedAsync(uid => Frames.Get(uid, "g"));
        Assert.Equal(data, again.Payload);
    }

    [Fact]
    public async Task Under_latency_and_a_bandwidth_cap_every_application_gets_its_own_answers()
    {
        await using Rig rig = await Rig.StartAsync();
        rig.Proxy.ToClient.Delay = TimeSpan.FromMilliseconds(30);
        rig.Proxy.ToServer.Delay = TimeSpan.FromMilliseconds(30);
        rig.Proxy.ToClient.BytesPerSecond = 2_000_000;

        const int Apps = 12;
        var clock = Stopwatch.StartNew();
        int[] served = await Task.WhenAll(Enumerable.Range(0, Apps).Select(async a =>
        {
            using TestClient app = await rig.ConnectAsync();
            int count = 0;
            for (uint i = 0; i < 8; i++)
            {
                string id = $"app{a}-s{i}";
                byte[] data = SessionData.For(id, 200 + (int)(i * 700));
                Received added = await app.CallAsync(Frames.Add((2 * i) + 1, id, data));
                Assert.Equal(StatusCode.Ok, added.Status);
                Received got = await app.CallAsync(Frames.Get((2 * i) + 2, id));
                Assert.Equal((2 * i) + 2, got.Uid);
                Assert.True(SessionData.Matches(System.Text.Encoding.UTF8.GetBytes(id), got.Payload) && got.Payload.Length == data.Length, $"{id}: another session's data");
                count++;
            }

            return count;
        }));
        output.WriteLine($"{Apps} applications x 8 ADD+GET through 30 ms each way and 2 MB/s: {clock.ElapsedMilliseconds} ms, all answers their own");
        Assert.All(served, n => Assert.Equal(8, n));
    }
}
