using System.Text.Json;
using Distcache.TicketKeys.Tests.Support;

namespace Distcache.TicketKeys.Tests;

/// <summary>
/// The whole of it, as a farm runs it: dc_server, and on each of two hosts (127.0.0.1 and 127.0.0.2) a web server
/// (Debian's nginx or HAProxy) whose ticket keys only dc_ticketkeys writes, running as a service with the server's
/// reload command. A real TLS client takes tickets on one host and offers them to the other, with TLS 1.2 and 1.3:
/// before a rotation, across it (tickets issued before it, offered after it), after it, and with the cache down
/// through the next rotation.
/// </summary>
public sealed class FarmRotationTests(Certificate certificate, ITestOutputHelper output)
{
    /// <summary>The period: short enough for two rotations in a test, long enough for each phase to fit in one period
    /// on a loaded machine.</summary>
    private const int Period = 20;

    private const int Tickets = 10;
    private const string ServerName = Certificate.ServerName;
    private static readonly string[] Versions = ["1.2", "1.3"];
    private static readonly TimeSpan ClientLimit = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan RotationLimit = TimeSpan.FromSeconds(Period + 15);

    [Theory(Timeout = 180_000)]
    [InlineData(ServerKind.Nginx)]
    [InlineData(ServerKind.HAProxy)]
    public async Task Tickets_resume_across_the_farm_before_during_and_after_a_rotation_and_with_the_cache_down(ServerKind kind)
    {
        Assert.SkipUnless(File.Exists(kind == ServerKind.Nginx ? NginxServer.Binary : HAProxyServer.Binary), $"{kind} is not installed (scripts/test.sh installs it)");
        await using var farm = new Farm(certificate, output);
        var (cache, address) = await ServerProcess.StartTcpAsync();
        await using var _ = cache;

        // Every phase below must fall inside one period: start just after a boundary.
        await Periods.StartAsync(Period, latest: TimeSpan.FromSeconds(1), after: TimeSpan.FromMilliseconds(100));
        var tools = new List<Tool>();
        try
        {
            (TicketServer first, TicketServer second) = await farm.StartTwoAsync(kind, kind, async server =>
            {
                // The keys the servers start with: one pass, before there is a server to reload.
                if (server is NginxServer nginx)
                {
                    Directory.CreateDirectory(nginx.KeyDirectory);
                }

                await using Tool once = await Tool.RunAsync(TimeSpan.FromSeconds(30), "dc_ticketkeys", [.. Flags(server, address), "-once"]);
                Assert.True(once.ExitCode == 0, once.Output);
            }, "keys from dc_ticketkeys");
            foreach (TicketServer server in new[] { first, second })
            {
                tools.Add(Tool.Start("dc_ticketkeys", [.. Flags(server, address), "-reload", server.ReloadCommand, "-retry", "1", "-timeout", "500"]));
            }

            // 1. Before any rotation: each host's tickets resume on the other.
            foreach (string tls in Versions)
            {
                await AssertPairsAsync(farm, tls, first, second, "before the rotation");
                await AssertPairsAsync(farm, tls, second, first, "before the rotation");
            }

            // 2. Tickets issued now, offered once both hosts have rotated: their key is then the previous one.
            var issuedBefore = Versions.Select(tls => (Tls: tls, Pairs: TlsClient.StartPairsInStages(tls, ServerName, first.Endpoint, second.Endpoint, Tickets, stages: 1, farm.Directory))).ToList();
            try
            {
                foreach (var (_, pairs) in issuedBefore)
                {
                    await pairs.WaitUntilWaitingAsync(1, ClientLimit);
                }

                await RotationAsync(farm, [first, second], tools);
                foreach (var (tls, pairs) in issuedBefore)
                {
                    pairs.Release(1);
                    JsonElement report = await pairs.ReportAsync(ClientLimit);
                    AssertResumed(farm, report.GetProperty("stages")[0], $"TLS {tls}, issued before the rotation, offered after it: {first.Endpoint} to {second.Endpoint}");
                }
            }
            finally
            {
                foreach (var (_, pairs) in issuedBefore)
                {
                    await pairs.DisposeAsync();
                }
            }

            // 3. After the rotation, new tickets resume everywhere.
            foreach (string tls in Versions)
            {
                await AssertPairsAsync(farm, tls, first, second, "after the rotation");
                await AssertPairsAsync(farm, tls, second, first, "after the rotation");
            }

            // 4. The cache goes away. The servers keep serving and resuming with the keys they have, and at the next
            // rotation the hosts move to the next key they already hold.
            await cache.DisposeAsync();
            foreach (string tls in Versions)
            {
                await AssertPairsAsync(farm, tls, first, second, "cache down");
            }

            await RotationAsync(farm, [first, second], tools);
            Assert.All(tools, tool => Assert.Contains("Warning, cannot reach the cache at " + address, tool.Stderr, StringComparison.Ordinal));
            foreach (string tls in Versions)
            {
                await AssertPairsAsync(farm, tls, first, second, "cache down, after the next rotation");
                await AssertPairsAsync(farm, tls, second, first, "cache down, after the next rotation");
            }
        }
        finally
        {
            foreach (Tool tool in tools)
            {
                output.WriteLine(tool.Stderr);
                await tool.DisposeAsync();
            }
        }
    }

    private static string[] Flags(TicketServer server, string address) =>
    [
        "-connect", address, "-period", Period.ToString(System.Globalization.CultureInfo.InvariantCulture),
        "-state", Path.Combine(server.Directory, "dc_ticketkeys.state"),
        .. server is NginxServer nginx ? ["-nginx", nginx.KeyDirectory] : new[] { "-haproxy", ((HAProxyServer)server).KeyFile },
    ];

    /// <summary>Waits for the next rotation: each host's dc_ticketkeys rewrites its files and runs the reload, and the
    /// server's new workers (with the new keys) take over.</summary>
    private async Task RotationAsync(Farm farm, TicketServer[] servers, List<Tool> tools)
    {
        var marks = servers.Select(s => s.Mark()).ToArray();
        int[] reloadsBefore = [.. tools.Select(t => Periods.Count(t.Stderr, "Info, ran the reload command"))];
        for (int i = 0; i < tools.Count; i++)
        {
            Tool tool = tools[i];
            int before = reloadsBefore[i];
            await tool.WaitUntilAsync(() => Periods.Count(tool.Stderr, "Info, ran the reload command") > before, RotationLimit, "the reload after a rotation");
            await servers[i].WaitReloadedSinceAsync(marks[i]);
        }

        output.WriteLine($"rotated at {DateTimeOffset.UtcNow:HH:mm:ss.fff}\n{farm.Diagnostics().Length} bytes of server logs so far");
    }

    private async Task AssertPairsAsync(Farm farm, string tls, TicketServer from, TicketServer to, string what)
    {
        JsonElement report = await TlsClient.PairAsync(tls, ServerName, from.Endpoint, to.Endpoint, Tickets);
        AssertResumed(farm, report, $"TLS {tls}, {what}: {from.Endpoint} to {to.Endpoint}");
    }

    private void AssertResumed(Farm farm, JsonElement report, string what)
    {
        output.WriteLine($"{what}: {report.Int("resumed")} of {report.Int("pairs")} resumed, {report.Int("full")} full handshakes, {report.Int("failed")} failed");
        Assert.True(report.Int("pairs") == Tickets && report.Int("resumed") == Tickets && report.Int("failed") == 0, $"{what}: {report}\n{farm.Diagnostics()}");
    }
}
