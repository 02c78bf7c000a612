namespace Distcache.TicketKeys.Tests.Support;

/// <summary>
/// The servers of one test, as two hosts of a web farm: the first on 127.0.0.1, the second on 127.0.0.2, on the same
/// port, each with its own folder and key files. Disposing stops them all and removes the test's folder.
/// </summary>
internal sealed class Farm(Certificate certificate, ITestOutputHelper output) : IAsyncDisposable
{
    private readonly List<TicketServer> _servers = [];
    private readonly TempDir _dir = new();

    /// <summary>A folder of the test's own (the TLS client's wait files go there).</summary>
    public string Directory => _dir.Path;

    /// <summary>Starts two servers with their keys. A port taken between the check and the servers' bind is tried
    /// again with another.</summary>
    public Task<(TicketServer First, TicketServer Second)> StartTwoAsync(ServerKind firstKind, HostKeys firstKeys, ServerKind secondKind, HostKeys secondKeys) =>
        StartTwoAsync(firstKind, secondKind, server =>
        {
            server.WriteKeys(server.Address == "127.0.0.1" ? firstKeys : secondKeys);
            return Task.CompletedTask;
        }, $"keys {firstKeys} and {secondKeys}");

    /// <summary>Starts two servers whose key files <paramref name="writeKeys"/> writes first (dc_ticketkeys does,
    /// for example). A port taken between the check and the servers' bind is tried again with another.</summary>
    public async Task<(TicketServer First, TicketServer Second)> StartTwoAsync(ServerKind firstKind, ServerKind secondKind, Func<TicketServer, Task> writeKeys, string keys)
    {
        Exception? last = null;
        for (int attempt = 0; attempt < 5; attempt++)
        {
            int port = Tool.FreePortOnBoth();
            TicketServer first = TicketServer.Create(firstKind, "127.0.0.1", port, certificate);
            TicketServer second = TicketServer.Create(secondKind, "127.0.0.2", port, certificate);
            try
            {
                await writeKeys(first);
                await writeKeys(second);
                await first.StartAsync();
                await second.StartAsync();
                _servers.Add(first);
                _servers.Add(second);
                output.WriteLine($"{first.Kind} {first.Endpoint} (master {first.Pid}) and {second.Kind} {second.Endpoint} (master {second.Pid}) with {keys}");
                return (first, second);
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException)
            {
                await first.DisposeAsync();
                await second.DisposeAsync();
                if (!e.Message.Contains("Address already in use", StringComparison.Ordinal))
                {
                    throw;
                }

                last = e;
            }
        }

        throw new InvalidOperationException("could not start the two servers on a free port", last);
    }

    /// <summary>Both servers' logs, for failure messages.</summary>
    public string Diagnostics() => string.Join('\n', _servers.Select(server => server.Diagnostics()));

    public async ValueTask DisposeAsync()
    {
        foreach (TicketServer server in _servers)
        {
            await server.DisposeAsync();
        }

        _servers.Clear();
        _dir.Dispose();
    }
}
