using System.Globalization;
using System.Text.Json;
using Distcache.Apache.Tests.Support;

namespace Distcache.Apache.Tests;

/// <summary>
/// Two real Apache servers (Debian's apache2 2.4, event MPM or prefork, mod_ssl, <c>SSLSessionTickets off</c>) share TLS
/// sessions through an Apache socache module, libdistcache, dc_client and dc_server: a session made on one server
/// resumes on the other, at once and seconds later, under 16 concurrent clients without a crashed child or a failed
/// handshake, and Apache keeps serving in bounded time while dc_client is down or frozen. Run for Apache's own
/// mod_socache_dc (unchanged) and for this repository's mod_socache_distcache; the figures are printed for the docs.
/// </summary>
public abstract class ApacheSessionCacheTests<TPair>(TPair pair, ITestOutputHelper output)
    where TPair : ApachePair
{
    /// <summary>Cross-server resumptions in the load test (at least 600), over this many concurrent clients.</summary>
    private const int LoadPairs = 640;
    private const int LoadClients = 16;

    /// <summary>Added to the library's time limit for the rest of a handshake and a loaded 2-core machine, which may
    /// stall a process for a second or two; a handshake that waited on the frozen cache without a limit would never
    /// end.</summary>
    private const int SlackMs = 3000;

    /// <summary>The set-up under test, for the tests of one module only.</summary>
    protected TPair Pair => pair;

    protected ITestOutputHelper Output => output;

    private const int SIGSTOP = 19;
    private const int SIGCONT = 18;

    /// <summary>
    /// How many cache stores a fresh full handshake makes: one session in TLS 1.2; in TLS 1.3 OpenSSL sends two
    /// (stateful) tickets by default, each a session stored in the cache. Each may wait for the library's time limit.
    /// </summary>
    private static int StoresPerFullHandshake(string tls) => tls == "1.3" ? 2 : 1;

    /// <summary>The longest a full handshake plus one HTTP request may take while the cache does not answer.</summary>
    private static int BoundMs(string tls) => (StoresPerFullHandshake(tls) * ApachePair.LibraryTimeoutMs) + SlackMs;

    /// <summary>Where each server's error log ended when the test began: the test reports only what it caused.</summary>
    private readonly Dictionary<ApacheServer, int> _logStart = [];

    private void Describe()
    {
        foreach (ApacheServer apache in pair.Apaches)
        {
            _logStart[apache] = apache.ReadErrorLog().Length;
        }

        output.WriteLine(pair.Build.Log.TrimEnd().Replace(Environment.NewLine, "; ", StringComparison.Ordinal));
        output.WriteLine($"{pair.Description}; Apache {pair.First.Endpoint} and {pair.Second.Endpoint} (ServerName {ApachePair.ServerName}), "
            + $"dc_client UNIX:{pair.DcClientSocket} -> dc_server {pair.DcServerAddress} (-sessions {ApachePair.DcServerSessions}); "
            + $"environment {string.Join(' ', pair.LibraryEnvironment.Select(kv => $"{kv.Key}={kv.Value}"))}");
    }

    private void AssertNoCrash()
    {
        var crashes = pair.Apaches.SelectMany(a => a.CrashLines().Select(line => $"{a.Endpoint}: {line}")).ToList();
        output.WriteLine($"crashed Apache children (error log lines): {crashes.Count}");
        foreach (string line in crashes.Take(20))
        {
            output.WriteLine("  " + line);
        }

        Assert.Empty(crashes);
        Assert.All(pair.Apaches, a => Assert.False(a.HasExited, $"Apache {a.Endpoint} exited:\n{a.Diagnostics()}"));
    }

    [Theory(Timeout = 60_000)]
    [InlineData("1.2")]
    [InlineData("1.3")]
    public async Task A_session_made_on_one_server_resumes_on_the_other_at_once(string tls)
    {
        Describe();
        JsonElement forth = await TlsClient.PairAsync(tls, ApachePair.ServerName, pair.First.Endpoint, pair.Second.Endpoint, count: 5);
        JsonElement back = await TlsClient.PairAsync(tls, ApachePair.ServerName, pair.Second.Endpoint, pair.First.Endpoint, count: 5);
        foreach (JsonElement report in new[] { forth, back })
        {
            output.WriteLine($"TLS {tls}: {report.Int("reused")} of {report.Int("pairs")} sessions resumed on the other server at once, "
                + $"{report.Int("failed")} failed; first handshakes resumed: {report.Int("first_reused")}");
        }

        foreach (JsonElement report in new[] { forth, back })
        {
            Assert.True(report.Int("failed") == 0, report.ToString());
            Assert.True(report.Int("first_reused") == 0, "a fresh client's first handshake cannot be a resumption: " + report);
            Assert.True(report.Int("reused") == report.Int("pairs"), report.ToString());
        }

        AssertNoCrash();
    }

    [Theory(Timeout = 60_000)]
    [InlineData("1.2")]
    [InlineData("1.3")]
    public async Task A_session_made_on_one_server_resumes_on_the_other_three_seconds_later(string tls)
    {
        Describe();
        // Apache's mod_socache_dc hands the library only the millisecond part of the lifetime (under a second): the
        // session outlives that only if the library lifts short lifetimes (DISTCACHE_MIN_SESSION_TIMEOUT_MS).
        JsonElement report = await TlsClient.PairAsync(tls, ApachePair.ServerName, pair.Second.Endpoint, pair.First.Endpoint, count: 1, delaySeconds: 3);
        JsonElement details = report.GetProperty("details")[0];
        output.WriteLine($"TLS {tls}: session made on {pair.Second.Endpoint}, offered to {pair.First.Endpoint} 3 s later: "
            + $"{(report.Int("reused") == 1 ? "resumed" : "NOT resumed")} ({details})");
        Assert.True(report.Int("failed") == 0, report.ToString());
        Assert.True(report.Int("reused") == 1, report.ToString());
        AssertNoCrash();
    }

    [Theory(Timeout = 150_000)]
    [InlineData("1.2")]
    [InlineData("1.3")]
    public async Task Sixteen_concurrent_clients_resume_across_servers_with_no_crash_and_no_failed_handshake(string tls)
    {
        Describe();
        JsonElement report = await TlsClient.LoadAsync(tls, ApachePair.ServerName, pair.First.Endpoint, pair.Second.Endpoint, LoadClients, LoadPairs);
        int pairs = report.Int("pairs");
        int resumed = report.Int("resumed");
        int crashes = pair.Apaches.Sum(a => a.CrashLines().Count);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"TLS {tls}, {report.Int("clients")} concurrent clients, {pairs} cross-server resumptions (alternating direction) in {report.Double("elapsed_s"):F1} s: "
            + $"resumed {resumed} ({100.0 * resumed / Math.Max(1, pairs):F1}%), full handshakes {report.Int("full")}, failed {report.Int("failed")}, "
            + $"crashed children {crashes}; handshakes {report.Int("handshakes")}: p50 {report.Double("p50_handshake_ms"):F1} ms, "
            + $"p99 {report.Double("p99_handshake_ms"):F1} ms, longest {report.Double("longest_handshake_ms"):F1} ms (longest with the request {report.Double("longest_request_ms"):F1} ms)"));
        foreach (JsonProperty error in report.GetProperty("errors").EnumerateObject())
        {
            output.WriteLine($"  {error.Value.GetInt32()} x {error.Name}");
        }

        ReportModuleMessages();
        AssertNoCrash();
        Assert.Equal(LoadPairs, pairs);
        Assert.True(report.Int("failed") == 0, "failed handshakes: " + report.GetProperty("errors"));
        Assert.True(resumed * 100 >= pairs * 95, $"only {resumed} of {pairs} sessions resumed on the other server: {report}");
    }

    [Fact(Timeout = 180_000)]
    public async Task With_dc_client_down_or_frozen_Apache_serves_full_handshakes_in_bounded_time_and_resumption_comes_back_by_itself()
    {
        Describe();
        try
        {
            // Stopped: the library cannot connect to the socket, every cache operation fails at once.
            await pair.StopDcClientAsync();
            output.WriteLine("dc_client stopped (SIGTERM):");
            foreach (string tls in new[] { "1.2", "1.3" })
            {
                foreach (ApacheServer apache in pair.Apaches)
                {
                    JsonElement report = await TlsClient.HandshakesAsync(tls, ApachePair.ServerName, apache.Endpoint, 10, BoundMs(tls));
                    ReportHandshakes($"  TLS {tls} on {apache.Endpoint}", report, BoundMs(tls));
                    AssertServed(report, 10, BoundMs(tls));
                }

                JsonElement across = await TlsClient.PairAsync(tls, ApachePair.ServerName, pair.First.Endpoint, pair.Second.Endpoint, count: 3);
                output.WriteLine($"  TLS {tls}: cross-server resumptions while dc_client is down: {across.Int("reused")} of 3 (failed {across.Int("failed")})");
                Assert.True(across.Int("failed") == 0, across.ToString());
                Assert.True(across.Int("reused") == 0, "with the shared cache down no session can cross servers; did Apache use another cache? " + across);
            }

            await pair.StartDcClientAsync();
            foreach (string tls in new[] { "1.2", "1.3" })
            {
                (int attempts, TimeSpan elapsed) = await pair.WaitForResumptionAsync(tls, TimeSpan.FromSeconds(20));
                output.WriteLine($"  dc_client started again: TLS {tls} cross-server resumption back after {attempts} attempt(s), {elapsed.TotalMilliseconds:F0} ms");
            }

            // Frozen (SIGSTOP): connections are accepted by the kernel and never answered, so each cache operation
            // waits for the library's time limit; Apache must still answer within that bound per store.
            pair.DcClient.Signal(SIGSTOP);
            output.WriteLine($"dc_client frozen (SIGSTOP), library time limit DISTCACHE_TIMEOUT_MS={ApachePair.LibraryTimeoutMs}:");
            Task<JsonElement> frozen12 = TlsClient.HandshakesAsync("1.2", ApachePair.ServerName, pair.First.Endpoint, 3, BoundMs("1.2"));
            Task<JsonElement> frozen13 = TlsClient.HandshakesAsync("1.3", ApachePair.ServerName, pair.Second.Endpoint, 3, BoundMs("1.3"));
            JsonElement[] frozen = await Task.WhenAll(frozen12, frozen13);
            pair.DcClient.Signal(SIGCONT);
            ReportHandshakes($"  TLS 1.2 on {pair.First.Endpoint}", frozen[0], BoundMs("1.2"));
            ReportHandshakes($"  TLS 1.3 on {pair.Second.Endpoint}", frozen[1], BoundMs("1.3"));
            AssertServed(frozen[0], 3, BoundMs("1.2"));
            AssertServed(frozen[1], 3, BoundMs("1.3"));

            foreach (string tls in new[] { "1.2", "1.3" })
            {
                (int attempts, TimeSpan elapsed) = await pair.WaitForResumptionAsync(tls, TimeSpan.FromSeconds(20));
                output.WriteLine($"  dc_client resumed (SIGCONT): TLS {tls} cross-server resumption back after {attempts} attempt(s), {elapsed.TotalMilliseconds:F0} ms");
            }
        }
        finally
        {
            await pair.EnsureDcClientAsync();
        }

        ReportModuleMessages();
        AssertNoCrash();
    }

    [Fact(Timeout = 90_000)]
    public async Task After_a_graceful_restart_of_both_servers_sessions_made_before_still_resume_and_new_ones_too()
    {
        Describe();
        // A graceful restart unloads and reloads the module and the library (whose fork handlers and thread-exit
        // destructor must not outlive its code) and forks new children from a parent that made a new context.
        // A session made before the restarts and offered to the other server after them: the client makes it and
        // waits, both servers restart, and only then is the client let go on, however long each step takes.
        using var dir = new TempDir();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        JsonElement before;
        await using (PairsInStages across = TlsClient.StartPairsInStages("1.2", ApachePair.ServerName, pair.First.Endpoint, pair.Second.Endpoint, countPerStage: 1, stages: 1, dir.Path))
        {
            await across.WaitUntilWaitingAsync(1, TimeSpan.FromSeconds(30));
            foreach (ApacheServer apache in pair.Apaches)
            {
                await apache.ReloadAsync();
            }

            output.WriteLine($"both servers restarted gracefully {clock.Elapsed.TotalSeconds:F1} s after the first handshake began");
            across.Release(1);
            before = (await across.ReportAsync(TimeSpan.FromSeconds(30))).GetProperty("stages")[0];
        }

        output.WriteLine($"the session made before the restarts {(before.Int("reused") == 1 ? "resumed" : "did NOT resume")} on the other server after them");
        Assert.True(before.Int("failed") == 0 && before.Int("reused") == 1, before.ToString());

        foreach (string tls in new[] { "1.2", "1.3" })
        {
            JsonElement after = await TlsClient.PairAsync(tls, ApachePair.ServerName, pair.First.Endpoint, pair.Second.Endpoint, count: 5);
            output.WriteLine($"after a graceful restart of both servers, TLS {tls}: {after.Int("reused")} of {after.Int("pairs")} resumed on the other server, {after.Int("failed")} failed");
            Assert.True(after.Int("failed") == 0 && after.Int("reused") == after.Int("pairs"), after.ToString());
        }

        AssertNoCrash();
    }

    /// <summary>Prints what the socache module logged (at info level and above) so far, by message.</summary>
    private void ReportModuleMessages()
    {
        foreach (ApacheServer apache in pair.Apaches)
        {
            var messages = apache.ModuleMessages(pair.LogTag, _logStart.GetValueOrDefault(apache));
            output.WriteLine($"Apache {apache.Endpoint} error log, {pair.LogTag} messages during this test: {messages.Sum(m => m.Count)}");
            foreach ((string message, int count) in messages.Take(8))
            {
                output.WriteLine($"  {count} x {message}");
            }
        }
    }

    private void ReportHandshakes(string what, JsonElement report, int boundMs)
    {
        string times = string.Join(", ", report.GetProperty("request_ms").EnumerateArray().Select(t => t.GetDouble().ToString("F0", CultureInfo.InvariantCulture)));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{what}: {report.Int("ok")} of {report.Int("count")} full handshakes served, {report.Int("failed")} failed, "
            + $"longest handshake {report.Double("longest_handshake_ms"):F0} ms, longest with the request {report.Double("longest_request_ms"):F0} ms "
            + $"(bound {boundMs} ms); each handshake+request ms: {times}"));
    }

    private static void AssertServed(JsonElement report, int count, int boundMs)
    {
        Assert.True(report.Int("ok") == count, "handshakes failed: " + report);
        Assert.True(report.Double("longest_request_ms") <= boundMs, $"a handshake took longer than {boundMs} ms: {report}");
    }
}

/// <summary>Apache's own mod_socache_dc (Debian's apache2 source, unchanged) with this repository's libdistcache.</summary>
public sealed class DebianModSocacheDcTests(DebianModulePair pair, ITestOutputHelper output)
    : ApacheSessionCacheTests<DebianModulePair>(pair, output), IClassFixture<DebianModulePair>;

/// <summary>This repository's mod_socache_distcache (native/apache) with libdistcache.</summary>
public sealed class ModSocacheDistcacheTests(DistcacheModulePair pair, ITestOutputHelper output)
    : ApacheSessionCacheTests<DistcacheModulePair>(pair, output), IClassFixture<DistcacheModulePair>
{
    /// <summary>apachectl -t: an address the library cannot connect to is a configuration error that names the
    /// address and the rule; a good one passes.</summary>
    [Theory(Timeout = 60_000)]
    [InlineData("IP:9001", "a client needs IP:host:port")]
    [InlineData("IP:cache.example:99999", "the port is not a number from 1 to 65535")]
    [InlineData("IPv6:::1:9001", "IPv6:[address]:port")]
    [InlineData("FD:3", "expected UNIX:/path/to/socket")]
    [InlineData("UNIX:/run/dc_client.sock", null)]
    public async Task The_configuration_test_refuses_an_address_that_cannot_be_connected_to(string address, string? rule)
    {
        string dir = Directory.CreateTempSubdirectory("dc-apache-config-").FullName;
        try
        {
            string module = Pair.Build.OwnModule ?? throw new InvalidOperationException(Pair.Build.OwnModuleError);
            string config = Path.Combine(dir, "httpd.conf");
            await File.WriteAllTextAsync(config, $"""
                ServerRoot "{dir}"
                DefaultRuntimeDir "{dir}"
                PidFile "{dir}/httpd.pid"
                ErrorLog "{dir}/error.log"
                LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
                LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
                LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
                LoadModule socache_distcache_module {module}
                ServerName cache.test
                Listen 127.0.0.1:8443
                SSLSessionCache dc:{address}
                """);
            ProcessResult check = await Tool.RunProgramAsync(ApacheServer.Binary, ["-t", "-f", config], TimeSpan.FromSeconds(30));
            Output.WriteLine($"apache2 -t with SSLSessionCache dc:{address}: exit {check.ExitCode}\n{check.Output}");
            if (rule is null)
            {
                Assert.True(check.Succeeded, check.Output);
            }
            else
            {
                Assert.False(check.Succeeded, check.Output);
                Assert.Contains($"'{address}'", check.Output, StringComparison.Ordinal);
                Assert.Contains(rule, check.Output, StringComparison.Ordinal);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact(Timeout = 60_000)]
    public async Task Mod_status_shows_the_cache_target_and_the_counters_of_the_child_that_answers()
    {
        // Sessions first, so that some child has counted something; mod_status answers from whichever child
        // serves the request, so the test checks the report's shape and the target, not one child's counts.
        await TlsClient.PairAsync("1.2", ApachePair.ServerName, Pair.First.Endpoint, Pair.Second.Endpoint, count: 3);
        JsonElement report = await TlsClient.FetchAsync("1.2", ApachePair.ServerName, Pair.First.Endpoint, "/server-status?auto");
        string body = report.GetProperty("body").GetString() ?? "";
        Output.WriteLine(body);
        Assert.Equal(200, report.Int("status"));
        Assert.Contains("CacheType: DC\n", body, StringComparison.Ordinal);
        Assert.Contains($"CacheTarget: UNIX:{Pair.DcClientSocket}\n", body, StringComparison.Ordinal);
        foreach (string counter in new[] { "CacheStoreCount", "CacheRetrieveCount", "CacheRetrieveHitCount", "CacheRetrieveMissCount", "CacheRemoveCount", "CacheFailureCount" })
        {
            Assert.Matches($"(?m)^{counter}: [0-9]+$", body);
        }
    }
}

/// <summary>mod_socache_distcache under the prefork MPM (the other classes run the event MPM).</summary>
public sealed class ModSocacheDistcachePreforkTests(DistcacheModulePreforkPair pair, ITestOutputHelper output)
    : ApacheSessionCacheTests<DistcacheModulePreforkPair>(pair, output), IClassFixture<DistcacheModulePreforkPair>;
