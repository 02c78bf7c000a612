using Distcache.Security.Tests.Support;

namespace Distcache.Security.Tests;

/// <summary>What dc_server and dc_client say about bad security settings before they serve anything.</summary>
public sealed class StartupTests : IDisposable
{
    private static readonly TimeSpan Exit = TimeSpan.FromSeconds(30);
    private readonly TestPki _pki = new();

    public void Dispose() => _pki.Dispose();

    [Fact]
    public async Task A_missing_certificate_file_names_the_flag_and_the_file()
    {
        await using Tool tool = await Tool.RunAsync(Exit, "dc_server", "-listen", "IP:127.0.0.1:0", "-tls-cert", "/nonexistent/server.pem", "-tls-key", _pki.Key("server"));
        Assert.Equal(1, tool.ExitCode);
        Assert.Contains("Error, -tls-cert /nonexistent/server.pem: cannot be read", tool.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("listening on", tool.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_file_without_a_certificate_names_the_flag_and_the_file()
    {
        File.WriteAllText(_pki.File("junk.pem"), "hello\n");
        await using Tool tool = await Tool.RunAsync(Exit, "dc_server", "-listen", "IP:127.0.0.1:0", "-tls-cert", _pki.File("junk.pem"), "-tls-key", _pki.Key("server"));
        Assert.Equal(1, tool.ExitCode);
        Assert.Contains($"Error, -tls-cert {_pki.File("junk.pem")}: holds no PEM certificate", tool.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_key_of_another_certificate_names_the_key_flag()
    {
        await using Tool tool = await Tool.RunAsync(Exit, "dc_server", "-listen", "IP:127.0.0.1:0", "-tls-cert", _pki.Pem("server"), "-tls-key", _pki.Key("tenant-a"));
        Assert.Equal(1, tool.ExitCode);
        Assert.Contains($"Error, -tls-key {_pki.Key("tenant-a")}: the private key does not match the certificate", tool.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_CA_file_names_the_CA_flag()
    {
        await using Tool tool = await Tool.RunAsync(Exit, "dc_client", "-listen", "UNIX:" + _pki.File("s"), "-server", "IP:127.0.0.1:9", "-tls-ca", _pki.Key("server"));
        Assert.Equal(1, tool.ExitCode);
        Assert.Contains($"Error, -tls-ca {_pki.Key("server")}: holds no PEM certificate", tool.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("dc_server", new[] { "-listen", "IP:127.0.0.1:0", "-tls-ca", "/x" }, "Error, -tls-ca needs -tls-cert")]
    [InlineData("dc_server", new[] { "-listen", "IP:127.0.0.1:0", "-tls-key", "/x" }, "Error, -tls-key needs -tls-cert")]
    [InlineData("dc_client", new[] { "-server", "IP:127.0.0.1:9", "-tls-cert", "/x" }, "Error, -tls-cert needs -tls-ca")]
    [InlineData("dc_client", new[] { "-server", "IP:127.0.0.1:9", "-tls-name", "x" }, "Error, -tls-name needs -tls-ca")]
    [InlineData("dc_server", new[] { "-listen", "IP:127.0.0.1:0", "-allow-uid", "no-such-user-dcx" }, "Error, -allow-uid given an invalid argument")]
    [InlineData("dc_server", new[] { "-listen", "IP:127.0.0.1:0", "-allow-uid", "0" }, "allowed peer users and groups only apply to UNIX: addresses")]
    [InlineData("dc_client", new[] { "-server", "IP:127.0.0.1:9", "-allow-gid", "1,,2" }, "Error, -allow-gid given an invalid argument")]
    public async Task Flags_that_do_not_fit_together_are_refused(string tool, string[] args, string expected)
    {
        await using Tool run = await Tool.RunAsync(Exit, tool, args);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains(expected, run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task dc_client_needs_a_name_for_TLS_to_a_unix_socket()
    {
        await using Tool run = await Tool.RunAsync(Exit, "dc_client", "-listen", "UNIX:" + _pki.File("s"), "-server", "UNIX:" + _pki.File("server.sock"), "-tls-ca", _pki.Ca);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("Error, -tls-name is needed with TLS to UNIX:", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_loopback_server_without_TLS_gives_no_warning()
    {
        var (server, _) = await ServerProcess.StartTcpAsync();
        await using var _ = server;
        await Task.Delay(200);
        Assert.DoesNotContain("Warning", server.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Help_lists_the_security_flags()
    {
        await using Tool server = await Tool.RunAsync(Exit, "dc_server", "-h");
        await using Tool client = await Tool.RunAsync(Exit, "dc_client", "-h");
        foreach (string flag in new[] { "-tls-cert", "-tls-key", "-tls-ca", "-partition", "-partition-map", "-allow-uid", "-allow-gid" })
        {
            Assert.Contains(flag, server.Stdout, StringComparison.Ordinal);
        }

        foreach (string flag in new[] { "-tls-cert", "-tls-key", "-tls-ca", "-tls-name", "-allow-uid", "-allow-gid" })
        {
            Assert.Contains(flag, client.Stdout, StringComparison.Ordinal);
        }
    }
}
