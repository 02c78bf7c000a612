using System.Diagnostics;
using Distcache.EndToEnd.Tests.Support;
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
    private static async Task<(Tool Client, string Socket, TempDir Dir)> StartAsync(FakeServer server, int retryMs = 100)
    {
        var dir = new TempDir();
        string socket = dir.File("hostile.sock");
        Tool client = Tool.Start("dc_client", "-listen", "UNIX:" + socket, "-server", server.Address.ToString(), "-retry", retryMs.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await LoadTests.WaitForLinkAsync(client);
        return (client, socket, dir);
    }

    [Fact]
    public async Task Unknown_repeated_and_unsolicited_responses_are_dropped_and_logged_and_the_link_carries_on()
    {
        await using var server = new FakeServer();
        var (client, socket, dir) = await StartAsync(server);
        using var _ = dir;
        await using var __ = client;
        FakeLink link = await server.NextLinkAsync();
        using TestClient app = await TestClient.ConnectAsync(socket);

        // Nothing in flight at all: an unsolicited answer.
        await link.SendAsync(Wire.Status(41, Operation.Get, StatusCode.Ok));

        await app.SendAsync(Wire.Have(5, "x"));
        Received request = await link.ReceiveAsync();
        await link.SendAsync(Wire.Status(999, Operation.Have, StatusCode.Ok));
        await link.SendAsync(Wire.Status(request.Uid, Operation.Have, StatusCode.NotOk));
        await link.SendAsync(Wire.Status(request.Uid, Operation.Have, StatusCode.Ok));

        Assert.Equal(Wire.Status(5, Operation.Have, StatusCode.NotOk), (await app.ReceiveAsync()).Raw);
        Assert.True(await app.StaysSilentAsync(TimeSpan.FromMilliseconds(300)), "a stray response reached the application");
        await client.WaitUntilAsync(() => client.Stderr.Contains("with no request in flight", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "the strays are logged");
        output.WriteLine(client.Stderr);

        // Same link: the next request goes through it and is answered.
        await app.SendAsync(Wire.Get(6, "y"));
        Received next = await link.ReceiveAsync();
        await link.SendAsync(Wire.Data(next.Uid, Operation.Get, [7, 7, 7, 7, 7]));
        Assert.Equal(Wire.Data(6, Operation.Get, [7, 7, 7, 7, 7]), (await app.ReceiveAsync()).Raw);
        Assert.Equal(1, server.Accepted);
        Assert.DoesNotContain("Lost the link", client.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(Operation.Have, 0x63)]
    [InlineData(Operation.Remove, 0xFF)]
    [InlineData(Operation.Add, 0x7F)]
    public async Task An_undefined_status_byte_reaches_the_application_that_asked_unchanged(Operation operation, byte status)
    {
        await using var server = new FakeServer();
        var (client, socket, dir) = await StartAsync(server);
        using var _ = dir;
        await using var __ = client;
        FakeLink link = await server.NextLinkAsync();
        using TestClient app = await TestClient.ConnectAsync(socket);

        byte[] ask = operation == Operation.Add ? Wire.Add(9, "z", [1, 2, 3, 4, 5]) : Wire.IdRequest(9, operation, "z");
        await app.SendAsync(ask);
        Received request = await link.ReceiveAsync();
        await link.SendAsync(Wire.Status(request.Uid, operation, (StatusCode)status));
        Received answer = await app.ReceiveAsync();
        Assert.Equal(Wire.Status(9, operation, (StatusCode)status), answer.Raw);
        Assert.False(client.HasExited);
    }

    [Fact]
    public async Task A_response_out_of_order_drops_the_link_the_requests_in_flight_get_DISCONNECTED_and_a_new_link_serves()
    {
        await using var server = new FakeServer();
        var (client, socket, dir) = await StartAsync(server);
        using var _ = dir;
        await using var __ = client;
        FakeLink link = await server.NextLinkAsync();
        using TestClient app = await TestClient.ConnectAsync(socket);

        await app.SendAsync(Wire.Concat(Wire.Have(1, "a"), Wire.Get(2, "b")));
        await link.ReceiveAsync();
        Received second = await link.ReceiveAsync();
        var clock = Stopwatch.StartNew();
        await link.SendAsync(Wire.Data(second.Uid, Operation.Get, [1, 2, 3, 4, 5]));
        Assert.Equal(Wire.Disconnected(1, Operation.Have), (await app.ReceiveAsync()).Raw);
        Assert.Equal(Wire.Disconnected(2, Operation.Get), (await app.ReceiveAsync()).Raw);
        output.WriteLine($"out-of-order response: both requests answered DISCONNECTED after {clock.ElapsedMilliseconds} ms");
        Assert.True(await link.ClosesWithinAsync(TimeSpan.FromSeconds(5)));

        FakeLink again = await server.NextLinkAsync();
        await client.WaitUntilAsync(
            () => client.Stderr.Split('\n').Count(l => l.Contains("Connected to the server", StringComparison.Ordinal)) >= 2,
            TimeSpan.FromSeconds(10),
            "dc_client links again");
        await app.SendAsync(Wire.Have(3, "c"));
        Received request = await again.ReceiveAsync();
        await again.SendAsync(Wire.Status(request.Uid, Operation.Have, StatusCode.Ok));
        Assert.Equal(Wire.Status(3, Operation.Have, StatusCode.Ok), (await app.ReceiveAsync()).Raw);
    }
}
