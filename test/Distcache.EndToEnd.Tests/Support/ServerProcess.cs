namespace Distcache.EndToEnd.Tests.Support;

/// <summary>Starts the real dc_server on a fresh loopback port or unix socket and waits until it accepts.</summary>
internal static class ServerProcess
{
    public static async Task<(Tool Server, string Address)> StartTcpAsync(params string[] extra)
    {
        for (int attempt = 0; ; attempt++)
        {
            string address = $"IP:127.0.0.1:{Tool.FreePort()}";
            var server = Tool.Start("dc_server", ["-listen", address, .. extra]);
            try
            {
                await server.WaitForListenerAsync(address);
                return (server, address);
            }
            catch (InvalidOperationException) when (attempt < 3 && server.Stderr.Contains("in use", StringComparison.OrdinalIgnoreCase))
            {
                // Another process took the free port between the probe and the bind: try another.
                await server.DisposeAsync();
            }
        }
    }

    public static async Task<(Tool Server, string Address)> StartUnixAsync(TempDir dir, params string[] extra)
    {
        string address = $"UNIX:{dir.File("server.sock")}";
        var server = Tool.Start("dc_server", ["-listen", address, .. extra]);
        await server.WaitForListenerAsync(address);
        return (server, address);
    }
}
