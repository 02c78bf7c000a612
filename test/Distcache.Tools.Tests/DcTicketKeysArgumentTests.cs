using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Distcache.Tools.Tests;

/// <summary>
/// dc_ticketkeys's own start-up rules, on the real executable: what it needs before it touches the cache (a cache,
/// something to do, places for its files that exist), and the rule that ticket keys cross the network only over
/// mutual TLS unless -insecure says otherwise. Each refusal is exactly one error line and the -h pointer, exit 1.
/// </summary>
public sealed class DcTicketKeysArgumentTests
{
    private const string ToolName = "dc_ticketkeys";

    // TEST-NET-1 (RFC 5737): an address on another host, which nothing answers.
    private const string Remote = "IP:192.0.2.1:9000";

    private const string Local = "UNIX:/run/distcache/dc_client.sock";

    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Without_connect_it_is_refused()
    {
        await ExpectRefusalAsync([], "Error, must provide -connect, the cache");
    }

    [Fact]
    public async Task Readonly_with_no_file_to_write_is_refused()
    {
        using var dir = new TempDir();
        await ExpectRefusalAsync(["-connect", Local, "-readonly", "-state", dir.File("keys")],
            "Error, nothing to do: with -readonly, give -nginx, -haproxy or -apache");
    }

    [Fact]
    public async Task Reload_with_no_file_to_write_is_refused()
    {
        using var dir = new TempDir();
        await ExpectRefusalAsync(["-connect", Local, "-reload", "systemctl reload nginx", "-state", dir.File("keys")],
            "Error, -reload needs -nginx, -haproxy or -apache: it runs after their files change");
    }

    [Fact]
    public async Task Once_and_daemon_together_are_refused()
    {
        using var dir = new TempDir();
        await ExpectRefusalAsync(["-connect", Local, "-nginx", dir.Path, "-once", "-daemon", "-state", dir.File("keys")],
            "Error, -once and -daemon exclude each other");
    }

    [Fact]
    public async Task A_missing_nginx_directory_is_refused()
    {
        using var dir = new TempDir();
        string missing = dir.File("ticketkeys");
        await ExpectRefusalAsync(["-connect", Local, "-nginx", missing, "-state", dir.File("keys")],
            $"Error, -nginx given an invalid argument: the directory {missing} does not exist");
        Assert.False(Directory.Exists(missing), "the directory was created");
    }

    [Theory]
    [InlineData("-haproxy")]
    [InlineData("-apache")]
    [InlineData("-state")]
    public async Task A_file_flag_naming_a_directory_is_refused(string flag)
    {
        using var dir = new TempDir();
        string[] state = flag == "-state" ? [] : ["-state", dir.File("keys")];
        await ExpectRefusalAsync(["-connect", Local, flag, dir.Path, .. state],
            $"Error, {flag} given an invalid argument: {dir.Path} is a directory, not a file");
    }

    [Theory]
    [InlineData("-haproxy")]
    [InlineData("-apache")]
    [InlineData("-state")]
    public async Task A_file_flag_naming_a_file_in_a_missing_directory_is_refused(string flag)
    {
        using var dir = new TempDir();
        string missing = dir.File("missing");
        string[] state = flag == "-state" ? [] : ["-state", dir.File("keys")];
        await ExpectRefusalAsync(["-connect", Local, flag, Path.Combine(missing, "ticket.keys"), .. state],
            $"Error, {flag} given an invalid argument: the directory {missing} does not exist");
        Assert.False(Directory.Exists(missing), "the directory was created");
    }

    [Fact]
    public async Task A_cache_across_the_network_without_tls_is_refused_naming_insecure()
    {
        using var dir = new TempDir();
        await ExpectRefusalAsync(["-connect", Remote, "-nginx", dir.Path, "-state", dir.File("keys")],
            $"Error, -connect {Remote} crosses the network without TLS: ticket keys need mutual TLS (-tls-ca, -tls-cert and -tls-key), or -insecure to accept the risk");
    }

    [Fact]
    public async Task A_cache_across_the_network_with_tls_but_no_client_certificate_is_refused()
    {
        using var dir = new TempDir();
        string ca = WriteCa(dir);
        await ExpectRefusalAsync(["-connect", Remote, "-tls-ca", ca, "-nginx", dir.Path, "-state", dir.File("keys")],
            $"Error, -connect {Remote} crosses the network with TLS but no client certificate: ticket keys need mutual TLS (-tls-ca, -tls-cert and -tls-key), or -insecure to accept the risk");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Tls_key_without_tls_cert_is_refused(bool withCa)
    {
        using var dir = new TempDir();
        string[] ca = withCa ? ["-tls-ca", WriteCa(dir)] : [];
        string key = dir.File("client.key");
        await File.WriteAllTextAsync(key, "not read");
        await ExpectRefusalAsync(["-connect", Local, .. ca, "-tls-key", key, "-state", dir.File("keys")],
            withCa ? "Error, -tls-key needs -tls-cert, the certificate it belongs to" : "Error, -tls-key needs -tls-ca, the CA that issued the cache's certificate");
    }

    [Theory]
    [InlineData("web farm")]
    [InlineData("farm/1")]
    [InlineData("abcdefghijklmnopqrstuvwxyz0123456")]
    public async Task A_bad_farm_name_is_refused(string name)
    {
        await ExpectRefusalAsync(["-connect", Local, "-name", name],
            $"Error, -name given an invalid argument: '{name}' is not a farm name: 1 to 32 letters, digits, '.', '_' or '-'");
    }

    [Theory]
    [InlineData("9")]
    [InlineData("172801")]
    [InlineData("0")]
    public async Task A_period_out_of_range_is_refused(string period)
    {
        await ExpectRefusalAsync(["-connect", Local, "-period", period],
            $"Error, -period given an invalid argument: '{period}' is not a number from 10 to 172800");
    }

    /// <summary>
    /// A link the rule accepts (-insecure across the network, or loopback, which no other host can see) gets past
    /// every check: it fails only at the cache, which is not there, saying so, and -once exits 1 for it.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task An_accepted_link_fails_only_at_reaching_the_cache(bool acrossTheNetwork)
    {
        using var dir = new TempDir();
        string cache = acrossTheNetwork ? Remote : "IP:127.0.0.1:" + Tool.FreePort().ToString(CultureInfo.InvariantCulture);
        string[] insecure = acrossTheNetwork ? ["-insecure"] : [];
        await using var run = await Tool.RunAsync(RunLimit, ToolName,
            ["-connect", cache, .. insecure, "-once", "-timeout", "200", "-nginx", dir.Path, "-state", dir.File("keys")]);

        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"cannot reach the cache at {cache}", run.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain($"Run {ToolName} -h", run.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("given an invalid argument", run.Stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, run.Stdout);
        // With no key known, the servers' files are left alone.
        Assert.False(File.Exists(Path.Combine(dir.Path, "current.key")), "a key file was written without a key");
    }

    // A CA certificate (PEM) that the tool can load: -tls-ca must be a usable file for the checks after it.
    private static string WriteCa(TempDir dir)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=dc_ticketkeys test CA", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using X509Certificate2 ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        string path = dir.File("ca.pem");
        File.WriteAllText(path, ca.ExportCertificatePem());
        return path;
    }

    private static async Task ExpectRefusalAsync(string[] args, string expected)
    {
        await using var run = await Tool.RunAsync(RunLimit, ToolName, args);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal([expected, $"Run {ToolName} -h for the options."], run.Stderr.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n'));
        Assert.Equal(string.Empty, run.Stdout);
    }
}
