using System.Diagnostics;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Distcache.Protocol;

namespace Distcache.EndToEnd.Tests;

/// <summary>
/// The limits that keep one peer from exhausting the real dc_server: the connection cap, the message deadline
/// (slowloris), the write timeout (a client that never reads) and the store's byte bound under an ADD flood.
/// </summary>
public sealed partial class DcServerLimitTests
{
    private static void Report(string line) => TestContext.Current.TestOutputHelper?.WriteLine(line);

    private static bool Served(Socket socket)
    {
        try
        {
            return !Wire.Have(socket, [42]);
        }
        catch (Exception e) when (e is SocketException or EndOfStreamException)
        {
            return false;
        }
    }

    [GeneratedRegex(@"Refused (\d+) connections")]
    private static partial Regex RefusedLine();

    [Fact]
    public async Task Connections_beyond_maxconns_are_closed_at_once_and_the_others_keep_working()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-maxconns", "5");
        await using var _ = server;
        var clients = new List<Socket>();
        try
        {
            for (int i = 0; i < 5; i++)
            {
                clients.Add(Wire.Open(address));
                Assert.True(Served(clients[i]), $"client {i} is served");
            }

            // The sixth is accepted and closed straight away: end of stream, not a wait in the backlog. Nothing
            // else would ever close it (no idle limit, no message started), so seeing the end at all is the proof;
            // the wait is long for a busy machine.
            var clock = Stopwatch.StartNew();
            using (var refused = Wire.Open(address, timeoutMs: 5000))
            {
                Assert.True(Wire.IsClosedByPeer(refused), "the sixth connection was not closed within 5 s");
            }

            Report($"refused connection closed after {clock.ElapsedMilliseconds} ms");

            // A burst of refusals is logged as at most a line a second, with the count.
            for (int i = 0; i < 9; i++)
            {
                using var refused = Wire.Open(address, timeoutMs: 5000);
                Assert.True(Wire.IsClosedByPeer(refused));
            }

            // The clock ran from before the first refusal to after the last: a line at the first, at most one per
            // second of the burst, and the rest after it. One line per refusal would be ten.
            double burstSeconds = clock.Elapsed.TotalSeconds;

            await server.WaitUntilAsync(
                () => RefusedLine().Matches(server.Stderr).Sum(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)) == 10,
                TimeSpan.FromSeconds(5),
                "ten refusals in the log");
            int lines = RefusedLine().Count(server.Stderr);
            Report($"10 refusals logged in {lines} lines, the burst took {burstSeconds:F1} s");
            Assert.InRange(lines, 1, 2 + (int)Math.Ceiling(burstSeconds));
            Assert.Contains("the limit is 5", server.Stderr, StringComparison.Ordinal);

            foreach (var client in clients)
            {
                Assert.True(Served(client), "an existing client was affected by the refusals");
            }

            // Once one leaves, a newcomer gets its slot (the server notices the close within milliseconds).
            clients[0].Dispose();
            clients.RemoveAt(0);
            bool admitted = false;
            for (int attempt = 0; attempt < 50 && !admitted; attempt++)
            {
                var fresh = Wire.Open(address, timeoutMs: 1000);
                if (Served(fresh))
                {
                    clients.Add(fresh);
                    admitted = true;
                }
                else
                {
                    fresh.Dispose();
                    await Task.Delay(50, TestContext.Current.CancellationToken);
                }
            }

            Assert.True(admitted, "no connection admitted after one closed");
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_slowloris_header_is_closed_within_the_message_deadline()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-msgtimeout", "500");
        await using var _ = server;
        using var bystander = Wire.Open(address);
        var header = new System.Buffers.ArrayBufferWriter<byte>();
        // 45 bytes trickled one per 100 ms: 4.4 s, far beyond the deadline, so a deadline that each byte moved on
        // would never close it, while a busy machine's late sweep still fits in the bound below.
        Requests.WriteIdRequest(header, 1, Operation.Have, new byte[31]);
        byte[] bytes = header.WrittenSpan.ToArray();

        using var slow = Wire.Open(address, timeoutMs: 100);
        var clock = Stopwatch.StartNew();
        bool closed = false;
        for (int i = 0; i < bytes.Length - 1 && !closed; i++)
        {
            try
            {
                slow.Send(bytes.AsSpan(i, 1));
            }
            catch (SocketException)
            {
                closed = true;
                break;
            }

            // Waits about 100 ms for the byte's gap, noticing the close meanwhile.
            closed = Wire.IsClosedByPeer(slow);
        }

        long closedMs = clock.ElapsedMilliseconds;
        Report($"slowloris closed after {closedMs} ms (deadline 500 ms, sweep 100 ms)");
        Assert.True(closed, "the trickling connection was not closed");
        Assert.InRange(closedMs, 450, 2500);
        Assert.True(Served(bystander));
        await server.WaitUntilAsync(() => server.Stderr.Contains("message not complete within 500 ms", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "the timeout is logged");
    }

    [Fact]
    public async Task A_client_that_never_reads_is_dropped_and_others_keep_their_latency()
    {
        // The non-reader is held for seconds, so that a busy machine's slow GET is still told apart from one that
        // waited for the drop.
        var (server, address) = await ServerProcess.StartTcpAsync("-writetimeout", "5000");
        await using var _ = server;
        using var good = Wire.Open(address);
        byte[] id = [7, 7, 7];
        byte[] session = new byte[30 * 1024];
        Random.Shared.NextBytes(session);
        Assert.Equal([0], Wire.Add(good, id, session));

        // 3000 GETs of a 30 KiB session ask for 90 MiB: far beyond what the socket buffers hold, so the server's
        // flush blocks once they are full.
        using var greedy = Wire.Open(address);
        var requests = new System.Buffers.ArrayBufferWriter<byte>();
        for (uint i = 0; i < 3000; i++)
        {
            Requests.WriteIdRequest(requests, i, Operation.Get, id);
        }

        var clock = Stopwatch.StartNew();
        greedy.Send(requests.WrittenSpan);

        double worstMs = 0;
        int rounds = 0;
        while (!server.Stderr.Contains("Dropping", StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            var round = Stopwatch.StartNew();
            Assert.Equal(session, Wire.Get(good, id));
            worstMs = Math.Max(worstMs, round.Elapsed.TotalMilliseconds);
            rounds++;
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        long droppedMs = clock.ElapsedMilliseconds;
        Report($"non-reader dropped after ~{droppedMs} ms (writetimeout 5000 ms); other client: {rounds} GETs, worst {worstMs:F1} ms");
        Assert.Contains("has not read its responses for 5000 ms", server.Stderr, StringComparison.Ordinal);
        Assert.InRange(droppedMs, 4900, 12_000);
        // Measured 4-100 ms on a loaded 2-core machine; the bound stays well under the 5000 ms the non-reader is held.
        Assert.InRange(worstMs, 0, 2500);

        // The dropped connection was reset: reading drains what the kernel had and then fails or ends.
        greedy.ReceiveTimeout = 2000;
        var sink = new byte[1 << 16];
        bool ended = false;
        try
        {
            for (int i = 0; i < 10_000 && !ended; i++)
            {
                ended = greedy.Receive(sink) == 0;
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            ended = true;
        }

        Assert.True(ended, "the non-reading connection was not closed");
        Assert.Equal(session, Wire.Get(good, id));
    }

    [Fact]
    public async Task A_flood_of_unique_maximum_size_adds_stays_within_the_memory_bound()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-memory", "8M", "-sessions", "0");
        await using var _ = server;
        long before = RssKiB(server.Pid);
        using var socket = Wire.Open(address);
        const int count = 2000;
        const int batch = 50;
        byte[] data = new byte[ProtocolConstants.MaxMessagePayload - 8 - 32];
        var requests = new System.Buffers.ArrayBufferWriter<byte>();
        for (int start = 0; start < count; start += batch)
        {
            requests.ResetWrittenCount();
            for (int i = start; i < start + batch; i++)
            {
                byte[] id = new byte[32];
                BitConverter.TryWriteBytes(id, i);
                data[0] = (byte)i;
                Requests.WriteAdd(requests, (uint)i, 600_000, id, data);
            }

            socket.Send(requests.WrittenSpan);
            // Each ADD answer is one frame with a one-byte status; all must be 0 (stored, evicting as needed).
            const int answer = ProtocolConstants.FrameHeaderSize + 1;
            byte[] answers = Wire.ReceiveExactly(socket, answer * batch);
            for (int i = 0; i < batch; i++)
            {
                Assert.Equal(0, answers[(answer * i) + ProtocolConstants.FrameHeaderSize]);
            }
        }

        long after = RssKiB(server.Pid);
        Report($"VmRSS before {before / 1024} MiB, after {count} x {data.Length} B ADDs with -memory 8M: {after / 1024} MiB");

        // 64 MiB of sessions went in; 8 MiB may stay. The bounds leave room for the GC's heap headroom and pooled
        // buffers, but not for the flood itself (measured: 42 MiB before, 54 MiB after).
        Assert.InRange(after - before, long.MinValue, 40 * 1024);
        Assert.InRange(after, 0, 120 * 1024);
        byte[] lastId = new byte[32];
        BitConverter.TryWriteBytes(lastId, count - 1);
        byte[] got = Wire.Get(socket, lastId);
        Assert.Equal(data.Length, got.Length);
        Assert.Equal(unchecked((byte)(count - 1)), got[0]);
        byte[] firstId = new byte[32];
        Assert.False(Wire.Have(socket, firstId), "the first session should have been evicted");
    }

    private static long RssKiB(int pid)
    {
        foreach (string line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException("no VmRSS");
    }
}
