using Distcache.Protocol;
using Distcache.Storage;
using Distcache.Storage.Tests;

namespace Distcache.Server.Tests;

/// <summary>1.5.1's activity line: its exact format, and when it is printed.</summary>
public sealed class ActivityReporterTests
{
    [Theory]
    [InlineData(0, 0, 0, 0, "Info, total operations =       0  (+     0), total sessions =     0  (=  0)")]
    [InlineData(1043, 211, 412, 37, "Info, total operations =    1043  (+   211), total sessions =   412  (+ 37)")]
    [InlineData(20, 1, 3, -1, "Info, total operations =      20  (+     1), total sessions =     3  (-  1)")]
    [InlineData(12345678, 123456, 123456, -1234, "Info, total operations = 12345678  (+ 123456), total sessions = 123456  (-1234)")]
    public void Format_matches_1_5_1_printf(long ops, long opsDelta, long sessions, long sessionsDelta, string expected) =>
        Assert.Equal(expected, ActivityReporter.Format(ops, opsDelta, sessions, sessionsDelta));

    [Fact]
    public async Task Prints_at_most_once_a_second_and_only_after_activity()
    {
        var clock = new ManualTimeProvider();
        var store = new MemorySessionStore(new MemorySessionStoreOptions { TimeProvider = clock });
        var server = new DistcacheServer(store);
        var output = new StringWriter();
        var reporter = new ActivityReporter(server, output, time: clock);
        await using var connection = new InProcess(server);

        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Null(await reporter.TickAsync());

        await connection.SendAsync(w => Requests.WriteAdd(w, 1, 60_000, [1], [1]));
        await connection.ReceiveMessageAsync();
        Assert.Equal("Info, total operations =       1  (+     1), total sessions =     1  (+  1)", await reporter.TickAsync());

        await connection.SendAsync(w => Requests.WriteIdRequest(w, 2, Operation.Have, [1]));
        await connection.ReceiveMessageAsync();
        clock.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Null(await reporter.TickAsync());
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal("Info, total operations =       2  (+     1), total sessions =     1  (=  0)", await reporter.TickAsync());

        // Expiry alone changes the session count, and that is worth a line.
        clock.Advance(TimeSpan.FromSeconds(61));
        Assert.Equal("Info, total operations =       2  (+     0), total sessions =     0  (-  1)", await reporter.TickAsync());
        Assert.Equal(3, output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public async Task Progress_prints_within_the_second_once_n_operations_have_passed()
    {
        var clock = new ManualTimeProvider();
        var server = new DistcacheServer(new MemorySessionStore(new MemorySessionStoreOptions { TimeProvider = clock }));
        var reporter = new ActivityReporter(server, new StringWriter(), progressEvery: 3, time: clock);
        await using var connection = new InProcess(server);
        for (uint i = 1; i <= 2; i++)
        {
            await connection.SendAsync(w => Requests.WriteIdRequest(w, i, Operation.Have, [1]));
            await connection.ReceiveMessageAsync();
        }

        Assert.Null(await reporter.TickAsync());
        await connection.SendAsync(w => Requests.WriteIdRequest(w, 3, Operation.Have, [1]));
        await connection.ReceiveMessageAsync();
        Assert.NotNull(await reporter.TickAsync());
    }
}
