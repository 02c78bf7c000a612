namespace Distcache.Security.Tests;

/// <summary>Unix sockets: permissions in place before anyone can connect, and SO_PEERCRED allow-lists.</summary>
public sealed class LocalSocketTests : IDisposable
{
    private static readonly TimeSpan Exit = TimeSpan.FromSeconds(30);
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Owner_group_and_mode_are_set_between_bind_and_listen()
    {
        // strace shows the system calls in the order they were made; nobody can connect before listen().
        string socket = _dir.File("perm.sock");
        string trace = _dir.File("trace");
        // Disposing strace kills it with dc_server and waits, so that the trace is complete before it is read.
        await using (Tool strace = Tool.StartPath("strace", ["-f", "-qq", "-e", "trace=bind,listen,chmod,fchmodat,chown,fchownat,lchown", "-o", trace,
            Tool.PathOf("dc_server"), "-listen", "UNIX:" + socket, "-sockowner", "0", "-sockgroup", "0", "-sockperms", "600"]))
        {
            await strace.WaitUntilAsync(() => Tool.CanConnect("UNIX:" + socket), Exit, $"dc_server under strace to listen on {socket}");
        }

        string[] calls = File.ReadAllLines(trace).Where(line => line.Contains(socket, StringComparison.Ordinal) || line.Contains("listen(", StringComparison.Ordinal)).ToArray();
        int bind = Array.FindIndex(calls, l => l.Contains("bind(", StringComparison.Ordinal) && l.Contains(socket, StringComparison.Ordinal));
        int chown = Array.FindIndex(calls, l => l.Contains("chown", StringComparison.Ordinal));
        int chmod = Array.FindIndex(calls, l => l.Contains("chmod", StringComparison.Ordinal));
        int listen = Array.FindIndex(bind + 1 is var from && from > 0 ? calls[from..] : [], l => l.Contains("listen(", StringComparison.Ordinal)) + bind + 1;
        Assert.True(bind >= 0 && chown > bind && chmod > bind && listen > chown && listen > chmod, string.Join('\n', calls));
        Assert.Contains("0600", calls[chmod], StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_peer_whose_uid_is_not_allowed_is_closed_logged_and_another_is_served()
    {
        uint self = Native.GetEUid();
        string socket = "UNIX:" + _dir.File("deny.sock");
        await using Tool server = Tool.Start("dc_server", "-listen", socket, "-allow-uid", $"{self + 1}");
        await server.WaitForListenerAsync(socket);

        using (var refused = Wire.Open(socket))
        {
            Wire.Send(refused, w => Protocol.Requests.WriteIdRequest(w, 1, Protocol.Operation.Have, [1]));
            Assert.True(Wire.IsClosedByPeer(refused));
        }

        await server.WaitUntilAsync(() => server.Stderr.Contains("Refused a connection", StringComparison.Ordinal), Exit, "the refusal line");
        Assert.Contains($"uid {self}", server.Stderr, StringComparison.Ordinal);

        string allowed = "UNIX:" + _dir.File("allow.sock");
        await using Tool open = Tool.Start("dc_server", "-listen", allowed, "-allow-uid", $"{self + 1}", "-allow-gid", $"{Native.GetEGid()}");
        await open.WaitForListenerAsync(allowed);
        using var served = Wire.Open(allowed);
        Assert.False(Wire.Have(served, [1]));
    }

    [Fact]
    public async Task dc_client_checks_its_local_peers_too()
    {
        uint self = Native.GetEUid();
        string socket = "UNIX:" + _dir.File("proxy.sock");
        await using Tool client = Tool.Start("dc_client", "-listen", socket, "-server", "IP:127.0.0.1:9", "-allow-uid", $"{self + 1}", "-retry", "60000");
        await client.WaitForListenerAsync(socket);

        using var refused = Wire.Open(socket);
        Wire.Send(refused, w => Protocol.Requests.WriteIdRequest(w, 1, Protocol.Operation.Have, [1]));
        Assert.True(Wire.IsClosedByPeer(refused));
        await client.WaitUntilAsync(() => client.Stderr.Contains("Refused a connection", StringComparison.Ordinal), Exit, "the refusal line");
    }
}
