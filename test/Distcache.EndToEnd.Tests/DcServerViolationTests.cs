using Distcache.Protocol;

namespace Distcache.EndToEnd.Tests;

/// <summary>
/// Each framing violation of PROTOCOL.md section 1, sent to the real dc_server: that connection is closed at once
/// (well before the 5 s message deadline that would otherwise end it) and logged, the process keeps running, a
/// connection opened before it is unaffected, and a fresh one is served.
/// </summary>
public sealed class DcServerViolationTests
{
    // Seconds, for a busy machine, yet short of the default 5 s message deadline: a close at once is still told
    // apart from one at the deadline.
    private const int CloseWaitMs = 3000;

    public static TheoryData<string, byte[]> Violations()
    {
        var full = Frames.Frame(Frames.Header(operation: 0, complete: 0, dataLength: 2048), 2048, fill: 0);
        return new TheoryData<string, byte[]>
        {
            { "wrong version", Frames.Header(protoLevel: 0x0010_0000, dataLength: 4) },
            { "is_response 2", Frames.Header(isResponse: 2) },
            { "a response sent to the server", Frames.Frame(Frames.Header(isResponse: 1, dataLength: 1), 1, fill: 0) },
            { "op_class 1", Frames.Header(opClass: 1) },
            { "unknown operation", Frames.Header(operation: 9) },
            { "complete 2", Frames.Header(complete: 2) },
            { "frame over 2048 bytes", Frames.Header(dataLength: 2049) },
            { "short non-final frame", Frames.Frame(Frames.Header(complete: 0, dataLength: 100), 100, fill: 0) },
            { "uid changed within a message", [.. full, .. Frames.Header(uid: 2, operation: 0, dataLength: 10)] },
            { "operation changed within a message", [.. full, .. Frames.Header(operation: 1, dataLength: 10)] },
            { "more than 16 frames", [.. Enumerable.Repeat(full, 16).SelectMany(f => f), .. Frames.Header(operation: 0, dataLength: 10)] },
            { "ADD shorter than 8 bytes", Frames.Frame(Frames.Header(operation: 0, dataLength: 7), 7, fill: 0) },
        };
    }

    [Theory]
    [MemberData(nameof(Violations))]
    public async Task Violation_closes_only_that_connection(string name, byte[] bytes)
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using var _ = server;
        using var bystander = Wire.Open(address);
        Assert.Equal([0], Wire.Add(bystander, [1, 2, 3], [4, 5, 6, 7, 8, 9]));

        using (var offender = Wire.Open(address, timeoutMs: CloseWaitMs))
        {
            offender.Send(bytes);
            Assert.True(Wire.IsClosedByPeer(offender), $"{name}: the connection was not closed within {CloseWaitMs} ms");
        }

        Assert.False(server.HasExited, name);
        Assert.True(Wire.Have(bystander, [1, 2, 3]), name);
        using var fresh = Wire.Open(address);
        Assert.Equal([4, 5, 6, 7, 8, 9], Wire.Get(fresh, [1, 2, 3]));
        await server.WaitUntilAsync(() => server.Stderr.Contains("protocol violation", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "the violation is logged");
    }

    [Fact]
    public async Task Add_payload_errors_are_answered_and_the_connection_stays_open()
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using var _ = server;
        using var socket = Wire.Open(address);
        Assert.Equal([102], Wire.Add(socket, [1], [1], timeoutMs: 604_800_001));
        Assert.Equal([103], Wire.Add(socket, new byte[65], [1]));
        Assert.Equal([100], Wire.Ask(socket, w =>
        {
            var writer = new MessageWriter(w, false, 1, Operation.Add, 12);
            writer.WriteUInt32BigEndian(1000);
            writer.WriteUInt32BigEndian(0x8000_0000);
            writer.Write([1, 2, 3, 4]);
            writer.Complete();
        }));
        Assert.Equal([0], Wire.Add(socket, [7], [8]));
        Assert.DoesNotContain("protocol violation", server.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Another_protocol_on_the_port_is_dropped()
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using var _ = server;
        foreach (var garbage in new[] { "GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray(), new byte[] { 0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00 } })
        {
            using var socket = Wire.Open(address, timeoutMs: CloseWaitMs);
            socket.Send(garbage);
            Assert.True(Wire.IsClosedByPeer(socket));
        }

        using var fresh = Wire.Open(address);
        Assert.False(Wire.Have(fresh, [1]));
    }
}
