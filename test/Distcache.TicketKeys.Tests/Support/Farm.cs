using System.Text.Json;

namespace Distcache.TicketKeys.Tests.Support;

/// <summary>
/// The servers of one test, as two hosts of a web farm: the first on 127.0.0.1, the second on 127.0.0.2, on the same
/// port, each with its own folder and key files. Disposing stops them all and removes the test's folder.
/// </summary>
internal sealed class Farm(Certificate certificate, ITestOutputHelper output) : IAsyncDisposable
{
    /// <summary>Sessions per check.</summary>
    public const int Tickets = 10;

    private readonly List<WebServer> _servers = [];
    private readonly TempDir _dir = new();

    /// <summary>A folder of the test's own (the TLS client's wait files go there).</summary>
    public string Directory => _dir.Path;

    /// <summary>Starts two servers with their keys. A port taken between the check and the servers' bind is tried
    /// again with another.</summary>
    public Task<(WebServer First, WebServer Second)> StartTwoAsync(ServerKind firstKind, HostKeys firstKeys, ServerKind secondKind, HostKeys secondKeys) =>
        StartTwoAsync(firstKind, secondKind, server =>
        {
            server.WriteKeys(server.Address == "127.0.0.1" ? firstKeys : secondKeys);
            return Task.CompletedTask;
        }, $"keys {firstKeys} and {secondKeys}");

    /// <summary>Starts two servers whose key files <paramref name="writeKeys"/> writes first (dc_ticketkeys does,
    /// for example). A port taken between the check and the servers' bind is tried again with another.</summary>
    public async Task<(WebServer First, WebServer Second)> StartTwoAsync(ServerKind firstKind, ServerKind secondKind, Func<WebServer, Task> writeKeys, string keys)
    {
        Exception? last = null;
        for (int attempt = 0; attempt < 5; attempt++)
        {
            int port = Tool.FreePortOnBoth();
            WebServer first = ServerKinds.Create(firstKind, "127.0.0.1", port, certificate);
            WebServer second = ServerKinds.Create(secondKind, "127.0.0.2", port, certificate);
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

    /// <summary>dc_ticketkeys' arguments on <paramref name="server"/>'s host: the cache, the period, a state file in the
    /// server's folder, the flag that writes its key files, and <paramref name="more"/>.</summary>
    public static string[] DcTicketKeysArguments(WebServer server, string cache, int period, params string[] more) =>
    [
        "-connect", cache, "-period", period.ToString(System.Globalization.CultureInfo.InvariantCulture),
        "-state", Path.Combine(server.Directory, "dc_ticketkeys.state"),
        .. server.DcTicketKeysFlag(), .. more,
    ];

    /// <summary>The keys a server starts with: one pass of dc_ticketkeys (<c>-once</c>) on its host, before there is a
    /// server to reload.</summary>
    public static async Task WriteKeysOnceAsync(WebServer server, string cache, int period, params string[] more)
    {
        if (server is NginxServer nginx)
        {
            System.IO.Directory.CreateDirectory(nginx.KeyDirectory);
        }

        await using Tool once = await Tool.RunAsync(TimeSpan.FromSeconds(30), "dc_ticketkeys", [.. DcTicketKeysArguments(server, cache, period, more), "-once"]);
        Assert.True(once.ExitCode == 0, once.Output);
    }

    /// <summary>dc_ticketkeys as a service on <paramref name="server"/>'s host, with the server's reload command; a
    /// failed pass is retried after a second.</summary>
    public static Tool StartKeyService(WebServer server, string cache, int period) =>
        Tool.Start("dc_ticketkeys", DcTicketKeysArguments(server, cache, period, "-reload", server.ReloadCommand, "-retry", "1", "-timeout", "500"));

    /// <summary>Waits for the next rotation: each host's dc_ticketkeys (<paramref name="tools"/>, in the order of
    /// <paramref name="servers"/>) rewrites its files and runs the reload, and the server's new workers (with the
    /// new keys) take over.</summary>
    public async Task RotationAsync(IReadOnlyList<WebServer> servers, IReadOnlyList<Tool> tools, TimeSpan limit)
    {
        var marks = servers.Select(s => s.Mark()).ToArray();
        int[] reloadsBefore = [.. tools.Select(t => Periods.Count(t.Stderr, "Info, ran the reload command"))];
        for (int i = 0; i < tools.Count; i++)
        {
            Tool tool = tools[i];
            int before = reloadsBefore[i];
            await tool.WaitUntilAsync(() => Periods.Count(tool.Stderr, "Info, ran the reload command") > before, limit, "the reload after a rotation");
            await servers[i].WaitReloadedSinceAsync(marks[i]);
        }

        output.WriteLine($"rotated at {DateTimeOffset.UtcNow:HH:mm:ss.fff}\n{Diagnostics().Length} bytes of server logs so far");
    }

    /// <summary>Makes <see cref="Tickets"/> sessions on <paramref name="from"/> and offers each to <paramref name="to"/>;
    /// checks that every connection worked and exactly <paramref name="resumed"/> sessions were resumed.</summary>
    public async Task AssertPairsAsync(string tls, WebServer from, WebServer to, int resumed, string what)
    {
        JsonElement report = await TlsClient.PairAsync(tls, Certificate.ServerName, from.Endpoint, to.Endpoint, Tickets);
        AssertResumed(report, resumed, $"TLS {tls}, {what}: {from.Kind} {from.Endpoint} to {to.Kind} {to.Endpoint}");
    }

    /// <summary>Checks a report of tls_client.py's <c>pair</c> (or one stage of it) of <see cref="Tickets"/> sessions:
    /// every connection worked, and exactly <paramref name="resumed"/> sessions were resumed, the others answered
    /// with full handshakes.</summary>
    public void AssertResumed(JsonElement report, int resumed, string what)
    {
        int pairs = report.Int("pairs");
        output.WriteLine($"{what}: {report.Int("resumed")} of {pairs} resumed, {report.Int("full")} full handshakes, {report.Int("failed")} failed");
        string details = $"{what}: expected {resumed} of {Tickets} resumed and no failure; report {report}\n{Diagnostics()}";
        Assert.True(pairs == Tickets, details);
        Assert.True(report.Int("failed") == 0, details);
        Assert.True(report.Int("resumed") == resumed, details);
        Assert.True(report.Int("full") == pairs - resumed, details);
    }

    /// <summary>Both servers' logs, for failure messages.</summary>
    public string Diagnostics() => string.Join('\n', _servers.Select(server => server.Diagnostics()));

    public async ValueTask DisposeAsync()
    {
        foreach (WebServer server in _servers)
        {
            await server.DisposeAsync();
        }

        _servers.Clear();
        _dir.Dispose();
    }
}
