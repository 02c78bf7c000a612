
namespace Distcache.EndToEnd.Tests;

/// <summary>The real dc_server answers the 1.5.1 captures byte for byte, on TCP and on a unix socket.</summary>
public sealed class DcServerVectorTests
{
    private static readonly string Vectors = Path.Combine(AppContext.BaseDirectory, "vectors");

    public static TheoryData<string> Transports() => ["tcp", "unix"];

    private static async Task<(Tool, string)> StartAsync(string transport, TempDir dir) =>
        transport == "tcp" ? await ServerProcess.StartTcpAsync() : await ServerProcess.StartUnixAsync(dir);

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Persistent_capture_replays_byte_for_byte(string transport)
    {
        using var dir = new TempDir();
        var (server, address) = await StartAsync(transport, dir);
        await using var _ = server;
        using var socket = Wire.Open(address);
        var expected = File.ReadAllBytes(Path.Combine(Vectors, "persistent", "conn001.s2c"));
        socket.Send(File.ReadAllBytes(Path.Combine(Vectors, "persistent", "conn001.c2s")));
        Assert.Equal(expected, Wire.ReceiveExactly(socket, expected.Length));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Per_operation_captures_replay_byte_for_byte_each_on_its_own_connection(string transport)
    {
        using var dir = new TempDir();
        var (server, address) = await StartAsync(transport, dir);
        await using var _ = server;
        var files = Directory.GetFiles(Path.Combine(Vectors, "per-operation"), "*.c2s").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(8, files.Count);
        foreach (var c2s in files)
        {
            using var socket = Wire.Open(address);
            var expected = File.ReadAllBytes(Path.ChangeExtension(c2s, ".s2c"));
            socket.Send(File.ReadAllBytes(c2s));
            Assert.Equal(expected, Wire.ReceiveExactly(socket, expected.Length));
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData("0")]
    public async Task Both_socket_transports_answer_the_capture_byte_for_byte(string? nativeTransport)
    {
        // dc_server serves on its own epoll transport unless DISTCACHE_NATIVE_TRANSPORT=0 sends it back to the
        // runtime's sockets. The event loops' threads (named "distcache event loop N", of which Linux keeps the
        // first 15 characters) show which one is serving.
        var environment = new Dictionary<string, string>();
        if (nativeTransport is not null)
        {
            environment["DISTCACHE_NATIVE_TRANSPORT"] = nativeTransport;
        }

        var (server, address) = await ServerProcess.StartTcpAsync(environment);
        await using var _ = server;
        using var socket = Wire.Open(address);
        var expected = File.ReadAllBytes(Path.Combine(Vectors, "persistent", "conn001.s2c"));
        socket.Send(File.ReadAllBytes(Path.Combine(Vectors, "persistent", "conn001.c2s")));
        Assert.Equal(expected, Wire.ReceiveExactly(socket, expected.Length));

        bool eventLoops = Directory.GetDirectories($"/proc/{server.Pid}/task")
            .Any(task => File.ReadAllText(Path.Combine(task, "comm")).Trim() == "distcache event");
        Assert.Equal(nativeTransport is null, eventLoops);
    }
}
