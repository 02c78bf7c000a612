using System.Buffers;
using System.Diagnostics;
using Distcache.Protocol;
using Distcache.Storage;

namespace Distcache.Server.Tests;

/// <summary>The per-connection timeouts, enforced by the server's shared sweep, over in-memory pipes.</summary>
public sealed class LimitTests
{
    private static DistcacheServer NewServer(int messageMs = 0, int idleMs = 0, int writeMs = 0) =>
        new(new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 0 }), new DistcacheServerOptions
        {
            MessageTimeout = TimeSpan.FromMilliseconds(messageMs),
            IdleTimeout = TimeSpan.FromMilliseconds(idleMs),
            WriteTimeout = TimeSpan.FromMilliseconds(writeMs),
            SweepInterval = TimeSpan.FromMilliseconds(50),
        });

    private static byte[] Bytes(Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        return buffer.WrittenSpan.ToArray();
    }

    [Fact]
    public async Task A_trickled_message_is_closed_at_the_deadline_despite_the_activity()
    {
        var server = NewServer(messageMs: 500);
        await using var client = new InProcess(server);
        byte[] request = Bytes(w => Requests.WriteIdRequest(w, 7, Operation.Have, [1, 2, 3]));
        var clock = Stopwatch.StartNew();

        // One byte every 300 ms: the 17-byte request would need 5 s, each byte well within any idle limit. The
        // close must come long before the last byte, however a busy machine stretches the pauses.
        int sent = 0;
        for (; sent < request.Length && !client.Served.IsCompleted; sent++)
        {
            await client.SendAsync([request[sent]]);
            await Task.WhenAny(client.Served, Task.Delay(300, TestContext.Current.CancellationToken));
        }

        ProtocolViolation? violation = await client.Served.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        long elapsed = clock.ElapsedMilliseconds;
        Assert.Equal(ProtocolViolationKind.TruncatedMessage, violation?.Kind);
        Assert.True(sent < request.Length, "the whole request went in before the close");
        Assert.InRange(elapsed, 450, 4000);
        Assert.Equal(1, server.Statistics.MessageTimeouts);
        Assert.Equal(1, server.Statistics.ProtocolViolations);
    }

    [Fact]
    public async Task Complete_messages_reset_the_message_clock()
    {
        var server = NewServer(messageMs: 2000);
        await using var client = new InProcess(server);

        // Each request arrives in two halves 100 ms apart: every message is within its deadline, even with a pause
        // stretched by a busy machine, though the connection spends 2.5 s in all with a message in progress, and
        // more than twice the deadline since its first byte.
        for (uint i = 0; i < 25; i++)
        {
            byte[] request = Bytes(w => Requests.WriteIdRequest(w, i, Operation.Have, [1, 2, 3]));
            await client.SendAsync(request[..8]);
            await Task.Delay(100, TestContext.Current.CancellationToken);
            await client.SendAsync(request[8..]);
            Assert.Equal(i, (await client.ReceiveMessageAsync()).Uid);
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }

        Assert.False(client.Served.IsCompleted);
        Assert.Equal(0, server.Statistics.MessageTimeouts);
    }

    [Fact]
    public async Task An_idle_connection_is_closed_after_the_idle_timeout_and_an_active_one_is_not()
    {
        var server = NewServer(idleMs: 1500);
        await using var idle = new InProcess(server);
        await using var active = new InProcess(server);
        var clock = Stopwatch.StartNew();

        // The active connection asks every 100 ms for twice the idle limit, and on until the idle one is closed:
        // a busy machine may hold up the sweep, and a pause in the asking must stay well within the limit.
        for (uint i = 0; clock.ElapsedMilliseconds < 3000 || !idle.Served.IsCompleted; i++)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), "the idle connection was not closed");
            await active.SendAsync(w => Requests.WriteIdRequest(w, i, Operation.Have, [1]));
            Assert.Equal(i, (await active.ReceiveMessageAsync()).Uid);
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }

        Assert.Null(await idle.Served);
        Assert.False(active.Served.IsCompleted);
        Assert.Equal(1, server.Statistics.IdleTimeouts);
        Assert.Equal(0, server.Statistics.ProtocolViolations);
    }

    [Fact]
    public async Task Idle_connections_stay_open_by_default()
    {
        var server = NewServer(messageMs: 300);
        await using var client = new InProcess(server);
        await Task.Delay(700, TestContext.Current.CancellationToken);
        Assert.False(client.Served.IsCompleted);
        await client.SendAsync(w => Requests.WriteIdRequest(w, 1, Operation.Have, [1]));
        Assert.Equal(1u, (await client.ReceiveMessageAsync()).Uid);
    }

    [Fact]
    public async Task At_the_deadline_a_connection_mid_message_is_closed_and_an_idle_one_is_not()
    {
        var server = NewServer(messageMs: 400);
        await using var midMessage = new InProcess(server);
        await using var idle = new InProcess(server);
        await midMessage.SendAsync([0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00]);
        ProtocolViolation? violation = await midMessage.Served.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        Assert.Equal(new ProtocolViolation(ProtocolViolationKind.TruncatedMessage, 7), violation);
        await Task.Delay(200, TestContext.Current.CancellationToken);
        Assert.False(idle.Served.IsCompleted);
        await idle.SendAsync(w => Requests.WriteIdRequest(w, 9, Operation.Have, [1]));
        Assert.Equal(9u, (await idle.ReceiveMessageAsync()).Uid);
        Assert.Equal(1, server.Statistics.MessageTimeouts);
    }

    [Fact]
    public async Task A_client_that_never_reads_is_dropped_after_the_write_timeout()
    {
        var server = NewServer(writeMs: 300);
        await using var reader = new InProcess(server);
        await using var nonReader = new InProcess(server);
        byte[] session = new byte[30_000];
        await reader.SendAsync(w => Requests.WriteAdd(w, 1, 60_000, [5], session));
        Assert.Equal([0], (await reader.ReceiveMessageAsync()).Payload);

        // Far more than the pipe holds before it pauses the writer (64 KiB): the server's flush blocks.
        var clock = Stopwatch.StartNew();
        await nonReader.SendAsync(w =>
        {
            for (uint i = 0; i < 100; i++)
            {
                Requests.WriteIdRequest(w, i, Operation.Get, [5]);
            }
        });
        Assert.Null(await nonReader.Served.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken));
        Assert.InRange(clock.ElapsedMilliseconds, 250, 2000);
        Assert.Equal(1, server.Statistics.WriteTimeouts);

        // The reading client is unaffected.
        await reader.SendAsync(w => Requests.WriteIdRequest(w, 2, Operation.Get, [5]));
        Assert.Equal(session, (await reader.ReceiveMessageAsync()).Payload);
    }

    [Fact]
    public async Task A_slow_reader_within_the_write_timeout_gets_every_response()
    {
        var server = NewServer(messageMs: 2000, writeMs: 10_000);
        await using var client = new InProcess(server);
        byte[] session = new byte[30_000];
        await client.SendAsync(w => Requests.WriteAdd(w, 1, 60_000, [5], session));
        Assert.Equal([0], (await client.ReceiveMessageAsync()).Payload);
        byte[] last = Bytes(w => Requests.WriteIdRequest(w, 99, Operation.Have, [5]));
        await client.SendAsync(w =>
        {
            for (uint i = 0; i < 20; i++)
            {
                Requests.WriteIdRequest(w, i, Operation.Get, [5]);
            }

            w.Write(last.AsSpan(0, 5));
        });

        // The flushes stay blocked far longer than the message timeout, with the start of a message already in:
        // that does not count against the message, since the server is not reading while it waits to write.
        await Task.Delay(3000, TestContext.Current.CancellationToken);
        for (uint i = 0; i < 20; i++)
        {
            Assert.Equal(i, (await client.ReceiveMessageAsync()).Uid);
        }

        // The message's clock starts when the last flush ends. The rest comes a few sweeps later, when a clock
        // started at the read would have expired it, and still well within the timeout on a busy machine.
        await Task.Delay(200, TestContext.Current.CancellationToken);
        await client.SendAsync(last[5..]);
        Assert.Equal(99u, (await client.ReceiveMessageAsync()).Uid);

        Assert.False(client.Served.IsCompleted);
        Assert.Equal(0, server.Statistics.WriteTimeouts + server.Statistics.MessageTimeouts);
    }
}
