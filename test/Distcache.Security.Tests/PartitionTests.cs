using Distcache.Client;
using Distcache.Security.Tests.Support;

namespace Distcache.Security.Tests;

/// <summary>dc_server -partition and -partition-map: identities that cannot see each other, and read-only ones.</summary>
public sealed class PartitionTests : IDisposable
{
    private static readonly TimeSpan Exit = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);
    private readonly TestPki _pki = new();

    public void Dispose() => _pki.Dispose();

    [Fact]
    public async Task Two_identities_cannot_see_each_others_sessions_even_with_the_same_id()
    {
        var (server, address) = await ServerProcess.StartTcpAsync([.. _pki.ServerFlags(), "-partition"]);
        await using var _ = server;
        await using DistcacheClient a = await DistcacheClient.ConnectAsync(_pki.ClientConfiguration(address, "tenant-a"));
        await using DistcacheClient b = await DistcacheClient.ConnectAsync(_pki.ClientConfiguration(address, "tenant-b"));
        byte[] id = "same-session-id"u8.ToArray();

        Assert.Equal(AddOutcome.Stored, await a.AddAsync(id, "secret of a"u8.ToArray(), Minute));
        Assert.Null(await b.GetAsync(id));
        Assert.False(await b.ContainsAsync(id));
        Assert.False(await b.RemoveAsync(id));

        // b's ADD of the same id is a new session in b's partition, not a duplicate of a's.
        Assert.Equal(AddOutcome.Stored, await b.AddAsync(id, "secret of b"u8.ToArray(), Minute));
        Assert.Equal("secret of a"u8.ToArray(), await a.GetAsync(id));
        Assert.Equal("secret of b"u8.ToArray(), await b.GetAsync(id));
    }

    [Fact]
    public async Task A_maximum_length_id_works_in_a_partition()
    {
        var (server, address) = await ServerProcess.StartTcpAsync([.. _pki.ServerFlags(), "-partition"]);
        await using var _ = server;
        await using DistcacheClient a = await DistcacheClient.ConnectAsync(_pki.ClientConfiguration(address, "tenant-a"));
        byte[] longest = Enumerable.Range(0, 64).Select(i => (byte)i).ToArray();

        Assert.Equal(AddOutcome.Stored, await a.AddAsync(longest, new byte[] { 1, 2, 3, 4, 5 }, Minute));
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5 }, await a.GetAsync(longest));
        Assert.True(await a.RemoveAsync(longest));
    }

    [Fact]
    public async Task A_read_only_identity_reads_its_partition_but_cannot_add_or_remove()
    {
        File.WriteAllLines(_pki.File("map"),
        [
            "# partition access subject",
            "shop rw CN=tenant-a,O=Shop",
            "shop ro CN=reader, O=Shop",
        ]);
        var (server, address) = await ServerProcess.StartTcpAsync([.. _pki.ServerFlags(), "-partition-map", _pki.File("map")]);
        await using var _ = server;
        using var writerCertificate = _pki.Load("tenant-a");
        using var readerCertificate = _pki.Load("reader");
        using var writer = TlsPeer.Open(address, writerCertificate);
        using var reader = TlsPeer.Open(address, readerCertificate);

        Assert.Equal(0, writer.Add([1, 1], [5, 5, 5, 5, 5]));
        Assert.Equal(new byte[] { 5, 5, 5, 5, 5 }, reader.Get([1, 1]));

        // The protocol's failure answer, NOTOK (1), for both writes; nothing changed.
        Assert.Equal(1, reader.Add([2, 2], [6, 6, 6, 6, 6]));
        Assert.Equal(1, reader.Remove([1, 1]));
        Assert.False(writer.Have([2, 2]));
        Assert.True(writer.Have([1, 1]));
    }

    [Fact]
    public async Task An_identity_the_map_does_not_list_is_refused()
    {
        File.WriteAllLines(_pki.File("map"), ["shop rw CN=tenant-a,O=Shop"]);
        var (server, address) = await ServerProcess.StartTcpAsync([.. _pki.ServerFlags(), "-partition-map", _pki.File("map")]);
        await using var _ = server;
        using var unlisted = _pki.Load("tenant-b");

        Assert.False(TlsPeer.CanExchange(address, unlisted));
        await server.WaitUntilAsync(() => server.Stderr.Contains("has no access", StringComparison.Ordinal), Exit, "the refusal line");
    }

    [Theory]
    [InlineData(new[] { "-partition" }, "Error, -partition needs -tls-cert and -tls-ca")]
    [InlineData(new[] { "-partition-map", "/nonexistent" }, "Error, -partition-map needs -tls-cert and -tls-ca")]
    public async Task Partitioning_without_client_certificates_is_a_start_up_error(string[] flags, string expected)
    {
        await using Tool tool = await Tool.RunAsync(Exit, "dc_server", ["-listen", "IP:127.0.0.1:0", .. flags]);
        Assert.Equal(1, tool.ExitCode);
        Assert.Contains(expected, tool.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_malformed_map_is_a_start_up_error_naming_the_line()
    {
        File.WriteAllLines(_pki.File("map"), ["shop rw CN=tenant-a", "shop maybe CN=reader"]);
        await using Tool tool = await Tool.RunAsync(Exit, "dc_server", ["-listen", "IP:127.0.0.1:0", .. _pki.ServerFlags(), "-partition-map", _pki.File("map")]);
        Assert.Equal(1, tool.ExitCode);
        Assert.Contains($"Error, -partition-map {_pki.File("map")} line 2: access must be rw or ro", tool.Stderr, StringComparison.Ordinal);
    }
}
