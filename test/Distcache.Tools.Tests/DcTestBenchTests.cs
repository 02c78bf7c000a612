using System.Globalization;
using System.Text.Json;

namespace Distcache.Tools.Tests;

/// <summary>dc_test -bench, the load generator, against the real dc_server (and dc_client) and a faulty fake.</summary>
public sealed class DcTestBenchTests
{
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task A_two_second_run_reports_sane_figures_and_its_json_has_every_field()
    {
        using var dir = new TempDir();
        var (server, address) = await ServerProcess.StartTcpAsync("-sessions", "2000");
        await using (server)
        {
            string json = dir.File("result.json");
            await using Tool bench = await Tool.RunAsync(RunLimit, "dc_test",
                "-connect", address, "-bench", "-duration", "2", "-warmup", "1", "-clients", "3", "-pipeline", "4", "-keys", "1000",
                "-mix", "get=80,add=10,remove=5,have=5", "-datamin", "100", "-datamax", "3000", "-json", json, "-serverpid", server.Pid.ToString(CultureInfo.InvariantCulture));
            Assert.True(bench.ExitCode == 0, bench.Stdout + bench.Stderr);

            // The text report: a throughput line and the latency percentiles.
            Assert.Matches(@"operations\s+\d+\s+\d+ ops/s", bench.Stdout);
            Assert.Matches(@"latency \(us\) min [\d.]+ +p50 [\d.]+ +p90 [\d.]+ +p99 [\d.]+ +p99.9 [\d.]+ +max [\d.]+", bench.Stdout);
            Assert.Contains("cpu server", bench.Stdout, StringComparison.Ordinal);

            using JsonDocument document = JsonDocument.Parse(await File.ReadAllTextAsync(json));
            JsonElement result = document.RootElement;
            Assert.Equal(address, result.GetProperty("target").GetString());
            Assert.Equal(3, result.GetProperty("clients").GetInt32());
            Assert.Equal(4, result.GetProperty("pipeline").GetInt32());
            Assert.Equal(1000, result.GetProperty("prefill").GetInt32());
            Assert.Equal(0, result.GetProperty("errors").GetInt64());
            // The window is the 2 s asked for, give or take a late timer on a busy machine.
            double duration = result.GetProperty("duration_s").GetDouble();
            Assert.InRange(duration, 1.99, 6);
            long operations = result.GetProperty("operations").GetInt64();
            Assert.True(operations > 500, $"only {operations} operations in 2 s");
            Assert.Equal(operations / duration, result.GetProperty("ops_per_sec").GetDouble(), 1.0);

            JsonElement byOperation = result.GetProperty("by_operation");
            long sum = 0;
            foreach (string name in new[] { "get", "add", "remove", "have" })
            {
                JsonElement op = byOperation.GetProperty(name);
                long count = op.GetProperty("count").GetInt64();
                Assert.True(count > 0, $"no {name} in the mix was measured");
                Assert.Equal(count, op.GetProperty("hits").GetInt64() + op.GetProperty("misses").GetInt64());
                Assert.Equal(0, op.GetProperty("errors").GetInt64());
                sum += count;
            }

            Assert.Equal(operations, sum);

            // Everything was prefilled and little is removed, so most GETs hit.
            JsonElement get = byOperation.GetProperty("get");
            Assert.True(get.GetProperty("hits").GetInt64() > get.GetProperty("misses").GetInt64());

            JsonElement latency = result.GetProperty("latency_us");
            double[] ordered = [.. new[] { "min", "p50", "p90", "p99", "p99_9", "max" }.Select(n => latency.GetProperty(n).GetDouble())];
            Assert.True(ordered[0] > 0);
            for (int i = 1; i < ordered.Length; i++)
            {
                Assert.True(ordered[i - 1] <= ordered[i], $"latency figures out of order: {string.Join(", ", ordered)}");
            }

            JsonElement cpu = result.GetProperty("cpu");
            Assert.True(cpu.GetProperty("client_us_per_op").GetDouble() > 0);
            Assert.True(cpu.GetProperty("server_us_per_op").GetDouble() > 0);
            Assert.True(result.GetProperty("allocated_bytes").GetInt64() >= 0);
        }
    }

    [Fact]
    public async Task Requests_mode_measures_exactly_that_many_and_json_to_stdout_is_pure_json()
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            await using Tool bench = await Tool.RunAsync(RunLimit, "dc_test",
                "-connect", address, "-bench", "-requests", "5000", "-warmup", "0", "-clients", "2", "-pipeline", "16", "-keys", "200", "-prefill", "100",
                "-datasize", "300", "-json", "-");
            Assert.True(bench.ExitCode == 0, bench.Stdout + bench.Stderr);
            using JsonDocument document = JsonDocument.Parse(bench.Stdout);
            Assert.Equal(5000, document.RootElement.GetProperty("operations").GetInt64());
            Assert.Equal(5000, document.RootElement.GetProperty("requests").GetInt64());

            // With -json - the readable report moves to stderr; half the keys exist, so GETs both hit and miss.
            Assert.Contains("ops/s", bench.Stderr, StringComparison.Ordinal);
            JsonElement get = document.RootElement.GetProperty("by_operation").GetProperty("get");
            Assert.True(get.GetProperty("hits").GetInt64() > 0 && get.GetProperty("misses").GetInt64() > 0, get.ToString());
        }
    }

    [Fact]
    public async Task Rate_paces_the_requests_at_the_asked_rate_and_the_json_records_it()
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            await using Tool bench = await Tool.RunAsync(RunLimit, "dc_test",
                "-connect", address, "-bench", "-rate", "2000", "-duration", "2", "-warmup", "1", "-clients", "4", "-pipeline", "4",
                "-keys", "200", "-datasize", "100", "-json", "-");
            Assert.True(bench.ExitCode == 0, bench.Stdout + bench.Stderr);
            using JsonDocument document = JsonDocument.Parse(bench.Stdout);
            JsonElement result = document.RootElement;
            Assert.Equal(2000, result.GetProperty("rate").GetInt32());
            Assert.Contains("paced at 2000 requests/s", bench.Stderr, StringComparison.Ordinal);

            // An open loop never sends ahead of its schedule; a busy machine may make it fall behind, by as much as a
            // stall of a second or more in a 2 s run, so the floor only shows that the requests flowed.
            double opsPerSec = result.GetProperty("ops_per_sec").GetDouble();
            Assert.InRange(opsPerSec, 500, 2000 * 1.05);
        }
    }

    [Fact]
    public async Task Short_opens_a_connection_per_request_and_refuses_a_deeper_pipeline()
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            await using Tool bench = await Tool.RunAsync(RunLimit, "dc_test",
                "-connect", address, "-bench", "-short", "-rate", "200", "-duration", "2", "-warmup", "1", "-clients", "2",
                "-keys", "100", "-datasize", "100", "-json", "-");
            Assert.True(bench.ExitCode == 0, bench.Stdout + bench.Stderr);
            using JsonDocument document = JsonDocument.Parse(bench.Stdout);
            JsonElement result = document.RootElement;
            Assert.True(result.GetProperty("short_connections").GetBoolean());
            Assert.Equal(1, result.GetProperty("pipeline").GetInt32());
            long operations = result.GetProperty("operations").GetInt64();
            Assert.InRange(operations, 100, 420); // 2 s at 200/s, never ahead; a busy machine may stall it for a second or more

            await using Tool stats = await Tool.RunAsync(RunLimit, "dc_test", "-connect", address, "-bench", "-short", "-pipeline", "4");
            Assert.Equal(1, stats.ExitCode);
            Assert.Contains("-short sends one request per connection, so -pipeline must be 1", stats.Stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Runs_through_dc_client()
    {
        Assert.SkipWhen(DcClient.IsPlaceholder, "apps/dc_client is still the placeholder that prints 'not implemented yet'");
        using var dir = new TempDir();
        var (server, serverAddress) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            string proxyAddress = $"UNIX:{dir.File("scache")}";
            await using Tool proxy = Tool.Start("dc_client", "-listen", proxyAddress, "-server", serverAddress);
            await proxy.WaitForListenerAsync(proxyAddress);
            await using Tool bench = await Tool.RunAsync(RunLimit, "dc_test", "-connect", proxyAddress, "-bench", "-duration", "2", "-clients", "4", "-pipeline", "4", "-json", "-");
            Assert.True(bench.ExitCode == 0, bench.Stdout + bench.Stderr);
            using JsonDocument document = JsonDocument.Parse(bench.Stdout);
            Assert.True(document.RootElement.GetProperty("operations").GetInt64() > 0);
            Assert.Equal(0, document.RootElement.GetProperty("errors").GetInt64());
        }
    }

    [Fact]
    public async Task Wrong_answers_are_counted_as_errors_and_fail_the_run()
    {
        await using var server = new FakeCacheServer(Fault.GetDisconnected);
        await using Tool bench = await Tool.RunAsync(RunLimit, "dc_test", "-connect", server.Address, "-bench", "-duration", "1", "-warmup", "0", "-keys", "50", "-json", "-");
        Assert.Equal(1, bench.ExitCode);
        Assert.Contains("Error, GET answered with status DISCONNECTED", bench.Stderr, StringComparison.Ordinal);
        using JsonDocument document = JsonDocument.Parse(bench.Stdout);
        JsonElement get = document.RootElement.GetProperty("by_operation").GetProperty("get");
        Assert.True(get.GetProperty("errors").GetInt64() > 0);
        Assert.Equal(get.GetProperty("errors").GetInt64(), document.RootElement.GetProperty("errors").GetInt64());
    }

    [Fact]
    public async Task Stays_quiet_when_output_is_not_a_terminal()
    {
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            await using Tool bench = await Tool.RunAsync(RunLimit, "dc_test", "-connect", address, "-bench", "-duration", "2", "-warmup", "0");
            Assert.True(bench.ExitCode == 0, bench.Stdout + bench.Stderr);
            Assert.DoesNotContain("\r", bench.Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain("[run", bench.Stdout, StringComparison.Ordinal);
            Assert.StartsWith("dc_test -bench: ", bench.Stdout, StringComparison.Ordinal);
            Assert.Equal(string.Empty, bench.Stderr);
        }
    }

    [Fact]
    public async Task A_server_that_is_not_there_is_an_error()
    {
        int port = Tool.FreePort();
        await using Tool bench = await Tool.RunAsync(RunLimit, "dc_test", "-connect", $"IP:127.0.0.1:{port}", "-bench", "-duration", "1");
        Assert.Equal(1, bench.ExitCode);
        Assert.StartsWith($"Error, failed to connect to IP:127.0.0.1:{port}", bench.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_paced_run_whose_server_dies_reports_the_lost_connections_instead_of_crashing_or_hanging()
    {
        // Under -rate a connection waits on its timer between requests, not only on the server: both waits must end
        // when the connection is lost, with an error and exit status 1.
        var (server, address) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            await using Tool bench = Tool.Start("dc_test",
                "-connect", address, "-bench", "-rate", "2000", "-duration", "30", "-warmup", "0", "-clients", "4", "-pipeline", "4",
                "-keys", "100", "-datasize", "100");
            await Task.Delay(TimeSpan.FromSeconds(1.5));
            server.Kill();
            await bench.WaitForExitAsync(RunLimit);
            Assert.Equal(1, bench.ExitCode);
            Assert.Contains("Error, ", bench.Stderr, StringComparison.Ordinal);
        }
    }
}
