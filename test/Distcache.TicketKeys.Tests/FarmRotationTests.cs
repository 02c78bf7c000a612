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

    private const int Tickets = Farm.Tickets;
    private const string ServerName = Certificate.ServerName;
    private static readonly string[] Versions = ["1.2", "1.3"];
    private static readonly TimeSpan ClientLimit = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan RotationLimit = TimeSpan.FromSeconds(Period + 15);

    [Theory(Timeout = 180_000)]
    [InlineData(ServerKind.Nginx)]
    [InlineData(ServerKind.HAProxy)]
    public async Task Tickets_resume_across_the_farm_before_during_and_after_a_rotation_and_with_the_cache_down(ServerKind kind)
    {
        ServerKinds.Require(kind);
        await using var farm = new Farm(certificate, output);
        var (cache, address) = await ServerProcess.StartTcpAsync();
        await using var _ = cache;

        // Every phase below must fall inside one period: start just after a boundary.
        await Periods.StartAsync(Period, latest: TimeSpan.FromSeconds(1), after: TimeSpan.FromMilliseconds(100));
        var tools = new List<Tool>();
        try
        {
            (WebServer first, WebServer second) = await farm.StartTwoAsync(kind, kind, server => Farm.WriteKeysOnceAsync(server, address, Period), "keys from dc_ticketkeys");
            foreach (WebServer server in new[] { first, second })
            {
                tools.Add(Farm.StartKeyService(server, address, Period));
            }

            // 1. Before any rotation: each host's tickets resume on the other.
            foreach (string tls in Versions)
            {
                await farm.AssertPairsAsync(tls, first, second, Tickets, "before the rotation");
                await farm.AssertPairsAsync(tls, second, first, Tickets, "before the rotation");
            }

            // 2. Tickets issued now, offered once both hosts have rotated: their key is then the previous one.
            var issuedBefore = Versions.Select(tls => (Tls: tls, Pairs: TlsClient.StartPairsInStages(tls, ServerName, first.Endpoint, second.Endpoint, Tickets, stages: 1, farm.Directory))).ToList();
            try
            {
                foreach (var (_, pairs) in issuedBefore)
                {
                    await pairs.WaitUntilWaitingAsync(1, ClientLimit);
                }

                await farm.RotationAsync([first, second], tools, RotationLimit);
                foreach (var (tls, pairs) in issuedBefore)
                {
                    pairs.Release(1);
                    JsonElement report = await pairs.ReportAsync(ClientLimit);
                    farm.AssertResumed(report.GetProperty("stages")[0], Tickets, $"TLS {tls}, issued before the rotation, offered after it: {first.Endpoint} to {second.Endpoint}");
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
                await farm.AssertPairsAsync(tls, first, second, Tickets, "after the rotation");
                await farm.AssertPairsAsync(tls, second, first, Tickets, "after the rotation");
            }

            // 4. The cache goes away. The servers keep serving and resuming with the keys they have, and at the next
            // rotation the hosts move to the next key they already hold.
            await cache.DisposeAsync();
            foreach (string tls in Versions)
            {
                await farm.AssertPairsAsync(tls, first, second, Tickets, "cache down");
            }

            await farm.RotationAsync([first, second], tools, RotationLimit);
            Assert.All(tools, tool => Assert.Contains("Warning, cannot reach the cache at " + address, tool.Stderr, StringComparison.Ordinal));
            foreach (string tls in Versions)
            {
                await farm.AssertPairsAsync(tls, first, second, Tickets, "cache down, after the next rotation");
                await farm.AssertPairsAsync(tls, second, first, Tickets, "cache down, after the next rotation");
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
}
