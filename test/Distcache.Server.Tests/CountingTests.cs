using Distcache.Protocol;
using Distcache.Storage;
using Microsoft.Extensions.Logging;

namespace Distcache.Server.Tests;

/// <summary>Each connection that breaks the protocol is counted (and logged) exactly once, however it ends.</summary>
public sealed class CountingTests
{
    /// <summary>
    /// A connection whose stream ended inside a message was counted and logged by its own loop, and then, if the
    /// sweep looked at it before the loop had unregistered it, a second time as a message timeout (seen on a loaded
    /// machine, where writing the log line is slow). A logger that takes its time makes that window wide here.
    /// </summary>
    [Fact]
    public async Task Regression_a_message_cut_short_while_the_sweep_runs_is_counted_and_logged_once()
    {
        const int Connections = 10;
        var logger = new SlowLogger();
        var server = new DistcacheServer(
            new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 0 }),
            new DistcacheServerOptions { MessageTimeout = TimeSpan.FromMilliseconds(20), SweepInterval = TimeSpan.FromMilliseconds(5) },
            logger);
        byte[] partial = [0x00, 0x11, 0x00, 0x00, 0, 0, 0, 0, 1, 0, (byte)Operation.Get, 1, 0, 100, 1, 2, 3];

        var clients = Enumerable.Range(0, Connections).Select(_ => new InProcess(server)).ToList();
        try
        {
            await Task.WhenAll(clients.Select(async client =>
            {
                await client.SendAsync(partial);
                client.CloseClientSide();
                ProtocolViolation? violation = await client.Served.WaitAsync(TimeSpan.FromSeconds(20));
                Assert.Equal(ProtocolViolationKind.TruncatedMessage, violation?.Kind);
            }));

            // Whether a connection's own loop or the sweep ends it is the scheduler's choice: with pool threads held
            // in the logger, the loop may read the end of the stream only after the 20 ms. Either way, once.
            Assert.Equal(Connections, server.Statistics.ProtocolViolations);
            Assert.Equal(Connections, logger.Violations);
        }
        finally
        {
            foreach (InProcess client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    /// <summary>Counts the violation lines and spends 100 ms writing each, as a console under load may.</summary>
    private sealed class SlowLogger : ILogger<DistcacheServer>
    {
        private int _violations;

        public int Violations => Volatile.Read(ref _violations);

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (formatter(state, exception).Contains("protocol violation", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref _violations);
                Thread.Sleep(100);
            }
        }
    }
}
