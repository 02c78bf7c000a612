using System.Diagnostics;
using Distcache.Storage.Tests;

namespace Distcache.Storage.Redis.Tests;

/// <summary>The store against a Redis that requires a password, and one that speaks only TLS (each its own server).</summary>
public sealed class RedisSecurityTests : IDisposable
{
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);
    private readonly string _dir = Directory.CreateTempSubdirectory("distcache-redis-tls-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static RedisSessionStore Store(string endpoint, Action<RedisSessionStoreOptions> configure)
    {
        var options = new RedisSessionStoreOptions { OperationTimeout = TimeSpan.FromSeconds(5), ConnectTimeout = TimeSpan.FromSeconds(5) };
        options.Endpoints.Add(endpoint);
        configure(options);
        return new RedisSessionStore(options);
    }

    [Fact(Timeout = 60_000)]
    public async Task Password_is_sent_and_a_wrong_one_is_a_failure_not_a_hang()
    {
        await using RedisServers redis = await RedisServers.StartAsync("--requirepass", "s3cret");
        string endpoint = redis.Endpoints.First();

        using (RedisSessionStore right = Store(endpoint, o => o.Password = "s3cret"))
        {
            Assert.Equal(AddResult.Stored, await right.AddAsync(TestData.Id("a"), TestData.Data(10, 1), Minute));
            Assert.Equal(TestData.Data(10, 1), await right.ReadAsync(TestData.Id("a")));
        }

        var started = Stopwatch.StartNew();
        using RedisSessionStore wrong = Store(endpoint, o => o.Password = "guess");
        Assert.Equal(AddResult.Failed, await wrong.AddAsync(TestData.Id("b"), TestData.Data(10, 2), Minute));
        Assert.Null(await wrong.ReadAsync(TestData.Id("a")));
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(30), $"took {started.Elapsed}");
    }

    [Fact(Timeout = 90_000)]
    public async Task Tls_with_a_private_authority_works_and_without_trusting_it_fails()
    {
        string ca = Path.Combine(_dir, "ca.pem");
        string caKey = Path.Combine(_dir, "ca.key");
        string cert = Path.Combine(_dir, "redis.pem");
        string key = Path.Combine(_dir, "redis.key");
        string csr = Path.Combine(_dir, "redis.csr");
        string ext = Path.Combine(_dir, "ext.cnf");
        await File.WriteAllTextAsync(ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
        await OpenSslAsync("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey, "-out", ca, "-days", "2", "-subj", "/CN=distcache test CA");
        await OpenSslAsync("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1");
        await OpenSslAsync("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext);

        int tlsPort = RedisServers.FreePort();
        await using RedisServers redis = await RedisServers.StartAsync(
            "--tls-port", tlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no");
        string endpoint = $"127.0.0.1:{tlsPort}";

        using (RedisSessionStore trusted = Store(endpoint, o => { o.UseTls = true; o.TlsCertificateAuthorityFile = ca; }))
        {
            Assert.Equal(AddResult.Stored, await trusted.AddAsync(TestData.Id("tls"), TestData.Data(100, 1), Minute));
            Assert.Equal(TestData.Data(100, 1), await trusted.ReadAsync(TestData.Id("tls")));
        }

        // The system does not trust the test authority: the connection must not be made.
        using RedisSessionStore untrusted = Store(endpoint, o => o.UseTls = true);
        Assert.Equal(AddResult.Failed, await untrusted.AddAsync(TestData.Id("tls2"), TestData.Data(10, 2), Minute));
    }

    [Fact]
    public void An_authority_without_tls_is_refused()
    {
        var options = new RedisSessionStoreOptions { TlsCertificateAuthorityFile = "/some/ca.pem" };
        options.Endpoints.Add("127.0.0.1:6379");
        Assert.Throws<ArgumentException>(() => RedisSessionStore.CreateConfiguration(options));
    }

    private static async Task OpenSslAsync(params string[] args)
    {
        var start = new ProcessStartInfo("openssl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(process.ExitCode == 0, $"openssl {string.Join(' ', args)}: {await stderr}");
    }
}
