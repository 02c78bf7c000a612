using System.Diagnostics;

namespace Distcache.EndToEnd.Tests;

/// <summary>-idle on the real dc_server: a silent connection is closed after the idle time, a busy one is not, and
/// an idle close is counted as such, not as a protocol violation.</summary>
public sealed class DcServerIdleTests
{
    [Fact]
    public async Task An_idle_connection_is_closed_after_idle_ms_and_a_busy_one_stays_open()
    {
        // The busy connection is silent for each 100 ms look at the idle one, and for as long as the machine stalls
        // either process; an idle limit of seconds keeps such a stall from closing it too.
        var (server, address) = await ServerProcess.StartTcpAsync("-idle", "2000");
        await using var _ = server;
        using var busy = Wire.Open(address);

        // Started before the idle connection exists, so the close can never look earlier than the limit.
        var clock = Stopwatch.StartNew();
        using var idle = Wire.Open(address, timeoutMs: 100);
        bool closed = false;
        while (!closed && clock.Elapsed < TimeSpan.FromSeconds(15))
        {
            Assert.False(Wire.Have(busy, [1]));
            closed = Wire.IsClosedByPeer(idle);
        }

        long closedMs = clock.ElapsedMilliseconds;
        TestContext.Current.TestOutputHelper?.WriteLine($"idle connection closed after {closedMs} ms (-idle 2000, sweep 100 ms)");
        Assert.True(closed, "the idle connection was not closed within 15 s");
        Assert.InRange(closedMs, 1900, 10_000);
        Assert.False(Wire.Have(busy, [1]));

        server.Signal(Native.SIGTERM);
        await server.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains("0 protocol violations (0 message timeouts), 1 idle timeouts", server.Stderr, StringComparison.Ordinal);
    }
}
