using System.Net.Sockets;
using System.Text.Json;
using Distcache.Protocol;

namespace Distcache.Tools.Tests;

/// <summary>
/// dc_snoop between a client and a server that answers with hostile responses (a uid never asked, the same uid
/// twice, a response with nothing in flight, status bytes no operation defines): every byte reaches the client
/// unchanged, each response is listed once and marked as unmatched where it has no request, and the snoop
/// carries on serving the next connection.
/// </summary>
public sealed class DcSnoopHostileResponseTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    /// <summary>What the hostile server sends for the one request it reads.</summary>
    private static byte[] Script { get; } =
    [
        .. Frames.Status(999, Operation.Have, StatusCode.Ok),          // a uid never asked
        .. Frames.Status(5, Operation.Have, (StatusCode)0x63),         // the answer, with a status no operation defines
        .. Frames.Status(5, Operation.Have, StatusCode.NotOk),         // the same uid again
        .. Frames.Data(7, Operation.Get, [1, 2, 3, 4, 5, 6]),          // unsolicited data
        .. Frames.Status(8, Operation.Remove, (StatusCode)0xFF),       // unsolicited, bad status
    ];

    /// <summary>Reads one request, then sends <see cref="Script"/> and closes.</summary>
    private static async Task HostileAsync(FakeConnection connection)
    {
        if (await connection.ReceiveAsync() is null)
        {
            return;
        }

        await connection.SendAsync(Script);
        connection.Socket.Shutdown(SocketShutdown.Send);
    }

    [Fact]
    public async Task Hostile_responses_pass_unchanged_are_listed_and_the_unmatched_ones_are_marked()
    {
        await using var server = new FakeServer(HostileAsync);
        string address = $"IP:127.0.0.1:{Tool.FreePort()}";
        await using Tool snoop = Tool.Start("dc_snoop", "-listen", address, "-server", server.Address.ToString(), "-json");
        await snoop.WaitForListenerAsync(address);

        for (int round = 0; round < 2; round++)
        {
            using Socket client = Wire.Open(address);
            Wire.Send(client, w => Requests.WriteIdRequest(w, 5, Operation.Have, [1, 2, 3]));
            byte[] received = Wire.ReceiveExactly(client, Script.Length);
            Assert.Equal(Script, received);
            Assert.True(Wire.IsClosedByPeer(client));
        }

        SnoopOutput output = null!;
        await snoop.WaitUntilAsync(
            () => (output = new SnoopOutput(snoop.Stdout)).Events.Count(e => SnoopOutput.Text(e, "type") == "close" && e.GetProperty("bytes_to_client").GetInt64() > 0) == 2,
            Wait,
            "both connections closed");
        Assert.Equal(2, output.BusyConnections().Count);
        foreach (long connection in output.BusyConnections())
        {
            List<JsonElement> responses = output.Of(connection, "response");
            Assert.Equal([999u, 5u, 5u, 7u, 8u], responses.Select(r => r.GetProperty("uid").GetUInt32()));

            // Only the first uid-5 answer matches the request; the others have no latency.
            Assert.Equal([false, true, false, false, false], responses.Select(r => r.GetProperty("latency_ms").ValueKind == JsonValueKind.Number));
            Assert.Equal(0x63, responses[1].GetProperty("status_byte").GetInt32());
            Assert.Equal("99", SnoopOutput.Text(responses[1], "status"));
            Assert.Equal("data", SnoopOutput.Text(responses[3], "kind"));
            Assert.Equal(255, responses[4].GetProperty("status_byte").GetInt32());
            Assert.Empty(output.Of(connection, "violation"));
            JsonElement close = Assert.Single(output.Of(connection, "close"));
            Assert.Equal(1, close.GetProperty("requests").GetInt64());
            Assert.Equal(5, close.GetProperty("responses").GetInt64());
        }

        Assert.False(snoop.HasExited, snoop.Stderr);
    }

    [Fact]
    public async Task In_text_output_the_unmatched_responses_say_so()
    {
        await using var server = new FakeServer(HostileAsync);
        string address = $"IP:127.0.0.1:{Tool.FreePort()}";
        await using Tool snoop = Tool.Start("dc_snoop", "-listen", address, "-server", server.Address.ToString());
        await snoop.WaitForListenerAsync(address);
        using (Socket client = Wire.Open(address))
        {
            Wire.Send(client, w => Requests.WriteIdRequest(w, 5, Operation.Have, [1, 2, 3]));
            Assert.Equal(Script, Wire.ReceiveExactly(client, Script.Length));
        }

        await snoop.WaitUntilAsync(() => snoop.Stdout.Contains("uid=8 REMOVE", StringComparison.Ordinal), Wait, "the last response listed");
        string[] lines = [.. snoop.Stdout.Split('\n').Where(l => l.Contains(" <- ", StringComparison.Ordinal))];
        Assert.Equal(5, lines.Length);
        Assert.Contains("uid=999 HAVE len=1 status=OK (no matching request)", lines[0], StringComparison.Ordinal);
        Assert.Matches(@"uid=5 HAVE len=1 status=99 time=\d+\.\d{3}ms", lines[1]);
        Assert.Contains("uid=5 HAVE len=1 status=NOTOK (no matching request)", lines[2], StringComparison.Ordinal);
        Assert.Contains("uid=7 GET len=6", lines[3], StringComparison.Ordinal);
        Assert.Contains("status=255 (no matching request)", lines[4], StringComparison.Ordinal);
    }
}
