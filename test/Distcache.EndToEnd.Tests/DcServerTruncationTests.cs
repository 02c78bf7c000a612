using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Distcache.Protocol;

namespace Distcache.EndToEnd.Tests;

/// <summary>
/// Messages that stop part-way, sent to the real dc_server: a header that promises more bytes than come, a header
/// cut short, each followed by silence, a half-close or a reset. The offending connection is closed promptly (well
/// before the default 5 s message deadline), the process keeps running, a fresh client is served, and the violation
/// count in the log rises. Also the fields whose high bit a hostile peer may set, and ids of the wrong size, which
/// are answered, not closed.
/// </summary>
public sealed partial class DcServerTruncationTests
{
    // Silence is caught by the message deadline (swept every 100 ms); short, so the test stays quick.
    private const string MessageTimeoutMs = "300";

    // A reset must be what ends the message, not the deadline while the test waits for the server to read it.
    private const string ResetMessageTimeoutMs = "60000";

    // How long a closing peer may take to be seen: seconds, for a busy machine, yet short of the default 5 s
    // message deadline, so that a close "at once" is still told apart from one at the deadline.
    private const int CloseWaitMs = 3000;

    public enum Ending
    {
        Silence,
        HalfClose,
        Reset,
    }

    private static void Report(string line) => TestContext.Current.TestOutputHelper?.WriteLine(line);

    [GeneratedRegex(@"protocol violations since start: (\d+)\)")]
    private static partial Regex ViolationCount();

    /// <summary>The running count the server last logged, 0 before the first violation.</summary>
    private static long LoggedViolations(Tool server) =>
        ViolationCount().Matches(server.Stderr).Select(m => long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Max();

    public static TheoryData<string, byte[], Ending> Partial()
    {
        var cases = new TheoryData<string, byte[], Ending>();
        var partials = new (string Name, byte[] Bytes)[]
        {
            ("a header promising 100 bytes, 10 sent", [.. Frames.Header(dataLength: 100), .. new byte[10]]),
            ("a header promising 2048 bytes, none sent", Frames.Header(operation: 0, complete: 0, dataLength: 2048)),
            ("a header cut after 7 bytes", Frames.Header(dataLength: 5)[..7]),
            ("a header cut after 1 byte", Frames.Header()[..1]),
        };
        foreach (var (name, bytes) in partials)
        {
            foreach (Ending ending in Enum.GetValues<Ending>())
            {
                cases.Add(name, bytes, ending);
            }
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(Partial))]
    public async Task A_message_that_stops_part_way_closes_only_that_connection_and_is_counted(string name, byte[] bytes, Ending ending)
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-msgtimeout", ending == Ending.Reset ? ResetMessageTimeoutMs : MessageTimeoutMs);
        await using var _ = server;
        using var bystander = Wire.Open(address);
        Assert.Equal([0], Wire.Add(bystander, [1, 2, 3], [4, 5, 6, 7, 8, 9]));
        long before = LoggedViolations(server);

        var offender = Wire.Open(address, timeoutMs: CloseWaitMs);
        var clock = Stopwatch.StartNew();
        offender.Send(bytes);
        switch (ending)
        {
            case Ending.Silence:
                Assert.True(Wire.IsClosedByPeer(offender), $"{name}: the silent connection was not closed within {CloseWaitMs} ms");
                Report($"{name}, then silence: closed after {clock.ElapsedMilliseconds} ms (-msgtimeout {MessageTimeoutMs})");
                break;
            case Ending.HalfClose:
                offender.Shutdown(SocketShutdown.Send);
                Assert.True(Wire.IsClosedByPeer(offender), $"{name}: the half-closed connection was not closed within {CloseWaitMs} ms");
                Report($"{name}, then a half-close: closed after {clock.ElapsedMilliseconds} ms");
                break;
            case Ending.Reset:
                // The server reads the partial message first (a reset discards what the kernel has not handed
                // over yet); then linger 0 makes the close send RST instead of FIN.
                await WaitUntilReadByServerAsync(offender, name);
                offender.LingerState = new LingerOption(true, 0);
                break;
        }

        offender.Dispose();

        // The count rises by one: the closing line says so (within a second of the end; generous for a busy machine).
        await server.WaitUntilAsync(() => LoggedViolations(server) == before + 1, TimeSpan.FromSeconds(5), $"{name}: the violation count rises");
        Report($"{name}, {ending}: violation logged {clock.ElapsedMilliseconds} ms after the bytes were sent");
        Assert.Matches("stream ended inside a message|message not complete within " + MessageTimeoutMs + " ms", server.Stderr);

        Assert.False(server.HasExited, name);
        Assert.True(Wire.Have(bystander, [1, 2, 3]), name);
        using var fresh = Wire.Open(address);
        Assert.Equal([4, 5, 6, 7, 8, 9], Wire.Get(fresh, [1, 2, 3]));

        // The total is printed at exit too, on its own line after the activity lines.
        server.Signal(Native.SIGTERM);
        await server.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, server.ExitCode);
        Assert.Contains($", {before + 1} protocol violations (", server.Stderr, StringComparison.Ordinal);
    }

    /// <summary>
    /// Waits until every byte sent on <paramref name="client"/> has reached the server's socket (none unacknowledged
    /// on ours) and the server has read them all (none queued on its side), as /proc/net/tcp shows for both ends.
    /// </summary>
    private static Task WaitUntilReadByServerAsync(Socket client, string name)
    {
        var local = (IPEndPoint)client.LocalEndPoint!;
        var remote = (IPEndPoint)client.RemoteEndPoint!;
        return Poll.UntilAsync(
            () => Queues(local.Port, remote.Port) is (0, _) && Queues(remote.Port, local.Port) is (_, 0),
            TimeSpan.FromSeconds(20),
            $"{name}: the server reads the partial message");
    }

    /// <summary>The send and receive queues of the established loopback socket from <paramref name="localPort"/> to
    /// <paramref name="remotePort"/>, or null while there is none.</summary>
    private static (long Tx, long Rx)? Queues(int localPort, int remotePort)
    {
        // "sl local_address rem_address st tx_queue:rx_queue ...", addresses as hex "0100007F:1F90", 01 established.
        foreach (string line in File.ReadLines("/proc/net/tcp").Skip(1))
        {
            string[] fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length > 4 && fields[3] == "01" && Port(fields[1]) == localPort && Port(fields[2]) == remotePort)
            {
                string[] queues = fields[4].Split(':');
                return (long.Parse(queues[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture), long.Parse(queues[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
            }
        }

        return null;

        static int Port(string address) => int.Parse(address.AsSpan(address.IndexOf(':') + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }

    /// <summary>A reset inside a message used to be logged only at the information level (hidden by default) and
    /// not counted, unlike an end of stream at the same place.</summary>
    [Fact]
    public Task Regression_a_reset_inside_a_message_is_logged_and_counted_as_a_violation() =>
        A_message_that_stops_part_way_closes_only_that_connection_and_is_counted("a header promising 100 bytes, 10 sent", [.. Frames.Header(dataLength: 100), .. new byte[10]], Ending.Reset);

    [Theory]
    [InlineData((ushort)0x8000)]
    [InlineData((ushort)0xFFFF)]
    public async Task A_frame_length_with_the_high_bit_set_closes_the_connection_at_once(ushort length)
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using var _ = server;
        using (var offender = Wire.Open(address, timeoutMs: CloseWaitMs))
        {
            var clock = Stopwatch.StartNew();
            offender.Send(Frames.Header(dataLength: length));
            Assert.True(Wire.IsClosedByPeer(offender), $"the connection was not closed within {CloseWaitMs} ms");
            Report($"data_len 0x{length:X4}: closed after {clock.ElapsedMilliseconds} ms");
        }

        await server.WaitUntilAsync(() => LoggedViolations(server) == 1, TimeSpan.FromSeconds(5), "the violation is counted");
        using var fresh = Wire.Open(address);
        Assert.False(Wire.Have(fresh, [1]));
    }

    [Fact]
    public async Task Thirty_two_bit_add_fields_with_the_high_bit_set_are_answered_and_the_connection_stays_open()
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using var _ = server;
        using var socket = Wire.Open(address);

        byte[] AddWith(uint timeout, uint idLength) => Wire.Ask(socket, w =>
        {
            var writer = new MessageWriter(w, false, 1, Operation.Add, 16);
            writer.WriteUInt32BigEndian(timeout);
            writer.WriteUInt32BigEndian(idLength);
            writer.Write([1, 2, 3, 4, 5, 6, 7, 8]);
            writer.Complete();
        });

        // Timeout first (102), then the id length against what follows (100), as PROTOCOL.md orders the checks.
        Assert.Equal([102], AddWith(0x8000_0000, 4));
        Assert.Equal([102], AddWith(0xFFFF_FFFF, 4));
        Assert.Equal([102], AddWith(0xFFFF_FFFF, 0xFFFF_FFFF));
        Assert.Equal([100], AddWith(1000, 0x8000_0000));
        Assert.Equal([100], AddWith(1000, 0xFFFF_FFFF));
        Assert.Equal([100], AddWith(1000, 0x8000_0004));
        Assert.Equal([0], Wire.Add(socket, [7], [8]));
        Assert.Equal(0, LoggedViolations(server));
        Assert.DoesNotContain("protocol violation", server.Stderr, StringComparison.Ordinal);
    }

    public static TheoryData<Operation, int> BadIds() => new()
    {
        { Operation.Get, 0 },
        { Operation.Remove, 0 },
        { Operation.Have, 0 },
        { Operation.Get, 65 },
        { Operation.Remove, 65 },
        { Operation.Have, 65 },
        { Operation.Get, 2048 },
        { Operation.Have, ProtocolConstants.MaxMessagePayload },
        { Operation.Remove, ProtocolConstants.MaxMessagePayload },
    };

    [Theory]
    [MemberData(nameof(BadIds))]
    public async Task Empty_and_over_long_ids_are_answered_NOTOK_like_1_5_1_and_the_connection_stays_open(Operation op, int idLength)
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using var _ = server;
        using var socket = Wire.Open(address);

        // A 65-byte id whose first 64 bytes name a live session must not find it (no truncation to 64).
        byte[] longest = [.. Enumerable.Range(0, 64).Select(i => (byte)i)];
        Assert.Equal([0], Wire.Add(socket, longest, [9, 9, 9, 9, 9]));
        byte[] id = [.. Enumerable.Range(0, idLength).Select(i => (byte)i)];

        byte[] answer = Wire.Ask(socket, w => Requests.WriteIdRequest(w, 1, op, id));
        Assert.Equal([(byte)StatusCode.NotOk], answer);

        // Still open, still serving, and the session it resembled is untouched.
        Assert.Equal([9, 9, 9, 9, 9], Wire.Get(socket, longest));
        Assert.Equal(0, LoggedViolations(server));
        Assert.False(server.HasExited);
    }
}
