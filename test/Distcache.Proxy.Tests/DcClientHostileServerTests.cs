using System.Diagnostics;
using Distcache.Protocol;
using Distcache.Proxy.Tests.Support;

namespace Distcache.Proxy.Tests;

/// <summary>
/// The real dc_client executable in front of a server that sends hostile responses: strays (a uid never sent, a
/// repeated uid, a response with nothing in flight) are dropped and logged and the link carries on; status bytes no
/// operation defines are passed through to the application that asked, as 1.5.1 passed them; a response that
/// breaks the order of the link drops it, the requests in flight get DISCONNECTED, and a new link serves.
/// </summary>
public sealed class DcClientHostileServerTests(ITestOutputHelper output)
{
    /// <summary>The real dc_client on a unix socket, linked to a fake server, with one application connected.</summary>
    private sealed class Rig : IAsyncDisposable
    {
        private readonly TempDir _dir;
        private readonly FakeServer _server;
        private readonly Tool _client;
        private readonly FakeConnection _link;
        private readonly TestClient _app;

        private Rig(TempDir dir, FakeServer server, Tool client, FakeConnection link, TestClient app)
        {
            (_dir, _server, _client, _link, _app) = (dir, server, client, link, app);
        }

        public static async Task<Rig> StartAsync()
        {
            var dir = new TempDir();
            var server = new FakeServer();
            Tool? client = null;
            try
            {
                string socket = dir.File("hostile.sock");
                client = Tool.Start("dc_client", "-listen", "UNIX:" + socket, "-server", server.Address.ToString(), "-retry", "100");
                await LoadTests.WaitForLinkAsync(client);
                FakeConnection link = await server.NextConnectionAsync();
                return new Rig(dir, server, client, link, await TestClient.ConnectAsync(socket));
            }
            catch
            {
                // The caller gets nothing to dispose: nothing started may outlive the failure.
                if (client is not null)
                {
                    await client.DisposeAsync();
                }

                await server.DisposeAsync();
                dir.Dispose();
                throw;
            }
        }

        public void Deconstruct(out FakeServer server, out Tool client, out FakeConnection link, out TestClient app) =>
            (server, client, link, app) = (_server, _client, _link, _app);

        public async ValueTask DisposeAsync()
        {
            _app.Dispose();
            await _client.DisposeAsync();
            await _server.DisposeAsync();
            _dir.Dispose();
        }
    }

    [Fact]
    public async Task Unknown_repeated_and_unsolicited_responses_are_dropped_and_logged_and_the_link_carries_on()
    {
        await using Rig rig = await Rig.StartAsync();
        var (server, client, link, app) = rig;

        // Nothing in flight at all: an unsolicited answer.
        await link.SendAsync(Frames.Status(41, Operation.Get, StatusCode.Ok));

        await app.SendAsync(Frames.Have(5, "x"));
        Received request = await link.NextRequestAsync();
        await link.SendAsync(Frames.Status(999, Operation.Have, StatusCode.Ok));
        await link.SendAsync(Frames.Status(request.Uid, Operation.Have, StatusCode.NotOk));
        await link.SendAsync(Frames.Status(request.Uid, Operation.Have, StatusCode.Ok));

        Assert.Equal(Frames.Status(5, Operation.Have, StatusCode.NotOk), (await app.ReceiveAsync()).Raw);
        Assert.True(await app.StaysSilentAsync(TimeSpan.FromMilliseconds(300)), "a stray response reached the application");
        await client.WaitUntilAsync(() => client.Stderr.Contains("with no request in flight", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "the strays are logged");
        output.WriteLine(client.Stderr);

        // Same link: the next request goes through it and is answered.
        await app.SendAsync(Frames.Get(6, "y"));
        Received next = await link.NextRequestAsync();
        await link.SendAsync(Frames.Data(next.Uid, Operation.Get, [7, 7, 7, 7, 7]));
        Assert.Equal(Frames.Data(6, Operation.Get, [7, 7, 7, 7, 7]), (await app.ReceiveAsync()).Raw);
        Assert.Equal(1, server.Accepted);
        Assert.DoesNotContain("Lost the link", client.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(Operation.Have, 0x63)]
    [InlineData(Operation.Remove, 0xFF)]
    [InlineData(Operation.Add, 0x7F)]
    public async Task An_undefined_status_byte_reaches_the_application_that_asked_unchanged(Operation operation, byte status)
    {
        await using Rig rig = await Rig.StartAsync();
        var (_, client, link, app) = rig;

        byte[] ask = operation == Operation.Add ? Frames.Add(9, "z", [1, 2, 3, 4, 5]) : Frames.IdRequest(9, operation, "z");
        await app.SendAsync(ask);
        Received request = await link.NextRequestAsync();
        await link.SendAsync(Frames.Status(request.Uid, operation, (StatusCode)status));
        Received answer = await app.ReceiveAsync();
        Assert.Equal(Frames.Status(9, operation, (StatusCode)status), answer.Raw);
        Assert.False(client.HasExited);
    }

    [Fact]
    public async Task A_response_out_of_order_drops_the_link_the_requests_in_flight_get_DISCONNECTED_and_a_new_link_serves()
    {
        await using Rig rig = await Rig.StartAsync();
        var (server, client, link, app) = rig;

        await app.SendAsync(Frames.Concat(Frames.Have(1, "a"), Frames.Get(2, "b")));
        await link.NextRequestAsync();
        Received second = await link.NextRequestAsync();
        var clock = Stopwatch.StartNew();
        await link.SendAsync(Frames.Data(second.Uid, Operation.Get, [1, 2, 3, 4, 5]));
        Assert.Equal(Frames.Disconnected(1, Operation.Have), (await app.ReceiveAsync()).Raw);
        Assert.Equal(Frames.Disconnected(2, Operation.Get), (await app.ReceiveAsync()).Raw);
        output.WriteLine($"out-of-order response: both requests answered DISCONNECTED after {clock.ElapsedMilliseconds} ms");
        Assert.True(await link.ClosesWithinAsync(TimeSpan.FromSeconds(5)));

        FakeConnection again = await server.NextConnectionAsync();
        await client.WaitUntilAsync(
            () => client.Stderr.Split('\n').Count(l => l.Contains("Connected to the server", StringComparison.Ordinal)) >= 2,
            TimeSpan.FromSeconds(10),
            "dc_client links again");
        await app.SendAsync(Frames.Have(3, "c"));
        Received request = await again.NextRequestAsync();
        await again.SendAsync(Frames.Status(request.Uid, Operation.Have, StatusCode.Ok));
        Assert.Equal(Frames.Status(3, Operation.Have, StatusCode.Ok), (await app.ReceiveAsync()).Raw);
    }
}
