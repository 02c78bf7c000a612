using System.Text;
using Distcache.Client;
using Distcache.Protocol;
using Distcache.Security.Tests.Support;

namespace Distcache.Security.Tests;

/// <summary>dc_server with -tls-cert/-tls-key/-tls-ca, exercised by real clients: who gets in and who does not.</summary>
public sealed class TlsServerTests : IDisposable
{
    private static readonly TimeSpan Exit = TimeSpan.FromSeconds(30);
    private readonly TestPki _pki = new();

    public void Dispose() => _pki.Dispose();

    [Fact]
    public async Task Plaintext_to_a_TLS_port_is_refused_without_an_answer()
    {
        var (server, address) = await ServerProcess.StartTcpAsync(_pki.ServerFlags());
        await using var _ = server;

        using var socket = Wire.Open(address);
        Wire.Send(socket, w => Requests.WriteAdd(w, 1, 60_000, [1, 2, 3], [4, 5, 6]));

        // The server reads our request as a broken TLS record and closes; no distcache answer ever comes back.
        Assert.True(Wire.IsClosedByPeer(socket));
        await server.WaitUntilAsync(() => server.Stderr.Contains("TLS handshake with", StringComparison.Ordinal), Exit, "the handshake failure log line");
    }

    [Theory]
    [InlineData(null)]
    [InlineData("stranger")]
    [InlineData("expired")]
    public async Task A_client_without_an_acceptable_certificate_is_refused(string? certificate)
    {
        var (server, address) = await ServerProcess.StartTcpAsync(_pki.ServerFlags());
        await using var _ = server;
        using var presented = certificate is null ? null : _pki.Load(certificate);

        Assert.False(TlsPeer.CanExchange(address, presented));
        await server.WaitUntilAsync(() => server.Stderr.Contains("client refused", StringComparison.Ordinal), Exit, "the refusal log line");
        Assert.Contains(certificate is null ? "no client certificate" : "is not acceptable", server.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_client_with_a_certificate_from_the_CA_is_served()
    {
        var (server, address) = await ServerProcess.StartTcpAsync(_pki.ServerFlags());
        await using var _ = server;
        using var good = _pki.Load("tenant-a");
        using var peer = TlsPeer.Open(address, good);

        Assert.Equal(0, peer.Add([9, 9, 9], [1, 2, 3, 4, 5, 6]));
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6 }, peer.Get([9, 9, 9]));
    }

    [Fact]
    public async Task The_client_library_works_over_mutual_TLS_and_refuses_a_server_with_the_wrong_name()
    {
        var (server, address) = await ServerProcess.StartTcpAsync(_pki.ServerFlags());
        await using var _ = server;
        await using (DistcacheClient client = await DistcacheClient.ConnectAsync(_pki.ClientConfiguration(address, "tenant-a")))
        {
            Assert.Equal(AddOutcome.Stored, await client.AddAsync("lib-id"u8.ToArray(), "lib-data"u8.ToArray(), TimeSpan.FromMinutes(1)));
            Assert.Equal("lib-data"u8.ToArray(), await client.GetAsync("lib-id"u8.ToArray()));
        }

        var (wrong, wrongAddress) = await ServerProcess.StartTcpAsync(_pki.ServerFlags("wrong-name"));
        await using var __ = wrong;
        var refused = await Assert.ThrowsAnyAsync<Exception>(() => DistcacheClient.ConnectAsync(_pki.ClientConfiguration(wrongAddress, "tenant-a") + ",connectTimeout=3000"));
        Assert.Contains("is not for '127.0.0.1'", Flatten(refused), StringComparison.Ordinal);

        // The same certificate is accepted when the name it carries is the one expected.
        await using DistcacheClient named = await DistcacheClient.ConnectAsync(_pki.ClientConfiguration(wrongAddress, "tenant-a") + ",tlsName=elsewhere.example");
        Assert.False(await named.ContainsAsync("nothing"u8.ToArray()));
    }

    [Theory]
    [InlineData(DcContextFlags.None)]
    [InlineData(DcContextFlags.Persistent)]
    public async Task DcContext_works_over_mutual_TLS(DcContextFlags flags)
    {
        var (server, address) = await ServerProcess.StartTcpAsync(_pki.ServerFlags());
        await using var _ = server;
        using DcContext context = DcContext.Create(_pki.ClientConfiguration(address, "tenant-b"), flags);

        Assert.True(context.Add("ctx-id"u8, "ctx-data"u8, 60_000), context.LastError?.ToString());
        var buffer = new byte[64];
        Assert.Equal(8, context.Get("ctx-id"u8, buffer));
        Assert.Equal("ctx-data"u8.ToArray(), buffer[..8]);
        Assert.True(context.Remove("ctx-id"u8));
    }

    [Fact]
    public async Task DcContext_reports_a_refused_server_as_a_failed_operation()
    {
        var (server, address) = await ServerProcess.StartTcpAsync(_pki.ServerFlags("wrong-name"));
        await using var _ = server;
        using DcContext context = DcContext.Create(_pki.ClientConfiguration(address, "tenant-a") + ",connectTimeout=3000", DcContextFlags.None);

        Assert.False(context.Add("id"u8, "data"u8, 60_000));
        Assert.Contains("is not for '127.0.0.1'", Flatten(context.LastError!), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_certificate_from_another_CA_is_refused_by_the_client_library()
    {
        var (server, address) = await ServerProcess.StartTcpAsync(_pki.ServerFlags());
        await using var _ = server;
        string configuration = $"{address},tlsCa={_pki.Pem("other-ca")},tlsCert={_pki.Pem("tenant-a")},tlsKey={_pki.Key("tenant-a")},connectTimeout=3000";

        var refused = await Assert.ThrowsAnyAsync<Exception>(() => DistcacheClient.ConnectAsync(configuration));
        Assert.Contains("server refused", Flatten(refused), StringComparison.Ordinal);
    }

    [Fact]
    public async Task dc_test_through_dc_client_works_over_mutual_TLS()
    {
        var (server, address) = await ServerProcess.StartTcpAsync(_pki.ServerFlags());
        await using var _ = server;
        string socket = "UNIX:" + _pki.File("scache");
        await using Tool client = Tool.Start("dc_client", "-listen", socket, "-server", address,
            "-tls-ca", _pki.Ca, "-tls-cert", _pki.Pem("tenant-a"), "-tls-key", _pki.Key("tenant-a"));
        await client.WaitForListenerAsync(socket);

        await using Tool test = await Tool.RunAsync(TimeSpan.FromSeconds(120), "dc_test", "-connect", socket, "-sessions", "20", "-ops", "400");

        Assert.True(test.ExitCode == 0, test.Stderr + client.Stderr + server.Stderr);
        Assert.Contains("Info, all tests complete", test.Stdout + test.Stderr, StringComparison.Ordinal);
        Assert.Contains("Connected to the server", client.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task dc_client_with_several_servers_uses_mutual_TLS_on_every_link()
    {
        // Regression: the several-server links were built without the -tls-* settings and went out in the clear,
        // which TLS-only servers refuse.
        var (first, firstAddress) = await ServerProcess.StartTcpAsync(_pki.ServerFlags());
        await using var _ = first;
        var (second, secondAddress) = await ServerProcess.StartTcpAsync(_pki.ServerFlags());
        await using var __ = second;
        string socket = "UNIX:" + _pki.File("scache");
        await using Tool client = Tool.Start("dc_client", "-listen", socket, "-server", firstAddress, "-server", secondAddress,
            "-tls-ca", _pki.Ca, "-tls-cert", _pki.Pem("tenant-a"), "-tls-key", _pki.Key("tenant-a"));
        await client.WaitForListenerAsync(socket);
        await client.WaitUntilAsync(() => client.Stderr.Contains("(2 connected)", StringComparison.Ordinal), Exit, "both TLS links up");

        await using Tool test = await Tool.RunAsync(TimeSpan.FromSeconds(120), "dc_test", "-connect", socket, "-sessions", "40", "-ops", "800");

        Assert.True(test.ExitCode == 0, test.Stderr + client.Stderr + first.Stderr + second.Stderr);
        Assert.Contains("Info, all tests complete", test.Stdout + test.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task dc_client_refuses_a_server_with_the_wrong_name_and_answers_DISCONNECTED()
    {
        var (server, address) = await ServerProcess.StartTcpAsync(_pki.ServerFlags("wrong-name"));
        await using var _ = server;
        string socket = "UNIX:" + _pki.File("scache");
        await using Tool client = Tool.Start("dc_client", "-listen", socket, "-server", address,
            "-tls-ca", _pki.Ca, "-tls-cert", _pki.Pem("tenant-a"), "-tls-key", _pki.Key("tenant-a"));
        await client.WaitForListenerAsync(socket);

        using var local = Wire.Open(socket);
        Assert.Equal(new byte[] { 2 }, Wire.Add(local, [1, 2], [3, 4]));
        await client.WaitUntilAsync(() => client.Stderr.Contains("is not for '127.0.0.1'", StringComparison.Ordinal), Exit, "the refusal of the server");
    }

    [Fact]
    public async Task SIGHUP_switches_the_certificate_for_new_handshakes_and_keeps_established_connections()
    {
        Assert.SkipWhen(SignalDisposition.IsIgnored(1), "this test run ignores SIGHUP (started under nohup?), and so would dc_server");
        File.Copy(_pki.Pem("server"), _pki.File("live.pem"));
        File.Copy(_pki.Key("server"), _pki.File("live.key"));
        var (server, address) = await ServerProcess.StartTcpAsync("-tls-cert", _pki.File("live.pem"), "-tls-key", _pki.File("live.key"), "-tls-ca", _pki.Ca);
        await using var _ = server;
        using var client = _pki.Load("tenant-a");
        using var before = TlsPeer.Open(address, client);
        Assert.Equal(0, before.Add([7], [7, 7, 7, 7, 7]));
        string oldSerial = before.ServerSerial;

        File.Copy(_pki.Pem("server2"), _pki.File("live.pem"), overwrite: true);
        File.Copy(_pki.Key("server2"), _pki.File("live.key"), overwrite: true);
        server.Signal(1);
        await server.WaitUntilAsync(() => server.Stderr.Contains("SIGHUP: reloaded", StringComparison.Ordinal), Exit, "the reload line");

        using var after = TlsPeer.Open(address, client);
        using var renewed = _pki.Load("server2");
        Assert.Equal(renewed.SerialNumber, after.ServerSerial);
        Assert.NotEqual(oldSerial, after.ServerSerial);

        // The connection made before the reload is still the same working session.
        Assert.Equal(new byte[] { 7, 7, 7, 7, 7 }, before.Get([7]));
        Assert.Equal(oldSerial, before.ServerSerial);
    }

    [Fact]
    public async Task A_reload_of_a_broken_file_keeps_the_previous_certificate()
    {
        Assert.SkipWhen(SignalDisposition.IsIgnored(1), "this test run ignores SIGHUP (started under nohup?), and so would dc_server");
        File.Copy(_pki.Pem("server"), _pki.File("live.pem"));
        File.Copy(_pki.Key("server"), _pki.File("live.key"));
        var (server, address) = await ServerProcess.StartTcpAsync("-tls-cert", _pki.File("live.pem"), "-tls-key", _pki.File("live.key"), "-tls-ca", _pki.Ca);
        await using var _ = server;
        File.WriteAllText(_pki.File("live.pem"), "not a certificate");

        server.Signal(1);
        await server.WaitUntilAsync(() => server.Stderr.Contains("Error, SIGHUP: -tls-cert", StringComparison.Ordinal), Exit, "the failed reload line");

        using var client = _pki.Load("tenant-a");
        using var peer = TlsPeer.Open(address, client);
        using var original = _pki.Load("server");
        Assert.Equal(original.SerialNumber, peer.ServerSerial);
    }

    private static string Flatten(Exception e)
    {
        var text = new StringBuilder();
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            text.AppendLine(x.Message);
        }

        return text.ToString();
    }
}
