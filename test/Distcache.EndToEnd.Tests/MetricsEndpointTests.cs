using System.Globalization;
using System.Net.Http;
using System.Text.Json;
using System.Text.RegularExpressions;
using Distcache.Protocol;

namespace Distcache.EndToEnd.Tests;

/// <summary>
/// dc_server's and dc_client's <c>-metrics</c> endpoint and <c>dc_test -stats</c>, on the real executables: the
/// figures scraped after a known load must be the load's.
/// </summary>
public sealed partial class MetricsEndpointTests
{
    private static readonly TimeSpan Quick = TimeSpan.FromSeconds(20);

    [GeneratedRegex(@"^Info, metrics on (IP:\S+) \(GET /metrics\)$", RegexOptions.Multiline)]
    private static partial Regex MetricsLine();

    [Fact]
    public async Task Dc_server_counts_what_a_known_load_did()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-metrics", "IP:127.0.0.1:0");
        await using var _ = server;
        string endpoint = await MetricsAddressAsync(server);
        double accepted = Value(await QuietAsync(endpoint, "distcache_server_connections_open", "distcache_server_connections_accepted_total"), "distcache_server_connections_accepted_total");

        const int Added = 20;
        const int Hits = 15;
        const int Misses = 7;
        using (var socket = Wire.Open(address))
        {
            for (int i = 0; i < Added; i++)
            {
                Assert.Equal(new byte[] { 0 }, Wire.Add(socket, Id(i), new byte[100]));
            }

            Assert.Equal(new byte[] { (byte)StatusCode.AddErrMatchingSession }, Wire.Add(socket, Id(0), new byte[100]));
            for (int i = 0; i < Hits; i++)
            {
                Assert.Equal(100, Wire.Get(socket, Id(i)).Length);
            }

            for (int i = 0; i < Misses; i++)
            {
                Assert.Equal(new byte[] { (byte)StatusCode.NotOk }, Wire.Get(socket, Id(1000 + i)));
            }

            Assert.True(Wire.Have(socket, Id(1)));
            Assert.False(Wire.Have(socket, Id(2000)));
            Assert.Equal(new byte[] { 0 }, Wire.Ask(socket, w => Requests.WriteIdRequest(w, 1, Operation.Remove, Id(3))));
            Assert.Equal(new byte[] { (byte)StatusCode.NotOk }, Wire.Get(socket, new byte[65]));
        }

        using (Wire.Open(address))
        {
        }

        // The server sees the second connection close a moment after the client does.
        string text = string.Empty;
        await Poll.UntilAsync(() => Value(text = ScrapeAsync(endpoint).GetAwaiter().GetResult(), "distcache_server_connections_accepted_total") == accepted + 2
            && Value(text, "distcache_server_connections_open") == 0, Quick, "both connections counted and closed", () => text);

        Assert.Equal(Added, Value(text, "distcache_server_operations_total", ("distcache_operation", "add"), ("distcache_outcome", "ok")));
        Assert.Equal(1, Value(text, "distcache_server_operations_total", ("distcache_operation", "add"), ("distcache_outcome", "exists")));
        Assert.Equal(Hits, Value(text, "distcache_server_operations_total", ("distcache_operation", "get"), ("distcache_outcome", "ok")));
        Assert.Equal(Misses, Value(text, "distcache_server_operations_total", ("distcache_operation", "get"), ("distcache_outcome", "not_found")));
        Assert.Equal(1, Value(text, "distcache_server_operations_total", ("distcache_operation", "get"), ("distcache_outcome", "invalid")));
        Assert.Equal(1, Value(text, "distcache_server_operations_total", ("distcache_operation", "have"), ("distcache_outcome", "ok")));
        Assert.Equal(1, Value(text, "distcache_server_operations_total", ("distcache_operation", "have"), ("distcache_outcome", "not_found")));
        Assert.Equal(1, Value(text, "distcache_server_operations_total", ("distcache_operation", "remove"), ("distcache_outcome", "ok")));
        Assert.Equal(Added + 1 + Hits + Misses + 1 + 2 + 1, Value(text, "distcache_server_operations_total"));
        Assert.Equal(Added - 1, Value(text, "distcache_server_sessions"));
        Assert.Equal(512, Value(text, "distcache_server_sessions_limit"));
        Assert.InRange(Value(text, "distcache_server_storage_usage_bytes"), (Added - 1) * 100, 64 * 1024 * 1024);
        Assert.Equal(0, Value(text, "distcache_server_evictions_total"));
        Assert.Equal(0, Value(text, "distcache_server_protocol_violations_total"));
        Assert.Contains("# TYPE distcache_server_operations_total counter", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE distcache_server_sessions gauge", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dc_server_counts_evictions_and_refusals()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-metrics", "IP:127.0.0.1:0", "-sessions", "64", "-maxconns", "1");
        await using var _ = server;
        string endpoint = await MetricsAddressAsync(server);

        // The start-up check's connection must have left its place; until the server has seen it go, a new one is refused.
        System.Net.Sockets.Socket? socket = null;
        await Poll.UntilAsync(() =>
        {
            socket?.Dispose();
            socket = Wire.Open(address);
            try
            {
                return !Wire.Have(socket, Id(9999));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return false;
            }
        }, Quick, "a connection served");
        double refusedBefore = Value(await ScrapeAsync(endpoint), "distcache_server_connections_refused_total");
        using (socket)
        {
            for (int i = 0; i < 100; i++)
            {
                Assert.Equal(new byte[] { 0 }, Wire.Add(socket!, Id(i), new byte[10]));
            }

            // The one place is taken: this one is accepted and closed at once.
            using var refused = Wire.Open(address);
            Assert.True(Wire.IsClosedByPeer(refused));
        }

        string text = await ScrapeAsync(endpoint);
        Assert.Equal(refusedBefore + 1, Value(text, "distcache_server_connections_refused_total"));
        Assert.True(Value(text, "distcache_server_evictions_total", ("distcache_eviction_reason", "sessions")) >= 36, text);
        Assert.Equal(0, Value(text, "distcache_server_evictions_total", ("distcache_eviction_reason", "memory")));
        Assert.InRange(Value(text, "distcache_server_sessions"), 1, 64);
    }

    [Fact]
    public async Task Dc_client_reports_its_link_and_what_it_forwarded()
    {
        using var dir = new TempDir();
        var (server, serverAddress) = await ServerProcess.StartTcpAsync();
        await using var _ = server;
        string local = "UNIX:" + dir.File("client.sock");
        await using Tool client = Tool.Start("dc_client", "-listen", local, "-server", serverAddress, "-metrics", "IP:127.0.0.1:0");
        await client.WaitForListenerAsync(local);
        string endpoint = await MetricsAddressAsync(client);

        // The start-up check connected once and sent nothing; dc_client accepts it from the backlog once it has tried
        // the server.
        double accepted = Value(await QuietAsync(endpoint, "distcache_proxy_connections_open", "distcache_proxy_connections_accepted_total"), "distcache_proxy_connections_accepted_total");

        const int Requests = 12;
        using (var socket = Wire.Open(local))
        {
            for (int i = 0; i < Requests / 2; i++)
            {
                Assert.Equal(new byte[] { 0 }, Wire.Add(socket, Id(i), new byte[50]));
                Assert.Equal(50, Wire.Get(socket, Id(i)).Length);
            }
        }

        string text = string.Empty;
        await Poll.UntilAsync(() => Value(text = ScrapeAsync(endpoint).GetAwaiter().GetResult(), "distcache_proxy_connections_open") == 0, Quick, "the local connection closed", () => text);
        Assert.Equal(1, Value(text, "distcache_proxy_link_up", ("distcache_server", serverAddress)));
        Assert.Equal(1, Value(text, "distcache_proxy_link_connects_total", ("distcache_server", serverAddress)));
        Assert.Equal(0, Value(text, "distcache_proxy_link_losses_total", ("distcache_server", serverAddress)));
        Assert.Equal(Requests, Value(text, "distcache_proxy_requests_total"));
        Assert.Equal(Requests / 2, Value(text, "distcache_proxy_requests_total", ("distcache_operation", "add")));
        Assert.Equal(Requests / 2, Value(text, "distcache_proxy_requests_total", ("distcache_operation", "get")));
        Assert.Equal(0, Value(text, "distcache_proxy_requests_total", ("distcache_operation", "remove")));
        Assert.Equal(Requests, Value(text, "distcache_proxy_requests_forwarded_total"));

        // Every answer the server gave is in the time histogram, by operation; the last bucket holds them all, and
        // one answer over loopback takes more than nothing and less than the -timeout.
        Assert.Equal(Requests / 2, Value(text, "distcache_proxy_request_duration_seconds_count", ("distcache_operation", "get")));
        Assert.Equal(Requests / 2, Value(text, "distcache_proxy_request_duration_seconds_bucket", ("distcache_operation", "add"), ("le", "+Inf")));
        Assert.InRange(Value(text, "distcache_proxy_request_duration_seconds_sum") / Requests, 1e-7, 5);
        Assert.Contains("# TYPE distcache_proxy_request_duration_seconds histogram", text, StringComparison.Ordinal);

        // The same figures for a person, and for a script.
        var stats = await Tool.RunAsync(Quick, "dc_test", "-stats", endpoint);
        Assert.True(stats.ExitCode == 0, stats.Output);
        Assert.StartsWith($"dc_client metrics at {endpoint}, up ", stats.Stdout, StringComparison.Ordinal);
        Assert.Contains("\n  by kind    add 6, get 6, remove 0, have 0\n", stats.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^answer time  mean [0-9.]+ ms, 99% within [0-9.]+ ms \(12 answered by servers\)$", stats.Stdout);
        var json = await Tool.RunAsync(Quick, "dc_test", "-stats", endpoint, "-json", "-");
        using (JsonDocument document = JsonDocument.Parse(json.Stdout))
        {
            JsonElement summary = document.RootElement.GetProperty("summary");
            Assert.Equal(6, summary.GetProperty("requests_by_type").GetProperty("get").GetDouble());
            Assert.InRange(summary.GetProperty("answer_seconds_mean").GetDouble(), 1e-7, 5);
        }
        Assert.Equal(0, Value(text, "distcache_proxy_requests_disconnected_total"));
        Assert.Equal(Requests, Value(text, "distcache_proxy_responses_total", ("distcache_outcome", "delivered")));
        Assert.Equal(accepted + 1, Value(text, "distcache_proxy_connections_accepted_total"));

        // The server goes away: the link is reported down, and a request is answered by the proxy itself.
        server.Kill();
        await Poll.UntilAsync(() => Value(text = ScrapeAsync(endpoint).GetAwaiter().GetResult(), "distcache_proxy_link_up", ("distcache_server", serverAddress)) == 0, Quick, "the link reported down", () => text);
        using (var socket = Wire.Open(local))
        {
            Assert.Equal(new byte[] { (byte)StatusCode.Disconnected }, Wire.Get(socket, Id(0)));
        }

        text = await ScrapeAsync(endpoint);
        Assert.Equal(1, Value(text, "distcache_proxy_link_losses_total", ("distcache_server", serverAddress)));
        Assert.Equal(1, Value(text, "distcache_proxy_requests_disconnected_total"));
    }

    [Fact]
    public async Task Stats_prints_a_running_servers_figures_as_text_and_json()
    {
        var (server, address) = await ServerProcess.StartTcpAsync("-metrics", "IP:127.0.0.1:0");
        await using var _ = server;
        string endpoint = await MetricsAddressAsync(server);
        double accepted = Value(await QuietAsync(endpoint, "distcache_server_connections_open", "distcache_server_connections_accepted_total"), "distcache_server_connections_accepted_total");
        using (var socket = Wire.Open(address))
        {
            for (int i = 0; i < 4; i++)
            {
                Wire.Add(socket, Id(i), new byte[30]);
            }

            Wire.Get(socket, Id(0));
            Wire.Get(socket, Id(1));
            Wire.Get(socket, Id(2));
            Wire.Get(socket, Id(99));
        }

        var stats = await Tool.RunAsync(Quick, "dc_test", "-stats", endpoint);
        Assert.True(stats.ExitCode == 0, stats.Output);
        Assert.StartsWith($"dc_server metrics at {endpoint}, up ", stats.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^operations   8 \([0-9.]+/s since start\)$", stats.Stdout);
        Assert.Contains("  add        4: stored 4, exists 0, invalid 0, failed 0", stats.Stdout, StringComparison.Ordinal);
        Assert.Contains("  get        4: found 3, not found 1, invalid 0, failed 0", stats.Stdout, StringComparison.Ordinal);
        Assert.Contains("hit ratio    75.0% (3 hits, 1 misses)", stats.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^sessions     4 of 512, \d+ of 67108864 bytes$", stats.Stdout);
        Assert.True(Regex.IsMatch(stats.Stdout, $@"(?m)^connections  \d open, {accepted + 1} accepted, 0 refused$"), stats.Stdout);

        var json = await Tool.RunAsync(Quick, "dc_test", "-stats", endpoint, "-json", "-");
        Assert.True(json.ExitCode == 0, json.Output);
        using JsonDocument document = JsonDocument.Parse(json.Stdout);
        JsonElement root = document.RootElement;
        Assert.Equal("dc_server", root.GetProperty("tool").GetString());
        JsonElement summary = root.GetProperty("summary");
        Assert.Equal(8, summary.GetProperty("operations").GetDouble());
        Assert.Equal(3, summary.GetProperty("hits").GetDouble());
        Assert.Equal(1, summary.GetProperty("misses").GetDouble());
        Assert.Equal(0.75, summary.GetProperty("hit_ratio").GetDouble());
        Assert.Equal(4, summary.GetProperty("sessions").GetDouble());
        Assert.Equal(4, summary.GetProperty("operations_by_type").GetProperty("add").GetProperty("ok").GetDouble());
        Assert.Equal(accepted + 1, summary.GetProperty("connections_accepted").GetDouble());
        Assert.Contains(root.GetProperty("metrics").EnumerateArray(), m => m.GetProperty("name").GetString() == "distcache_server_uptime_seconds");
    }

    [Fact]
    public async Task Stats_fails_clearly_without_an_endpoint_or_with_other_options()
    {
        int port = Tool.FreePort();
        var nothing = await Tool.RunAsync(Quick, "dc_test", "-stats", $"IP:127.0.0.1:{port}");
        Assert.Equal(1, nothing.ExitCode);
        Assert.Contains($"Error, cannot read the metrics at IP:127.0.0.1:{port}:", nothing.Stderr, StringComparison.Ordinal);

        var mixed = await Tool.RunAsync(Quick, "dc_test", "-stats", $"IP:127.0.0.1:{port}", "-bench");
        Assert.Equal(1, mixed.ExitCode);
        Assert.Contains("Error, -bench does not apply with -stats", mixed.Stderr, StringComparison.Ordinal);

        var unix = await Tool.RunAsync(Quick, "dc_test", "-stats", "UNIX:/tmp/metrics.sock");
        Assert.Equal(1, unix.ExitCode);
        Assert.StartsWith("Error, -stats given an invalid argument: 'UNIX:/tmp/metrics.sock' is not a TCP address: -stats reads a -metrics endpoint over TCP, so it needs IP:host:port or IPv6:[addr]:port\n", unix.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("dc_server", "UNIX:/tmp/metrics.sock", "'UNIX:/tmp/metrics.sock' is not a TCP address: -metrics serves HTTP over TCP, so it needs IP:port, IP:host:port or IPv6:[addr]:port")]
    [InlineData("dc_server", "FD:3", "'FD:3' is not a TCP address: -metrics serves HTTP over TCP, so it needs IP:port, IP:host:port or IPv6:[addr]:port")]
    [InlineData("dc_server", "IP:99999", "port 99999 is out of range (1-65535)")]
    [InlineData("dc_client", "UNIX:/tmp/metrics.sock", "'UNIX:/tmp/metrics.sock' is not a TCP address: -metrics serves HTTP over TCP, so it needs IP:port, IP:host:port or IPv6:[addr]:port")]
    [InlineData("dc_client", "http://127.0.0.1:9101", "'http://127.0.0.1:9101'")]
    public async Task Bad_metrics_addresses_name_the_flag_value_and_rule(string tool, string value, string reason)
    {
        string[] args = tool == "dc_server"
            ? ["-listen", "IP:127.0.0.1:0", "-metrics", value]
            : ["-listen", "IP:127.0.0.1:0", "-server", "IP:127.0.0.1:1", "-metrics", value];
        var result = await Tool.RunAsync(Quick, tool, args);
        Assert.NotEqual(0, result.ExitCode);
        string first = result.Stderr.Split('\n')[0];
        Assert.StartsWith("Error, -metrics given an invalid argument: ", first, StringComparison.Ordinal);
        Assert.Contains(reason, first, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_metrics_port_in_use_is_a_start_up_error_and_a_public_address_is_warned_about()
    {
        var (first, _) = await ServerProcess.StartTcpAsync("-metrics", "IP:127.0.0.1:0");
        await using var _ = first;
        string taken = await MetricsAddressAsync(first);
        var second = await Tool.RunAsync(Quick, "dc_server", "-listen", "IP:127.0.0.1:0", "-metrics", taken);
        Assert.Equal(1, second.ExitCode);
        Assert.Contains($"Error, failed to listen on {taken} for -metrics:", second.Stderr, StringComparison.Ordinal);

        var (open, _) = await ServerProcess.StartTcpAsync("-metrics", "IP:0");
        await using var __ = open;
        string all = await MetricsAddressAsync(open);
        Assert.Contains($"Warning, metrics on {all}, which other hosts can reach", open.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Warning, metrics", first.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_endpoint_answers_only_GET_and_HEAD_of_metrics()
    {
        var (server, _) = await ServerProcess.StartTcpAsync("-metrics", "IP:127.0.0.1:0");
        await using var _ = server;
        string endpoint = await MetricsAddressAsync(server);
        using var http = new HttpClient { Timeout = Quick };
        string baseUrl = "http://" + endpoint["IP:".Length..];
        using HttpResponseMessage notFound = await http.GetAsync(new Uri(baseUrl + "/"));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, notFound.StatusCode);
        using HttpResponseMessage post = await http.PostAsync(new Uri(baseUrl + "/metrics"), new StringContent("x"));
        Assert.Equal(System.Net.HttpStatusCode.MethodNotAllowed, post.StatusCode);
        using HttpResponseMessage ok = await http.GetAsync(new Uri(baseUrl + "/metrics"));
        Assert.Equal("text/plain", ok.Content.Headers.ContentType?.MediaType);
        Assert.Equal("0.0.4", ok.Content.Headers.ContentType?.Parameters.Single(p => p.Name == "version").Value);

        // Still serving the cache and the endpoint after all that.
        Assert.Equal(0, Value(await ScrapeAsync(endpoint), "distcache_server_protocol_violations_total"));
    }

    private static byte[] Id(int i) => System.Text.Encoding.ASCII.GetBytes($"metrics-session-{i:D4}");

    private static async Task<string> MetricsAddressAsync(Tool tool)
    {
        string? endpoint = null;
        await tool.WaitUntilAsync(() => (endpoint = MetricsLine().Match(tool.Stderr) is { Success: true } m ? m.Groups[1].Value : null) is not null, Quick, "the metrics line");
        return endpoint!;
    }

    /// <summary>Waits until no connection is open and, given <paramref name="acceptedMetric"/>, the start-up check's connection
    /// (the only one so far) has been accepted; returns that scrape.</summary>
    private static async Task<string> QuietAsync(string endpoint, string openMetric, string? acceptedMetric = null)
    {
        string text = string.Empty;
        await Poll.UntilAsync(() => Value(text = ScrapeAsync(endpoint).GetAwaiter().GetResult(), openMetric) == 0
            && (acceptedMetric is null || Value(text, acceptedMetric) >= 1), Quick, "no connection open", () => text);
        return text;
    }

    private static async Task<string> ScrapeAsync(string endpoint)
    {
        using var http = new HttpClient { Timeout = Quick };
        return await http.GetStringAsync(new Uri($"http://{endpoint["IP:".Length..]}/metrics"));
    }

    /// <summary>The sum of the samples of <paramref name="name"/> whose labels include <paramref name="labels"/>.</summary>
    private static double Value(string exposition, string name, params (string Key, string Value)[] labels)
    {
        double sum = 0;
        bool found = false;
        foreach (string line in exposition.Split('\n'))
        {
            Match m = Regex.Match(line, @"^([a-z_]+)(?:\{(.*)\})? (\S+)$");
            if (!m.Success || m.Groups[1].Value != name)
            {
                continue;
            }

            string labelText = m.Groups[2].Value;
            if (labels.All(l => labelText.Contains($"{l.Key}=\"{l.Value}\"", StringComparison.Ordinal)))
            {
                sum += double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
                found = true;
            }
        }

        return found ? sum : throw new Xunit.Sdk.XunitException($"no sample {name} with {string.Join(",", labels)} in:\n{exposition}");
    }
}
