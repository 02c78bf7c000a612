using System.Net.Sockets;
using System.Text.Json;
using Distcache.Protocol;

namespace Distcache.Tools.Tests;

/// <summary>dc_snoop between real tools: traffic passes unchanged and every message is reported.</summary>
public sealed class DcSnoopTests
{
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(120);
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Persistent_dc_test_through_the_snoop_passes_and_every_message_is_listed_with_its_answer()
    {
        var (server, serverAddress) = await ServerProcess.StartTcpAsync();
        await using (server)
        await using (var snoop = await StartSnoopAsync(serverAddress, "-json"))
        {
            const int Ops = 300;
            await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", "-connect", snoop.Address, "-persistent", "-sessions", "12", "-ops", Ops.ToString(System.Globalization.CultureInfo.InvariantCulture), "-withcert", "3");
            Assert.True(test.ExitCode == 0, test.Stdout + test.Stderr);

            SnoopOutput output = await snoop.WaitForClosedConnectionsAsync(1);
            long connection = Assert.Single(output.BusyConnections());
            List<JsonElement> events = output.Of(connection);
            Assert.Equal("open", SnoopOutput.Text(events[0], "type"));
            Assert.Equal("close", SnoopOutput.Text(events[^1], "type"));
            List<JsonElement> messages = events[1..^1];
            Assert.Equal(2 * Ops, messages.Count);

            // Each request is followed at once by its response (dc_test -persistent waits for each answer), with the
            // same uid and operation and a measured time; the uids are all different.
            var uids = new HashSet<long>();
            var counts = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < messages.Count; i += 2)
            {
                JsonElement request = messages[i];
                JsonElement response = messages[i + 1];
                Assert.Equal("request", SnoopOutput.Text(request, "type"));
                Assert.Equal("->", SnoopOutput.Text(request, "dir"));
                Assert.Equal("response", SnoopOutput.Text(response, "type"));
                Assert.Equal("<-", SnoopOutput.Text(response, "dir"));
                Assert.Equal(request.GetProperty("uid").GetInt64(), response.GetProperty("uid").GetInt64());
                Assert.Equal(SnoopOutput.Text(request, "op"), SnoopOutput.Text(response, "op"));
                Assert.True(response.GetProperty("latency_ms").GetDouble() >= 0);
                Assert.True(uids.Add(request.GetProperty("uid").GetInt64()));
                counts[SnoopOutput.Text(request, "op")] = counts.GetValueOrDefault(SnoopOutput.Text(request, "op")) + 1;
            }

            Assert.Equal(Ops, counts.Values.Sum());
            Assert.All(new[] { "ADD", "GET", "REMOVE", "HAVE" }, op => Assert.True(counts.GetValueOrDefault(op) > 0, $"no {op} was listed"));

            // The ids the snoop decoded replay into a consistent cache: the snoop found every id where it is
            // (inside the ADD payload, or the whole payload) and matched every status to its request.
            ReplayAgainstModel(messages);

            JsonElement close = events[^1];
            Assert.Equal(Ops, close.GetProperty("requests").GetInt64());
            Assert.Equal(Ops, close.GetProperty("responses").GetInt64());
            Assert.Equal("closed", SnoopOutput.Text(close, "client_end"));
        }
    }

    [Fact]
    public async Task Per_operation_dc_test_through_the_snoop_shows_one_connection_per_operation_in_text()
    {
        var (server, serverAddress) = await ServerProcess.StartTcpAsync();
        await using (server)
        await using (var snoop = await StartSnoopAsync(serverAddress))
        {
            const int Ops = 40;
            await using Tool test = await Tool.RunAsync(RunLimit, "dc_test", "-connect", snoop.Address, "-sessions", "5", "-ops", "40");
            Assert.True(test.ExitCode == 0, test.Stdout + test.Stderr);

            await snoop.Tool.WaitUntilAsync(() => Lines(snoop.Tool, " close ").Count >= Ops + 1, Wait, "every connection closed");
            List<string> requests = Lines(snoop.Tool, " -> uid=");
            List<string> responses = Lines(snoop.Tool, " <- uid=");
            Assert.Equal(Ops, requests.Count);
            Assert.Equal(Ops, responses.Count);
            Assert.All(responses, line => Assert.Matches(@" status=(OK|NOTOK|ADD_ERR_MATCHING_SESSION) time=\d+\.\d{3}ms$| data time=\d+\.\d{3}ms$", line));
            Assert.All(requests, line => Assert.Matches(@"^ *\d+\.\d{6} #\d+ -> uid=\d+ (ADD|GET|REMOVE|HAVE) len=\d+( frames=\d+)? id=[0-9a-f]{20,126}( timeout=\d+ms data=\d+)?$", line));

            // One request per connection, each answered on its own connection.
            var connections = requests.Select(ConnectionOf).ToList();
            Assert.Equal(Ops, connections.Distinct().Count());
            Assert.Equal(connections.Order(StringComparer.Ordinal), responses.Select(ConnectionOf).Order(StringComparer.Ordinal));
        }
    }

    [Fact]
    public async Task Garbage_is_forwarded_so_the_server_closes_as_without_the_snoop_and_is_reported_once()
    {
        var (server, serverAddress) = await ServerProcess.StartTcpAsync();
        await using (server)
        await using (var snoop = await StartSnoopAsync(serverAddress, "-json"))
        {
            using (Socket socket = Wire.Open(snoop.Address))
            {
                // A good request first, answered through the snoop; then bytes that are no frame at all.
                Assert.False(Wire.Have(socket, "some-session-id"u8.ToArray()));
                socket.Send([.. "GET / HTTP/1.1\r\nHost: example\r\n\r\n"u8, .. new byte[100]]);
                Assert.True(Wire.IsClosedByPeer(socket), "the server should have dropped the connection");
            }

            SnoopOutput output = await snoop.WaitForClosedConnectionsAsync(1);
            long connection = Assert.Single(output.BusyConnections());
            JsonElement violation = Assert.Single(output.Of(connection, "violation"));
            Assert.Equal("->", SnoopOutput.Text(violation, "dir"));
            Assert.Equal(ProtocolViolationKind.WrongVersion.Describe() + " (byte 0 of the message)", SnoopOutput.Text(violation, "violation"));
            Assert.Equal(MessageWriter.EncodedLength(15), violation.GetProperty("stream_offset").GetInt64());
            Assert.Single(output.Of(connection, "request"));
            Assert.Single(output.Of(connection, "response"));
            // dc_server closes on the violation; the kernel makes that close a reset instead of an end of stream when
            // some of the garbage is still unread in the server's socket, which depends on how the bytes arrived.
            // Either way it is the server's end, reported once.
            Assert.Contains(SnoopOutput.Text(Assert.Single(output.Of(connection, "close")), "server_end"), new[] { "closed", "reset" });
            Assert.Contains("protocol violation", server.Stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Bytes_pass_unchanged_in_both_directions_whatever_they_are_and_a_half_close_is_passed_on()
    {
        byte[] farewell = "goodbye after your EOF"u8.ToArray();
        await using var recorder = new RecordingServer(echo: true, farewell);
        await using var snoop = await StartSnoopAsync(recorder.Address, "-json");

        // Valid frames, a frame split over many sends, then random bytes: the recorder must receive exactly this,
        // and echoes it, so the server-to-client direction carries "responses" that are in fact requests.
        var sent = new MemoryStream();
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        Requests.WriteAdd(buffer, 1, 60_000, "0123456789"u8, new byte[5000]);
        Requests.WriteIdRequest(buffer, 2, Operation.Get, "0123456789"u8);
        sent.Write(buffer.WrittenSpan);
        var random = new Random(99);
        var noise = new byte[70_000];
        random.NextBytes(noise);
        sent.Write(noise);
        byte[] all = sent.ToArray();

        var echoed = new MemoryStream();
        using (Socket socket = Tool.Connect(snoop.Address))
        {
            socket.ReceiveTimeout = 10_000;

            // Read the echo while sending, so that neither side waits on full socket buffers.
            Task receiving = Task.Run(() =>
            {
                var chunk = new byte[8192];
                int got;
                while ((got = socket.Receive(chunk)) > 0)
                {
                    echoed.Write(chunk, 0, got);
                }
            });
            int offset = 0;
            while (offset < all.Length)
            {
                int n = Math.Min(1 + random.Next(3000), all.Length - offset);
                socket.Send(all, offset, n, SocketFlags.None);
                offset += n;
            }

            socket.Shutdown(SocketShutdown.Send);
            await receiving.WaitAsync(Wait);
        }

        Assert.Equal(all, await recorder.WaitForFirstNonEmptyAsync(Wait));
        Assert.Equal([.. all, .. farewell], echoed.ToArray());

        SnoopOutput output = await snoop.WaitForClosedConnectionsAsync(1);
        long connection = Assert.Single(output.BusyConnections());
        Assert.Equal(2, output.Of(connection, "request").Count);

        // The echo sends requests back towards the client: that direction is reported once, as the wrong direction.
        List<JsonElement> violations = output.Of(connection, "violation");
        Assert.Equal(2, violations.Count);
        Assert.Equal(["->", "<-"], violations.Select(v => SnoopOutput.Text(v, "dir")).Order(StringComparer.Ordinal));
        Assert.Contains(violations, v => SnoopOutput.Text(v, "violation").StartsWith(ProtocolViolationKind.UnexpectedDirection.Describe(), StringComparison.Ordinal));
        JsonElement close = Assert.Single(output.Of(connection, "close"));
        Assert.Equal(all.Length, close.GetProperty("bytes_to_server").GetInt64());
        Assert.Equal(all.Length + farewell.Length, close.GetProperty("bytes_to_client").GetInt64());
    }

    [Fact]
    public async Task A_client_reset_is_passed_on_as_a_reset_and_reported()
    {
        await using var recorder = new RecordingServer(echo: true);
        await using var snoop = await StartSnoopAsync(recorder.Address, "-json");
        using (Socket socket = Wire.Open(snoop.Address))
        {
            var request = new System.Buffers.ArrayBufferWriter<byte>();
            Requests.WriteIdRequest(request, 7, Operation.Have, "0123456789"u8);
            socket.Send(request.WrittenSpan);
            Assert.Equal(request.WrittenSpan.ToArray(), Wire.ReceiveExactly(socket, request.WrittenCount));

            // Linger with a zero timeout makes close() send RST instead of FIN.
            socket.LingerState = new LingerOption(true, 0);
        }

        SnoopOutput output = await snoop.WaitForClosedConnectionsAsync(1);
        long connection = Assert.Single(output.BusyConnections());
        JsonElement close = Assert.Single(output.Of(connection, "close"));
        Assert.Equal("reset", SnoopOutput.Text(close, "client_end"));

        // The recorder's side was reset by the snoop in turn, so it never saw an orderly end of stream.
        await Task.Delay(200);
        Assert.DoesNotContain(recorder.Finished, bytes => bytes.Length > 0);
    }

    [Fact]
    public async Task A_server_that_cannot_be_reached_resets_the_client_and_is_reported_on_stderr()
    {
        int port = Tool.FreePort();
        await using var snoop = await StartSnoopAsync($"IP:127.0.0.1:{port}");
        using (Socket socket = Wire.Open(snoop.Address))
        {
            Assert.True(Wire.IsClosedByPeer(socket));
        }

        await snoop.Tool.WaitUntilAsync(() => snoop.Tool.Stderr.Contains("cannot connect to the server", StringComparison.Ordinal), Wait, "the connect failure on stderr");
        Assert.DoesNotContain(" open ", snoop.Tool.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Shuts_down_cleanly_on_SIGTERM()
    {
        var (server, serverAddress) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            await using var snoop = await StartSnoopAsync(serverAddress);
            using Socket idle = Wire.Open(snoop.Address);
            snoop.Tool.Signal(Native.SIGTERM);
            await snoop.Tool.WaitForExitAsync(Wait);
            Assert.Equal(0, snoop.Tool.ExitCode);
            Assert.True(Wire.IsClosedByPeer(idle));
        }
    }

    private static void ReplayAgainstModel(List<JsonElement> messages)
    {
        var cache = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < messages.Count; i += 2)
        {
            JsonElement request = messages[i];
            JsonElement response = messages[i + 1];
            string id = SnoopOutput.Text(request, "id");
            Assert.Matches("^[0-9a-f]{20,126}$", id);
            bool present = cache.Contains(id);
            string outcome = SnoopOutput.Text(response, "kind") == "data" ? "DATA" : SnoopOutput.Text(response, "status");
            switch (SnoopOutput.Text(request, "op"))
            {
                case "ADD":
                    Assert.True(request.GetProperty("timeout_ms").GetInt64() is >= 55_000 and <= 65_000);
                    Assert.Equal(present ? "ADD_ERR_MATCHING_SESSION" : "OK", outcome);
                    cache.Add(id);
                    break;
                case "GET":
                    Assert.Equal(present ? "DATA" : "NOTOK", outcome);
                    break;
                case "REMOVE":
                    Assert.Equal(present ? "OK" : "NOTOK", outcome);
                    cache.Remove(id);
                    break;
                default:
                    Assert.Equal(present ? "OK" : "NOTOK", outcome);
                    break;
            }
        }
    }

    private static List<string> Lines(Tool tool, string marker) =>
        [.. tool.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).Where(l => l.Contains(marker, StringComparison.Ordinal))];

    private static string ConnectionOf(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];

    private static async Task<SnoopProcess> StartSnoopAsync(string serverAddress, params string[] extra)
    {
        for (int attempt = 0; ; attempt++)
        {
            string address = $"IP:127.0.0.1:{Tool.FreePort()}";
            Tool tool = Tool.Start("dc_snoop", ["-listen", address, "-server", serverAddress, .. extra]);
            try
            {
                await tool.WaitForListenerAsync(address);
                return new SnoopProcess(tool, address);
            }
            catch (InvalidOperationException) when (attempt < 3 && tool.Stderr.Contains("in use", StringComparison.OrdinalIgnoreCase))
            {
                await tool.DisposeAsync();
            }
        }
    }

    /// <summary>A running dc_snoop; <see cref="Tool.WaitForListenerAsync"/> leaves a probe connection in its output, which carries no message.</summary>
    private sealed class SnoopProcess(Tool tool, string address) : IAsyncDisposable
    {
        public Tool Tool { get; } = tool;

        public string Address { get; } = address;

        /// <summary>Waits until <paramref name="count"/> connections that carried messages or bytes have closed, and parses the JSON output.</summary>
        public async Task<SnoopOutput> WaitForClosedConnectionsAsync(int count)
        {
            SnoopOutput? output = null;
            await Tool.WaitUntilAsync(
                () =>
                {
                    output = new SnoopOutput(Tool.Stdout);
                    return output.Events.Count(e => SnoopOutput.Text(e, "type") == "close" && (e.GetProperty("bytes_to_server").GetInt64() > 0)) >= count;
                },
                Wait,
                $"{count} busy connections closed");
            return output!;
        }

        public ValueTask DisposeAsync() => Tool.DisposeAsync();
    }
}
