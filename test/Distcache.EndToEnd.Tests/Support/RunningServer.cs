namespace Distcache.EndToEnd.Tests.Support;

/// <summary>A dc_server started on a free loopback port, stopped on dispose.</summary>
internal sealed class RunningServer : IAsyncDisposable
{
    private RunningServer(Tool tool, string address)
    {
        Tool = tool;
        Address = address;
    }

    public Tool Tool { get; }

    public string Address { get; }

    public static async Task<RunningServer> StartServerAsync(params string[] extra)
    {
        (Tool tool, string address) = await ServerProcess.StartTcpAsync(extra);
        return new RunningServer(tool, address);
    }

    /// <summary>Starts a dc_server on a Redis store and waits until an ADD through it succeeds (its first connection to
    /// Redis may take a moment on a loaded machine).</summary>
    public static async Task<RunningServer> StartOnRedisAsync(params string[] extra)
    {
        RunningServer server = await StartServerAsync(extra);
        using var socket = Wire.Open(server.Address, timeoutMs: 15_000);
        byte[] probe = System.Text.Encoding.ASCII.GetBytes($"ready-probe-{Guid.NewGuid():N}");
        await server.Tool.WaitUntilAsync(() => Wire.Add(socket, probe, [1, 2], 1000)[0] is 0 or 101, TimeSpan.FromSeconds(30), "the Redis store to answer");
        return server;
    }

    public ValueTask DisposeAsync() => Tool.DisposeAsync();
}
