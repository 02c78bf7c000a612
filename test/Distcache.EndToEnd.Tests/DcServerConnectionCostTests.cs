using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Distcache.EndToEnd.Tests;

/// <summary>
/// What one short connection costs dc_server in system calls, counted by strace on the real executable: the calls
/// a connection needs (accept, register with the event loop, receive, send, see the end, close) and none of those
/// that were cut because another call already does their work. Also what the accept loop on the event loops does
/// when the process runs out of descriptors.
/// </summary>
public sealed partial class DcServerConnectionCostTests : IDisposable
{
    private const int Connections = 20;

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    // "1234  accept4(7, {...}, [...], SOCK_CLOEXEC) = 103", or its "<... accept4 resumed>" half when another thread's
    // call came between, and every later call on that descriptor (whole, or its "<unfinished ...>" half).
    [GeneratedRegex(@"^\d+\s+(?<call>\w+)\((?<fd>\d+)(?:[,)]| <unfinished)")]
    private static partial Regex CallOnDescriptor();

    // epoll_ctl names the epoll set first and the socket third.
    [GeneratedRegex(@"^\d+\s+epoll_ctl\(\d+, EPOLL_CTL_(?<op>\w+), (?<fd>\d+)")]
    private static partial Regex EpollControl();

    [GeneratedRegex(@"^\d+\s+(?:accept4\(|<\.\.\. accept4 resumed>).*\)\s+=\s+(?<fd>\d+)$")]
    private static partial Regex Accepted();

    [Fact(Timeout = 120_000)]
    public async Task A_connection_per_request_makes_no_system_call_another_already_covers()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && File.Exists("/usr/bin/strace"), "needs Linux and strace");
        int port = Tool.FreePort();
        string address = string.Create(CultureInfo.InvariantCulture, $"IP:127.0.0.1:{port}");
        string trace = _dir.File("trace");

        // Disposing strace kills it with dc_server and waits, so that the trace is complete before it is read.
        await using (Tool strace = Tool.StartPath("strace", ["-f", "-qq", "-e", "trace=accept4,fcntl,ioctl,setsockopt,epoll_ctl,shutdown,close", "-o", trace,
            Tool.PathOf("dc_server"), "-listen", address]))
        {
            await strace.WaitUntilAsync(() => Tool.CanConnect(address), TimeSpan.FromSeconds(30), $"dc_server under strace to listen on {address}");
            for (int i = 0; i < Connections; i++)
            {
                using var socket = Wire.Open(address);
                Assert.False(Wire.Have(socket, [1, 2, 3, (byte)i]));
            }

            // The last connection's close reaches the server after the answer, however long the machine takes to
            // run it: wait until the trace so far shows a close for every accept (strace writes each call as it goes).
            bool AllClosed()
            {
                var (soFar, callsSoFar) = Count(File.ReadAllText(trace));
                return soFar >= Connections && callsSoFar.GetValueOrDefault("close") == soFar;
            }

            var clock = Stopwatch.StartNew();
            while (!AllClosed() && clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(50);
            }
        }

        var (accepted, calls) = Count(File.ReadAllText(trace));
        string seen = string.Join(", ", calls.Select(c => $"{c.Key} x{c.Value}"));
        Assert.True(accepted >= Connections, $"{accepted} accepted connections in the trace");
        Assert.Equal(accepted, calls.GetValueOrDefault("close"));
        Assert.True(calls.GetValueOrDefault("epoll_ctl ADD") == accepted, $"one registration with an event loop per connection: {seen}");
        Assert.True(calls.GetValueOrDefault("epoll_ctl DEL") == 0, $"no removal from the event loop before the close, which removes it: {seen}");

        // TCP_NODELAY comes from the listening socket; the event loop's accept4 makes the socket non-blocking itself
        // (no ioctl or fcntl after it); the close ends the connection without a shutdown first.
        Assert.True(calls.GetValueOrDefault("setsockopt") == 0, $"no setsockopt per connection: {seen}");
        Assert.True(calls.GetValueOrDefault("fcntl") == 0 && calls.GetValueOrDefault("ioctl") == 0, $"no ioctl or fcntl per connection: {seen}");
        Assert.True(calls.GetValueOrDefault("shutdown") == 0, $"no shutdown before close: {seen}");
    }

    /// <summary>The connections accepted in a trace, and the calls made on their descriptors, by name.</summary>
    private static (int Accepted, Dictionary<string, int> Calls) Count(string text)
    {
        var calls = new Dictionary<string, int>();
        HashSet<int> open = [];
        int accepted = 0;
        foreach (string line in text.Split('\n'))
        {
            if (Accepted().Match(line) is { Success: true } accept)
            {
                open.Add(int.Parse(accept.Groups["fd"].Value, CultureInfo.InvariantCulture));
                accepted++;
                continue;
            }

            if (EpollControl().Match(line) is { Success: true } control)
            {
                if (open.Contains(int.Parse(control.Groups["fd"].Value, CultureInfo.InvariantCulture)))
                {
                    string name = "epoll_ctl " + control.Groups["op"].Value;
                    calls[name] = calls.GetValueOrDefault(name) + 1;
                }

                continue;
            }

            if (CallOnDescriptor().Match(line) is { Success: true } call && open.Contains(int.Parse(call.Groups["fd"].Value, CultureInfo.InvariantCulture)))
            {
                string name = call.Groups["call"].Value;
                calls[name] = calls.GetValueOrDefault(name) + 1;
                if (name == "close")
                {
                    open.Remove(int.Parse(call.Groups["fd"].Value, CultureInfo.InvariantCulture));
                }
            }
        }

        return (accepted, calls);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_flood_of_connections_beyond_the_descriptor_limit_is_refused_and_never_ends_the_process()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && File.Exists("/usr/bin/prlimit"), "needs Linux and prlimit");
        string address = "UNIX:" + _dir.File("s.sock");

        // The runtime holds about 100 descriptors of its own; a hard limit of 300 leaves room for some 130
        // connections, far fewer than -maxconns's 1024. Accepting until EMFILE used to end the process (the runtime
        // could not open the files it needed next); the cap now fits under the limit. prlimit execs dc_server.
        await using Tool server = Tool.StartPath("prlimit", ["--nofile=300:300", Tool.PathOf("dc_server"), "-listen", address]);
        await server.WaitForListenerAsync(address);
        const string Pattern = @"Warning, the process may open only 300 descriptors .* serving at most (\d+) connections at once, not the 1024 of -maxconns";
        await server.WaitUntilAsync(() => Regex.IsMatch(server.Stderr, Pattern), TimeSpan.FromSeconds(20), "the warning that fewer connections fit");
        Match warning = Regex.Match(server.Stderr, Pattern);
        int cap = int.Parse(warning.Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.InRange(cap, 50, 300 - DescriptorHeadroom);

        var clients = new List<System.Net.Sockets.Socket>();
        try
        {
            for (int i = 0; i < cap + 100; i++)
            {
                clients.Add(Wire.Open(address));
            }

            // The first cap connections are served, the rest closed at once, and the server goes on.
            Assert.False(Wire.Have(clients[0], [1, 2, 3]));
            Assert.False(Wire.Have(clients[cap / 2], [1, 2, 3]));
            await Poll.UntilAsync(() => Wire.IsClosedByPeer(clients[^1]), TimeSpan.FromSeconds(20), "a connection over the cap to be closed");
            Assert.DoesNotContain("Too many open files", server.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }

        await Wire.ServedAgainAsync(address, TimeSpan.FromSeconds(20), "a new connection to be served once the flood has gone");
        Assert.False(server.HasExited);
    }

    // Distcache.Hosting.DescriptorBudget.Headroom.
    private const int DescriptorHeadroom = 64;
}
