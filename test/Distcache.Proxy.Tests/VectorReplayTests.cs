using Distcache.Protocol;
using Distcache.Proxy.Tests.Support;

namespace Distcache.Proxy.Tests;

/// <summary>
/// The 1.5.1 capture of dc_test talking to dc_client, replayed into ours: every answer byte for byte as 1.5.1's,
/// except the last, taken with the server stopped, where ours answers DISCONNECTED instead of 1.5.1's empty payload.
/// </summary>
public sealed class VectorReplayTests
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "vectors", "proxy", "app-to-proxy");

    /// <summary>The answer to conn021 (an ADD with uid 1): one frame, uid 1, op ADD, length 1, payload 0x02.</summary>
    private static readonly byte[] Conn021Answer =
    [
        0x00, 0x11, 0x00, 0x00, // proto_level
        0x01,                   // is_response
        0x00, 0x00, 0x00, 0x01, // request_uid 1
        0x00,                   // op_class
        0x00,                   // ADD
        0x01,                   // complete
        0x00, 0x01,             // data_len 1
        0x02,                   // DISCONNECTED
    ];

    [Fact]
    public async Task The_capture_is_answered_byte_for_byte_through_an_in_process_proxy_and_server()
    {
        InProcessServer server = InProcessServer.Start();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        try
        {
            await ReplayConnectedAsync(proxy.SocketPath);
        }
        finally
        {
            await server.DisposeAsync();
        }

        await proxy.WaitForLinkAsync(up: false);
        await ReplayDisconnectedAsync(proxy.SocketPath);
    }

    [Fact]
    public async Task The_server_side_of_the_capture_is_reproduced_byte_for_byte()
    {
        // 1.5.1's dc_client sent proxy-to-server/conn001.c2s for this traffic; ours must send the same bytes
        // (uids 1..20), and pass the server's captured answers back exactly as 1.5.1 did.
        string side = Path.Combine(AppContext.BaseDirectory, "vectors", "proxy", "proxy-to-server", "conn001");
        var answers = new MessageBuffer(MessageDirection.Responses);
        byte[] captured = File.ReadAllBytes(side + ".s2c");
        captured.CopyTo(answers.GetFreeSpace(captured.Length));
        answers.Commit(captured.Length);

        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        FakeConnection link = await server.NextConnectionAsync();
        var forwarded = new List<byte>();
        for (int n = 1; n <= 20; n++)
        {
            string name = Path.Combine(Root, $"conn{n:000}");
            using TestClient connection = await TestClient.ConnectAsync(proxy.SocketPath);
            await connection.SendAsync(File.ReadAllBytes(name + ".c2s"));
            forwarded.AddRange((await link.NextRequestAsync()).Raw);
            Assert.True(answers.TryDecode(out Received? answer));
            await link.SendAsync(answer!.Raw);
            byte[] expected = File.ReadAllBytes(name + ".s2c");
            Assert.Equal(expected, await connection.ReceiveBytesAsync(expected.Length));
        }

        Assert.Equal(File.ReadAllBytes(side + ".c2s"), forwarded.ToArray());
    }

    [Fact]
    public async Task The_capture_is_answered_byte_for_byte_through_the_real_executables()
    {
        using var dir = new TempDir();
        string serverAddress = $"IP:127.0.0.1:{Tool.FreePort()}";
        string socket = dir.File("dc_client.sock");
        await using Tool server = Tool.Start("dc_server", "-listen", serverAddress);
        await server.WaitForListenerAsync(serverAddress);
        await using Tool client = Tool.Start("dc_client", "-listen", "UNIX:" + socket, "-server", serverAddress, "-retry", "200");
        await client.WaitUntilAsync(() => client.Stderr.Contains("Connected to the server", StringComparison.Ordinal), TimeSpan.FromSeconds(20), "dc_client links to dc_server");

        await ReplayConnectedAsync(socket);

        server.Kill();
        await server.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await client.WaitUntilAsync(() => client.Stderr.Contains("Lost the link", StringComparison.Ordinal), TimeSpan.FromSeconds(10), "dc_client notices");
        await ReplayDisconnectedAsync(socket);
        Assert.False(client.HasExited, client.Stderr);
    }

    private static async Task ReplayConnectedAsync(string socket)
    {
        for (int n = 1; n <= 20; n++)
        {
            string name = Path.Combine(Root, $"conn{n:000}");
            byte[] expected = File.ReadAllBytes(name + ".s2c");
            using TestClient connection = await TestClient.ConnectAsync(socket);
            await connection.SendAsync(File.ReadAllBytes(name + ".c2s"));
            Assert.Equal(expected, await connection.ReceiveBytesAsync(expected.Length));
        }
    }

    private static async Task ReplayDisconnectedAsync(string socket)
    {
        // What 1.5.1 sent here: the same header with an empty payload.
        byte[] captured = File.ReadAllBytes(Path.Combine(Root, "conn021.s2c"));
        Assert.Equal(Conn021Answer[..^3], captured[..^2]);
        Assert.Equal(Conn021Answer, Frames.Disconnected(1, Operation.Add));

        using TestClient connection = await TestClient.ConnectAsync(socket);
        await connection.SendAsync(File.ReadAllBytes(Path.Combine(Root, "conn021.c2s")));
        Assert.Equal(Conn021Answer, await connection.ReceiveBytesAsync(Conn021Answer.Length, TimeSpan.FromSeconds(2)));
    }
}
