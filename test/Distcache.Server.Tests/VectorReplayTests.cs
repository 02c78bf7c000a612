namespace Distcache.Server.Tests;

/// <summary>The 1.5.1 captures replayed into a fresh in-process server produce the captured responses byte for byte.</summary>
public sealed class VectorReplayTests
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "vectors");

    [Fact]
    public async Task Persistent_capture_is_answered_byte_for_byte()
    {
        await using var server = new InProcess();
        var expected = File.ReadAllBytes(Path.Combine(Root, "persistent", "conn001.s2c"));
        await server.SendAsync(File.ReadAllBytes(Path.Combine(Root, "persistent", "conn001.c2s")));
        Assert.Equal(expected, await server.ReceiveAsync(expected.Length));
    }

    [Fact]
    public async Task Per_operation_captures_are_answered_byte_for_byte_on_one_server()
    {
        var shared = new DistcacheServer(new Distcache.Storage.MemorySessionStore());
        foreach (var c2s in Directory.GetFiles(Path.Combine(Root, "per-operation"), "*.c2s").Order(StringComparer.Ordinal))
        {
            await using var connection = new InProcess(shared);
            var expected = File.ReadAllBytes(Path.ChangeExtension(c2s, ".s2c"));
            await connection.SendAsync(File.ReadAllBytes(c2s));
            Assert.Equal(expected, await connection.ReceiveAsync(expected.Length));
        }
    }

    [Fact]
    public async Task Proxy_to_server_capture_is_answered_byte_for_byte()
    {
        await using var server = new InProcess();
        var expected = File.ReadAllBytes(Path.Combine(Root, "proxy", "proxy-to-server", "conn001.s2c"));
        await server.SendAsync(File.ReadAllBytes(Path.Combine(Root, "proxy", "proxy-to-server", "conn001.c2s")));
        Assert.Equal(expected, await server.ReceiveAsync(expected.Length));
    }
}
