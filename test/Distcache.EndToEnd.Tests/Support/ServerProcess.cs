namespace Distcache.EndToEnd.Tests.Support;

/// <summary>Starts the real dc_server on a fresh loopback port or unix socket and waits until it accepts.</summary>
internal static class ServerProcess
{
    /// <summary>Listens on port 0, so the kernel picks a free port and no other test can race for it; the
    /// port is read from the server's "Info, listening on ..." line.</summary>
    public static Task<(Tool Server, string Address)> StartTcpAsync(params string[] extra) =>
        StartTcpAsync(new Dictionary<string, string>(), extra);

    /// <summary>As <see cref="StartTcpAsync(string[])"/>, with extra environment variables.</summary>
    public static async Task<(Tool Server, string Address)> StartTcpAsync(IReadOnlyDictionary<string, string> environment, params string[] extra)
    {
        var server = Tool.StartWithEnvironment("dc_server", environment, ["-listen", "IP:127.0.0.1:0", .. extra]);
        try
        {
            string? address = null;
            await server.WaitUntilAsync(() => (address = ListeningAddress(server.Stderr)) is not null, TimeSpan.FromSeconds(20), "the listening line");
            await server.WaitForListenerAsync(address!);
            return (server, address!);
        }
        catch
        {
            // The caller never gets the tool to dispose, so a failed start must not leave the process running.
            await server.DisposeAsync();
            throw;
        }
    }

    public static string? ListeningAddress(string stderr)
    {
        const string prefix = "Info, listening on ";
        int at = stderr.IndexOf(prefix, StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        int end = stderr.IndexOf('\n', at);
        return end < 0 ? null : stderr[(at + prefix.Length)..end].Trim();
    }

    public static async Task<(Tool Server, string Address)> StartUnixAsync(TempDir dir, params string[] extra)
    {
        string address = $"UNIX:{dir.File("server.sock")}";
        var server = Tool.Start("dc_server", ["-listen", address, .. extra]);
        await server.WaitForListenerAsync(address);
        return (server, address);
    }
}
