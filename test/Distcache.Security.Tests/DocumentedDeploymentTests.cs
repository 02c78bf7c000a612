namespace Distcache.Security.Tests;

/// <summary>
/// docs/security.md's deployment walk-through, for real: the openssl commands of its step 1 are taken from the
/// file and run, and dc_server and dc_client are started with what they made.
/// </summary>
public sealed class DocumentedDeploymentTests : IDisposable
{
    private static readonly TimeSpan Exit = TimeSpan.FromSeconds(60);
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The shell block that follows the <c>&lt;!-- test: pki --&gt;</c> marker.</summary>
    internal static string PkiCommands()
    {
        string doc = File.ReadAllText(Path.Combine(Tool.RepositoryRoot, "docs", "security.md"));
        int marker = doc.IndexOf("<!-- test: pki -->", StringComparison.Ordinal);
        Assert.True(marker >= 0, "docs/security.md has lost its '<!-- test: pki -->' marker");
        int start = doc.IndexOf("```sh\n", marker, StringComparison.Ordinal) + "```sh\n".Length;
        int end = doc.IndexOf("\n```", start, StringComparison.Ordinal);
        return doc[start..end];
    }

    [Fact]
    public async Task The_documented_openssl_commands_make_a_PKI_that_dc_server_and_dc_client_accept()
    {
        (int status, string output) = await RunAsync("bash", ["-euo", "pipefail", "-c", PkiCommands()], _dir.Path);
        Assert.True(status == 0, output);
        Assert.Contains("server.pem: OK", output, StringComparison.Ordinal);
        Assert.Contains("web1.pem: OK", output, StringComparison.Ordinal);
        Assert.Contains("subject=CN=web1.example.com,O=Example", output, StringComparison.Ordinal);

        string pki = Path.Combine(_dir.Path, "pki");
        string P(string name) => Path.Combine(pki, name);

        // Step 3's map, with the subject exactly as the documented openssl command printed it.
        File.WriteAllText(P("partitions"), "shop rw CN=web1.example.com,O=Example\nshop rw CN=web2.example.com,O=Example\n");
        var (server, address) = await ServerProcess.StartTcpAsync("-tls-cert", P("server.pem"), "-tls-key", P("server.key"), "-tls-ca", P("ca.pem"), "-partition-map", P("partitions"));
        await using var _ = server;

        string socket = "UNIX:" + _dir.File("scache");
        await using Tool client = Tool.Start("dc_client", "-listen", socket, "-sockperms", "600", "-server", address,
            "-tls-ca", P("ca.pem"), "-tls-cert", P("web1.pem"), "-tls-key", P("web1.key"));
        await client.WaitForListenerAsync(socket);
        await using Tool test = await Tool.RunAsync(Exit, "dc_test", "-connect", socket, "-sessions", "10", "-ops", "200");
        Assert.True(test.ExitCode == 0, test.Stdout + test.Stderr + client.Stderr + server.Stderr);
        Assert.Contains("Info, all tests complete", test.Stdout + test.Stderr, StringComparison.Ordinal);

        // Step 5's check with openssl's own client: it verifies the server and is served with the client certificate.
        string hostPort = address["IP:".Length..];
        (int verified, string handshake) = await RunAsync("openssl", ["s_client", "-connect", hostPort, "-CAfile", P("ca.pem"), "-cert", P("web1.pem"), "-key", P("web1.key"), "-verify_return_error"], pki);
        Assert.True(verified == 0, handshake);
        Assert.Contains("Verify return code: 0 (ok)", handshake, StringComparison.Ordinal);

        // The server names the CA it accepts client certificates from, so a client with several can choose.
        Assert.Contains("Acceptable client certificate CA names\nO = Example, CN = distcache CA", handshake.ReplaceLineEndings("\n"), StringComparison.Ordinal);

        // TLS 1.1 and older are refused in the handshake.
        (int old, string refused) = await RunAsync("openssl", ["s_client", "-connect", hostPort, "-tls1_1", "-CAfile", P("ca.pem")], pki);
        Assert.True(old != 0, refused);
        Assert.Contains("alert protocol version", refused, StringComparison.Ordinal);
    }

    // Standard output, then standard error: the checks look for runs of consecutive lines of one of them.
    private static async Task<(int Status, string Output)> RunAsync(string program, string[] args, string directory)
    {
        ProcessResult result = await Tool.RunProgramAsync(program, args, Exit, workingDirectory: directory);
        return (result.ExitCode, result.Stdout + result.Stderr);
    }
}
