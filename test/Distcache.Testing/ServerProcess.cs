namespace Distcache.Testing;

/// <summary>Starts the real dc_server on a fresh loopback port or unix socket and waits until it accepts.</summary>
public static class ServerProcess
{
    /// <summary>Listens on port 0, so the kernel picks a free port and no other test can race for it; the
    /// port is read from the server's "Info, listening on ..." line.</summary>
    /// <param name="extra">More dc_server arguments.</param>
    /// <returns>The running server and its address.</returns>
    public static Task<(Tool Server, string Address)> StartTcpAsync(params string[] extra) =>
        StartTcpAsync(new Dictionary<string, string>(), extra);

    /// <summary>As <see cref="StartTcpAsync(string[])"/>, with extra environment variables.</summary>
    /// <param name="environment">Variables to set.</param>
    /// <param name="extra">More dc_server arguments.</param>
    /// <returns>The running server and its address.</returns>
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

    /// <summary>The address in dc_server's "Info, listening on ..." line, or null before it.</summary>
    /// <param name="stderr">What dc_server wrote to standard error so far.</param>
    /// <returns>The address, or null.</returns>
    public static string? ListeningAddress(string stderr)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        const string prefix = "Info, listening on ";
        int at = stderr.IndexOf(prefix, StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        int end = stderr.IndexOf('\n', at);
        return end < 0 ? null : stderr[(at + prefix.Length)..end].Trim();
    }

    /// <summary>Starts dc_server on a unix socket in <paramref name="dir"/> and waits until it accepts.</summary>
    /// <param name="dir">Where the socket goes.</param>
    /// <param name="extra">More dc_server arguments.</param>
    /// <returns>The running server and its address.</returns>
    public static async Task<(Tool Server, string Address)> StartUnixAsync(TempDir dir, params string[] extra)
    {
        ArgumentNullException.ThrowIfNull(dir);
        string address = $"UNIX:{dir.File("server.sock")}";
        var server = Tool.Start("dc_server", ["-listen", address, .. extra]);
        try
        {
            await server.WaitForListenerAsync(address);
            return (server, address);
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }
}
