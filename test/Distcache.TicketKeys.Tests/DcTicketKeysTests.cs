using System.Text;
using Distcache.Client;
using Distcache.Networking;

using Distcache.TicketKeys.Tests.Support;

namespace Distcache.TicketKeys.Tests;

/// <summary>
/// The real dc_ticketkeys against the real dc_server, directly, through dc_client, on the Redis store and over mutual
/// TLS with partitions; one pass (-once) and the service across rotations and an outage.
/// </summary>
public sealed class DcTicketKeysTests : IAsyncLifetime
{
    // Long enough that no rotation falls inside a test that is not about one (a boundary every two days).
    private const string StillPeriod = "172800";
    private static readonly TimeSpan Exit = TimeSpan.FromSeconds(30);
    private readonly TempDir _dir = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }

    private string Host(string name)
    {
        string path = _dir.File(name);
        Directory.CreateDirectory(path);
        return path;
    }

    private static Task<Tool> OnceAsync(string cache, string host, params string[] extra) =>
        Tool.RunAsync(Exit, "dc_ticketkeys", ["-connect", cache, "-nginx", host, "-state", Path.Combine(host, "state"), "-once", .. extra]);

    private static byte[] Read(string host, string file) => File.ReadAllBytes(Path.Combine(host, file));

    [Theory]
    [InlineData("dc_server")]
    [InlineData("dc_client")]
    [InlineData("redis")]
    public async Task Two_hosts_get_the_same_keys_from_whichever_cache(string cache)
    {
        await using RedisServers? redis = cache == "redis" ? await RedisServers.StartAsync() : null;
        var (server, serverAddress) = redis is null
            ? await ServerProcess.StartTcpAsync()
            : await ServerProcess.StartTcpAsync("-store", "redis:" + string.Join(',', redis.Endpoints));
        await using var _ = server;
        string address = serverAddress;
        Tool? proxy = null;
        if (cache == "dc_client")
        {
            address = "UNIX:" + _dir.File("dc_client.sock");
            proxy = Tool.Start("dc_client", "-listen", address, "-server", serverAddress);
            await proxy.WaitForListenerAsync(address);
        }

        await using (proxy)
        {
            string web1 = Host("web1"), web2 = Host("web2");
            await using Tool first = await OnceAsync(address, web1, "-period", StillPeriod, "-haproxy", Path.Combine(web1, "haproxy.keys"), "-apache", Path.Combine(web1, "apache.key"));
            Assert.True(first.ExitCode == 0, first.Output);
            Assert.Contains("Info, made the key of period ", first.Stderr, StringComparison.Ordinal);
            await using Tool second = await OnceAsync(address, web2, "-period", StillPeriod, "-haproxy", Path.Combine(web2, "haproxy.keys"), "-apache", Path.Combine(web2, "apache.key"));
            Assert.True(second.ExitCode == 0, second.Output);
            Assert.DoesNotContain("made the key", second.Stderr, StringComparison.Ordinal);
            Assert.Contains("Info, took the key of period ", second.Stderr, StringComparison.Ordinal);

            foreach (string file in new[] { "current.key", "next.key", "previous.key", "haproxy.keys", "apache.key" })
            {
                Assert.Equal(Read(web1, file), Read(web2, file));
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(web2, file)));
            }

            Assert.Equal(80, Read(web1, "current.key").Length);
            Assert.NotEqual(Read(web1, "current.key"), Read(web1, "next.key"));

            // No previous key was ever made: its slot repeats the current one.
            Assert.Equal(Read(web1, "current.key"), Read(web1, "previous.key"));
            Assert.Equal(3, File.ReadAllLines(Path.Combine(web1, "haproxy.keys")).Length);
            Assert.Equal(48, Read(web1, "apache.key").Length);

            // The keys themselves never reach the log, in any of their forms.
            foreach (string form in new[] { Convert.ToHexString(Read(web1, "current.key")), Convert.ToBase64String(Read(web1, "current.key")), File.ReadAllLines(Path.Combine(web1, "haproxy.keys"))[1] })
            {
                Assert.DoesNotContain(form, first.Output, StringComparison.OrdinalIgnoreCase);
                Assert.DoesNotContain(form[20..40], first.Output, StringComparison.OrdinalIgnoreCase);
            }
        }
    }

    /// <summary>Regression: with only Apache's file to write, the log said the servers also decrypt with the next
    /// period's key, which Apache, holding one key, never does.</summary>
    [Fact]
    public async Task With_only_apaches_file_the_log_says_its_one_key_is_the_only_one_the_servers_use()
    {
        var (server, address) = await ServerProcess.StartUnixAsync(_dir);
        await using var _ = server;
        string host = Host("apache-only");
        await using Tool once = await Tool.RunAsync(Exit, "dc_ticketkeys",
            ["-connect", address, "-apache", Path.Combine(host, "ticket.key"), "-state", Path.Combine(host, "state"), "-once", "-period", StillPeriod]);
        Assert.True(once.ExitCode == 0, once.Output);
        Assert.Matches(@"Info, servers encrypt and decrypt with the key of period \d+ \(key [0-9a-f]{8}\) alone \(Apache's file holds one key\)", once.Stderr);
        Assert.DoesNotContain("also decrypt", once.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unchanged_files_are_not_written_again_and_the_reload_runs_only_after_a_change()
    {
        var (server, address) = await ServerProcess.StartUnixAsync(_dir);
        await using var _ = server;
        string web = Host("web");
        string reloads = _dir.File("reloads");
        string reload = $"echo reloaded >> {reloads}";
        await using (Tool first = await OnceAsync(address, web, "-period", StillPeriod, "-reload", reload))
        {
            Assert.True(first.ExitCode == 0, first.Output);
            Assert.Contains($"Info, ran the reload command ({reload})", first.Stderr, StringComparison.Ordinal);
        }

        DateTime written = File.GetLastWriteTimeUtc(Path.Combine(web, "current.key"));
        await using (Tool again = await OnceAsync(address, web, "-period", StillPeriod, "-reload", reload))
        {
            Assert.True(again.ExitCode == 0, again.Output);

            // Silent: cron mails whatever a job prints.
            Assert.Equal(string.Empty, again.Output);
        }

        Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(web, "current.key")));
        Assert.Equal(["reloaded"], File.ReadAllLines(reloads));
    }

    [Fact]
    public async Task A_failing_reload_command_fails_the_pass_and_is_run_again_next_time()
    {
        var (server, address) = await ServerProcess.StartUnixAsync(_dir);
        await using var _ = server;
        string web = Host("web");
        await using Tool service = Tool.Start("dc_ticketkeys", "-connect", address, "-nginx", web, "-state", Path.Combine(web, "state"),
            "-period", StillPeriod, "-retry", "1", "-reload", $"echo try >> {_dir.File("tries")}; echo nginx: [emerg] no; exit 3");
        await service.WaitUntilAsync(() => File.Exists(_dir.File("tries")) && File.ReadAllLines(_dir.File("tries")).Length >= 2, TimeSpan.FromSeconds(20), "a second try of the reload");
        Assert.Contains("Error, the reload command (echo try", service.Stderr, StringComparison.Ordinal);
        Assert.Contains("exited with status 3: nginx: [emerg] no; the servers may still hold the old keys, trying again in 1 s", service.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_reload_that_failed_is_owed_by_the_next_once_run_even_though_the_files_are_current()
    {
        var (server, address) = await ServerProcess.StartUnixAsync(_dir);
        await using var _ = server;
        string web = Host("web");
        string reloads = _dir.File("reloads");
        await using (Tool failing = await OnceAsync(address, web, "-period", StillPeriod, "-reload", "echo nginx: [emerg] not now; exit 1"))
        {
            Assert.Equal(1, failing.ExitCode);
            Assert.Contains("Error, the reload command (echo nginx: [emerg] not now; exit 1) exited with status 1: nginx: [emerg] not now;", failing.Stderr, StringComparison.Ordinal);
        }

        await using (Tool owed = await OnceAsync(address, web, "-period", StillPeriod, "-reload", $"echo reloaded >> {reloads}"))
        {
            Assert.True(owed.ExitCode == 0, owed.Output);
            Assert.DoesNotContain("wrote", owed.Stderr, StringComparison.Ordinal);
            Assert.Contains("Info, ran the reload command", owed.Stderr, StringComparison.Ordinal);
        }

        await using (Tool paid = await OnceAsync(address, web, "-period", StillPeriod, "-reload", $"echo reloaded >> {reloads}"))
        {
            Assert.True(paid.ExitCode == 0, paid.Output);
            Assert.Equal(string.Empty, paid.Output);
        }

        Assert.Equal(["reloaded"], File.ReadAllLines(reloads));
    }

    [Fact]
    public async Task A_file_that_cannot_be_written_does_not_keep_the_others_from_being_written_and_reloaded()
    {
        Assert.SkipWhen(SignalDisposition.IsIgnored(Native.SIGHUP), "this test run ignores SIGHUP (started under nohup?), and so would dc_ticketkeys");
        var (server, address) = await ServerProcess.StartUnixAsync(_dir);
        await using var _ = server;
        string web = Host("web");
        string apache = Path.Combine(Host("apache"), "ticket.key");
        string reloads = _dir.File("reloads");
        await using Tool service = Tool.Start("dc_ticketkeys", "-connect", address, "-nginx", web, "-apache", apache, "-state", Path.Combine(web, "state"),
            "-period", StillPeriod, "-retry", "1", "-reload", $"echo reloaded >> {reloads}");
        await service.WaitUntilAsync(() => File.Exists(reloads), TimeSpan.FromSeconds(20), "the first reload");

        // Apache's file cannot be replaced any more (a directory stands at its path), and nginx's needs writing again.
        File.Delete(apache);
        Directory.CreateDirectory(apache);
        File.Delete(Path.Combine(web, "current.key"));
        service.Signal(Native.SIGHUP);
        await service.WaitUntilAsync(() => File.ReadAllLines(reloads).Length >= 2, TimeSpan.FromSeconds(20), "the reload for nginx's rewritten file");
        Assert.True(File.Exists(Path.Combine(web, "current.key")));
        Assert.Contains($"Error, cannot write {apache}: ", service.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_reload_command_that_leaves_a_process_behind_does_not_hold_the_pass()
    {
        var (server, address) = await ServerProcess.StartUnixAsync(_dir);
        await using var _ = server;
        string web = Host("web");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await using Tool once = await OnceAsync(address, web, "-period", StillPeriod, "-reload", "sleep 20 & echo started a daemon");
        Assert.True(once.ExitCode == 0, once.Output);
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(15));
    }

    [Fact]
    public async Task A_shutdown_in_the_middle_of_a_pass_ends_the_service_cleanly()
    {
        // A cache that accepts and never answers (no script: its connections only queue): the pass waits on its
        // first request.
        await using var silent = new FakeServer();
        string address = silent.Address.ToString();
        string web = Host("web");
        await using Tool service = Tool.Start("dc_ticketkeys", "-connect", address, "-nginx", web, "-state", Path.Combine(web, "state"), "-period", StillPeriod, "-timeout", "20000");

        // The signal must come once the pass is waiting (and so after the handlers are in place), however slowly
        // the service starts: its first request to the cache says so.
        FakeConnection connection = await silent.NextConnectionAsync(TimeSpan.FromSeconds(30));
        await connection.NextRequestAsync(TimeSpan.FromSeconds(30));
        Assert.False(service.HasExited, service.Output);
        service.Signal(Native.SIGTERM);
        await service.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.True(service.ExitCode == 0, service.Output);
        Assert.DoesNotContain("Unhandled exception", service.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_service_rotates_at_the_boundary_keeping_the_old_key_for_decryption_and_reloads()
    {
        var (server, address) = await ServerProcess.StartUnixAsync(_dir);
        await using var _ = server;
        string web = Host("web");
        string reloads = _dir.File("reloads");
        await Periods.StartAsync(10, latest: TimeSpan.FromMilliseconds(300), after: TimeSpan.FromMilliseconds(50));
        await using Tool service = Tool.Start("dc_ticketkeys", "-connect", address, "-nginx", web, "-state", Path.Combine(web, "state"),
            "-period", "10", "-reload", $"date +%s.%N >> {reloads}");
        await service.WaitUntilAsync(() => File.Exists(reloads), TimeSpan.FromSeconds(20), "the first reload");
        byte[] current = Read(web, "current.key"), next = Read(web, "next.key");

        await service.WaitUntilAsync(() => File.ReadAllLines(reloads).Length >= 2, TimeSpan.FromSeconds(25), "the reload after a rotation");
        Assert.Equal(current, Read(web, "previous.key"));
        Assert.Equal(next, Read(web, "current.key"));
        Assert.NotEqual(next, Read(web, "next.key"));

        // The rotation came at the period's start (a multiple of 10 s since the epoch), not some time after it. The
        // pass and the reload's shell run after the boundary on a possibly busy machine, hence half a period of slack.
        double at = double.Parse(File.ReadAllLines(reloads)[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(at % 10, 0, 5);
        Assert.Contains("Info, servers encrypt with the key of period ", service.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_the_cache_the_service_keeps_serving_rotates_to_the_known_next_key_and_restores_a_new_cache()
    {
        string socket = _dir.File("server.sock");
        string address = "UNIX:" + socket;
        // Disposed again at the end in case the test fails before it stops the server itself (a second dispose does
        // nothing).
        await using Tool server = Tool.Start("dc_server", "-listen", address);
        await server.WaitForListenerAsync(address);

        // Each step below must fall in a known period: the first keys and the outage in one, the cache's return and
        // the second host's pass in the next.
        await Periods.StartAsync(10, latest: TimeSpan.FromMilliseconds(300), after: TimeSpan.FromMilliseconds(50));
        string web = Host("web");

        // The outage is a unix socket with no server behind it, refused at once, so the timeout never delays noticing
        // it; a short one would only let a busy machine's slow first pass count as an outage of its own.
        await using Tool service = Tool.Start("dc_ticketkeys", "-connect", address, "-nginx", web, "-state", Path.Combine(web, "state"),
            "-period", "10", "-retry", "1", "-timeout", "5000");
        // previous.key is the last of the three written.
        await service.WaitUntilAsync(() => File.Exists(Path.Combine(web, "previous.key")), TimeSpan.FromSeconds(20), "the first keys");
        byte[] current = Read(web, "current.key"), next = Read(web, "next.key");

        await server.DisposeAsync();
        await service.WaitUntilAsync(() => service.Stderr.Contains("Warning, cannot reach the cache at " + address, StringComparison.Ordinal), TimeSpan.FromSeconds(15), "the outage noticed");

        // The next period's key was already here: the rotation happens without the cache.
        await service.WaitUntilAsync(() => Read(web, "current.key").AsSpan().SequenceEqual(next), TimeSpan.FromSeconds(15), "the rotation without the cache");
        Assert.Equal(current, Read(web, "previous.key"));
        Assert.Equal(1, Periods.Count(service.Stderr, "Warning, cannot reach the cache"));

        // A new, empty dc_server: the host puts back the keys it holds, so the farm keeps the same ones.
        await using Tool fresh = Tool.Start("dc_server", "-listen", address);
        await service.WaitUntilAsync(() => service.Stderr.Contains("Info, the cache at " + address + " answers again", StringComparison.Ordinal), TimeSpan.FromSeconds(15), "the cache back");
        Assert.Contains("the cache had lost the key of period ", service.Stderr, StringComparison.Ordinal);
        string other = Host("other");
        await using Tool second = await OnceAsync(address, other, "-period", "10");
        Assert.True(second.ExitCode == 0, second.Output);
        Assert.Equal(Read(web, "current.key"), Read(other, "current.key"));
    }

    [Fact]
    public async Task A_malformed_key_in_the_cache_fails_the_pass_and_is_never_written_out()
    {
        var (server, address) = await ServerProcess.StartUnixAsync(_dir);
        await using var _ = server;
        var schedule = new KeySchedule("default", 172800);
        long period = schedule.PeriodAt(DateTimeOffset.UtcNow);
        await using (DistcacheClient client = DistcacheClient.Connect(new DistcacheClientOptions { Address = Address.Parse(address) }))
        {
            byte[] forged = TicketKey.Create(period + 7, 172800).ToRecord();
            Assert.Equal(AddOutcome.Stored, await client.AddAsync(schedule.CacheId(period), forged, TimeSpan.FromMinutes(5)));
        }

        string web = Host("web");
        await using Tool once = await OnceAsync(address, web, "-period", StillPeriod);
        Assert.Equal(1, once.ExitCode);
        Assert.Contains($"Warning, the cache holds a malformed key for period {period} ('dctk1:default:172800:{period}'), which is not used: it is the key of period {period + 7}, not of period {period}", once.Stderr, StringComparison.Ordinal);
        Assert.Contains("Error, no ticket key is known yet", once.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(web, "current.key")));
    }

    [Fact]
    public async Task Over_mutual_tls_one_identity_writes_keys_and_read_only_web_hosts_read_them()
    {
        using var pki = new TestPki();
        File.WriteAllLines(pki.File("map"), ["ticketkeys rw CN=tenant-a, O=Shop", "ticketkeys ro CN=reader, O=Shop"]);
        var (server, address) = await ServerProcess.StartTcpAsync([.. pki.ServerFlags(), "-partition-map", pki.File("map")]);
        await using var _ = server;
        string[] As(string who) => ["-tls-ca", pki.Ca, "-tls-cert", pki.Pem(who), "-tls-key", pki.Key(who), "-tls-name", "localhost"];

        // A web host whose identity may only read, run before any key exists and without -readonly: it is told why.
        string early = Host("early");
        await using (Tool refused = await OnceAsync(address, early, ["-period", StillPeriod, .. As("reader")]))
        {
            Assert.Equal(1, refused.ExitCode);
            Assert.Contains("the cache refused to store the key for period ", refused.Stderr, StringComparison.Ordinal);
            Assert.Contains("give -readonly on such hosts", refused.Stderr, StringComparison.Ordinal);
        }

        // The writer: no server files of its own, it only makes keys.
        string writerState = _dir.File("writer.state");
        await using (Tool writer = await Tool.RunAsync(Exit, "dc_ticketkeys", ["-connect", address, "-state", writerState, "-once", "-period", StillPeriod, .. As("tenant-a")]))
        {
            Assert.True(writer.ExitCode == 0, writer.Output);
        }

        string web1 = Host("web1"), web2 = Host("web2");
        await using (Tool reader1 = await OnceAsync(address, web1, ["-period", StillPeriod, "-readonly", .. As("reader")]))
        await using (Tool reader2 = await OnceAsync(address, web2, ["-period", StillPeriod, "-readonly", .. As("reader")]))
        {
            Assert.True(reader1.ExitCode == 0, reader1.Output);
            Assert.True(reader2.ExitCode == 0, reader2.Output);
        }

        Assert.Equal(Read(web1, "current.key"), Read(web2, "current.key"));
        Assert.Equal(Read(web1, "next.key"), Read(web2, "next.key"));

        // Another identity's partition does not see the farm's keys.
        string stranger = Host("stranger");
        await using Tool other = await OnceAsync(address, stranger, ["-period", StillPeriod, "-readonly", .. As("tenant-b")]);
        Assert.Equal(1, other.ExitCode);
    }
}
