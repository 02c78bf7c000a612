using System.Diagnostics;
using System.Net.Sockets;
using Distcache.Client;
using Distcache.Hosting;
using Distcache.Networking;
using Distcache.Security.Tests.Support;
using Distcache.Server;
using Distcache.Storage;

namespace Distcache.Security.Tests;

/// <summary>In-process checks of the security settings: parsing, validation, and the partitioned view of a store.</summary>
public sealed class OptionTests : IDisposable
{
    private readonly TestPki _pki = new();

    public void Dispose() => _pki.Dispose();

    [Fact]
    public void The_connection_string_takes_the_TLS_files_and_writes_them_back()
    {
        string text = $"IP:127.0.0.1:9001,timeout=2000,tlsCa={_pki.Ca},tlsCert={_pki.Pem("tenant-a")},tlsKey={_pki.Key("tenant-a")},tlsName=cache1";

        DistcacheClientOptions options = DistcacheClientOptions.Parse(text);

        Assert.NotNull(options.Tls);
        Assert.Equal(_pki.Ca, options.Tls.CaFile);
        Assert.Equal(_pki.Pem("tenant-a"), options.Tls.CertificateFile);
        Assert.Equal("cache1", options.Tls.ServerName);
        Assert.Equal("CN=tenant-a, O=Shop", options.Tls.Certificate!.Subject);
        Assert.Equal(options.ToString(), DistcacheClientOptions.Parse(options.ToString()).ToString());
        Assert.Contains(",tlsName=cache1", options.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("IP:127.0.0.1:1,tlsCert=/x", "needs tlsCa")]
    [InlineData("IP:127.0.0.1:1,tlsCa=CA,tlsKey=/x", "tlsKey in 'IP:127.0.0.1:1,tlsCa=CA,tlsKey=/x' needs tlsCert")]
    [InlineData("IP:127.0.0.1:1,tlsCa=", "'tlsCa' in 'IP:127.0.0.1:1,tlsCa=' needs a value")]
    [InlineData("IP:127.0.0.1:1,tlsCa=/nonexistent/ca.pem", "tlsCa /nonexistent/ca.pem: cannot be read")]
    [InlineData("IP:127.0.0.1:1,tlsCa=CA,tlsCert=/nonexistent/c.pem", "tlsCert /nonexistent/c.pem: cannot be read")]
    [InlineData("IP:127.0.0.1:1,tlsCa=CA,tlsCA=CA", "appears twice")]
    public void Bad_TLS_keys_are_refused_with_a_message_naming_them(string configuration, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => DistcacheClientOptions.Parse(configuration.Replace("=CA", "=" + _pki.Ca, StringComparison.Ordinal)));
        Assert.Contains(expected.Replace("=CA", "=" + _pki.Ca, StringComparison.Ordinal), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TLS_to_a_unix_socket_needs_a_server_name()
    {
        var options = DistcacheClientOptions.Parse($"UNIX:/tmp/nowhere,tlsCa={_pki.Ca}");
        var e = Assert.Throws<ArgumentException>(() => DistcacheClient.Connect(options));
        Assert.Contains("no host name", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TLS_and_a_stream_wrapper_of_ones_own_exclude_each_other()
    {
        var options = DistcacheClientOptions.Parse($"IP:127.0.0.1:1,tlsCa={_pki.Ca}");
        options.Connection = new ConnectionOptions { StreamWrapper = (s, _) => ValueTask.FromResult(s) };
        Assert.Throws<ArgumentException>(() => DistcacheClient.Connect(options));
    }

    [Fact]
    public void Unusable_files_name_their_role_and_path()
    {
        var missing = Assert.Throws<TlsConfigurationException>(() => new TlsServerSettings("/nonexistent/s.pem", _pki.Key("server")));
        Assert.Equal((TlsFileRole.Certificate, "/nonexistent/s.pem"), (missing.Role, missing.Path));

        var mismatch = Assert.Throws<TlsConfigurationException>(() => new TlsServerSettings(_pki.Pem("server"), _pki.Key("tenant-b")));
        Assert.Equal((TlsFileRole.Key, _pki.Key("tenant-b")), (mismatch.Role, mismatch.Path));

        var ca = Assert.Throws<TlsConfigurationException>(() => new TlsServerSettings(_pki.Pem("server"), _pki.Key("server"), _pki.Key("ca")));
        Assert.Equal(TlsFileRole.CertificateAuthority, ca.Role);

        Assert.Throws<ArgumentException>(() => new TlsClientSettings(_pki.Ca, certificateFile: null, keyFile: _pki.Key("tenant-a")));
    }

    [Fact]
    public void A_key_in_the_certificate_file_needs_no_key_file()
    {
        File.WriteAllText(_pki.File("both.pem"), File.ReadAllText(_pki.Pem("server")) + "\n" + File.ReadAllText(_pki.Key("server")));
        var settings = new TlsServerSettings(_pki.File("both.pem"));
        Assert.Equal("CN=localhost", settings.Certificate.Subject);
        Assert.True(settings.Certificate.HasPrivateKey);
    }

    [Fact]
    public void Partitioning_without_client_certificates_is_refused_by_the_server()
    {
        using var store = new MemorySessionStore(new MemorySessionStoreOptions());
        var tls = new TlsServerSettings(_pki.Pem("server"), _pki.Key("server"));
        Assert.Throws<ArgumentException>(() => new DistcacheServer(store, new DistcacheServerOptions { Tls = tls, Access = ClientAccessPolicy.PartitionBySubject }));
        Assert.Throws<ArgumentException>(() => new DistcacheServer(store, new DistcacheServerOptions { Access = ClientAccessPolicy.PartitionBySubject }));
    }

    [Theory]
    [InlineData("CN=web1,O=Shop", "CN=web1, O=Shop")]
    [InlineData(" CN = web1 ,  O = Shop ", "CN=web1, O=Shop")]
    [InlineData("CN=web1\\, the first,O=Shop", "CN=web1\\, the first, O=Shop")]
    [InlineData("CN=\"web1, the first\", O=Shop", "CN=\"web1, the first\", O=Shop")]
    public void Subjects_are_compared_in_one_spelling(string written, string normal)
    {
        Assert.Equal(normal, ClientAccessPolicy.NormalizeSubject(written));
    }

    [Fact]
    public void The_mapping_file_gives_partitions_and_access()
    {
        var map = ClientAccessPolicy.Parse("map", ["# comment", "", "shop rw CN=tenant-a,O=Shop", "  shop   ro   CN=reader, O=Shop  "]);

        Assert.Equal(("shop", false), map["CN=tenant-a, O=Shop"]);
        Assert.Equal(("shop", true), map["CN=reader, O=Shop"]);
        Assert.Equal(2, map.Count);
    }

    [Theory]
    [InlineData("shop rw", "map line 1: expected: partition rw|ro subject")]
    [InlineData("shop write CN=a", "map line 1: access must be rw or ro, not 'write'")]
    [InlineData("shop rw nobody", "map line 1: 'nobody' is not a certificate subject")]
    [InlineData("shop rw CN=a\nblog ro CN=a", "map line 2: subject 'CN=a' is listed twice")]
    public void A_malformed_mapping_file_names_the_line(string text, string expected)
    {
        var e = Assert.Throws<FormatException>(() => ClientAccessPolicy.Parse("map", text.Split('\n')));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_policy_resolves_a_certificate_by_its_subject()
    {
        File.WriteAllLines(_pki.File("map"), ["shop ro CN=reader,O=Shop"]);
        var policy = ClientAccessPolicy.Load(_pki.File("map"));
        using var reader = _pki.Load("reader");
        using var other = _pki.Load("tenant-b");

        Assert.Equal(new ClientAccess("CN=reader, O=Shop", "shop", ReadOnly: true), policy.Resolve(reader));
        Assert.Null(policy.Resolve(other));
        Assert.Equal(new ClientAccess("CN=tenant-b, O=Blog", "CN=tenant-b, O=Blog", ReadOnly: false), ClientAccessPolicy.PartitionBySubject.Resolve(other));
    }

    [Fact]
    public async Task Partitions_of_one_store_are_independent_and_keep_the_full_id_length()
    {
        using var store = new MemorySessionStore(new MemorySessionStoreOptions());
        var a = new PartitionedSessionStore(store, new ClientAccess("a", "a", false));
        var b = new PartitionedSessionStore(store, new ClientAccess("b", "b", false));
        var readOnly = new PartitionedSessionStore(store, new ClientAccess("r", "a", true));
        byte[] longest = new byte[SessionStoreLimits.MaxIdLength];
        longest.AsSpan().Fill(7);

        Assert.Equal(AddResult.Stored, await a.AddAsync(longest, new byte[] { 1 }, TimeSpan.FromMinutes(1)));
        Assert.Equal(AddResult.Stored, await b.AddAsync(longest, new byte[] { 2 }, TimeSpan.FromMinutes(1)));
        Assert.False(await store.ContainsAsync(longest));
        Assert.True(await readOnly.ContainsAsync(longest));
        Assert.Equal(AddResult.Failed, await readOnly.AddAsync(new byte[] { 9 }, new byte[] { 9 }, TimeSpan.FromMinutes(1)));
        Assert.False(await readOnly.RemoveAsync(longest));
        Assert.True(await a.RemoveAsync(longest));
        Assert.True(await b.ContainsAsync(longest));

        // Partition names are length-prefixed: ("ab", id) and ("a", "b" + id) are different keys.
        var ab = new PartitionedSessionStore(store, new ClientAccess("x", "ab", false));
        Assert.NotEqual(ab.KeyOf([1]).ToArray(), a.KeyOf([(byte)'b', 1]).ToArray());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(100)]
    public void A_partition_key_is_SHA256_of_the_length_prefixed_name_and_the_id(int idLength)
    {
        // The format sessions are stored under (in Redis too, across restarts and upgrades): it must not change.
        using var store = new MemorySessionStore(new MemorySessionStoreOptions());
        var shop = new PartitionedSessionStore(store, new ClientAccess("x", "shop", false));
        byte[] id = Enumerable.Range(0, idLength).Select(i => (byte)i).ToArray();

        byte[] expected = System.Security.Cryptography.SHA256.HashData([0, 0, 0, 4, .. "shop"u8, .. id]);

        Assert.Equal(expected, shop.KeyOf(id).ToArray());
    }

    [Fact]
    public async Task Partitioned_lookups_and_adds_allocate_nothing()
    {
        // A partitioned connection hashes every id into its partition's key: into a buffer of its own, not a new
        // array (and a hashing object) per request.
        using var store = new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 100 });
        var partition = new PartitionedSessionStore(store, new ClientAccess("x", "shop", false));
        byte[] id = new byte[32];
        byte[] data = new byte[100];
        ReadOnlyMemory<byte>[] pipeline = [id, id, id];
        SessionDataReader<int> read = static (_, _) => { };
        Assert.Equal(AddResult.Stored, await partition.AddAsync(id, data, TimeSpan.FromMinutes(1)));
        long allocated = 0;
        int answeredAsExpected = 0;
        for (int round = 0; round < 2; round++)
        {
            // The first round warms up (tiered compilation, lazily made buffers); the second is measured. The
            // outcomes are counted, not asserted one by one: xUnit's assertions allocate.
            answeredAsExpected = 0;
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 500; i++)
            {
                partition.Prefetch(pipeline);
                bool hit = await partition.GetAsync(id, read, 0);
                bool present = await partition.ContainsAsync(id);
                AddResult again = await partition.AddAsync(id, data, TimeSpan.FromMinutes(1));
                bool removed = await partition.RemoveAsync(data.AsMemory(0, 16));
                if (hit && present && again == AddResult.AlreadyExists && !removed)
                {
                    answeredAsExpected++;
                }
            }

            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Assert.Equal(500, answeredAsExpected);
        Assert.Equal(0, allocated);
    }

    [Fact]
    public void Prefetch_hands_the_store_the_partition_keys_of_the_valid_ids()
    {
        using var inner = new MemorySessionStore(new MemorySessionStoreOptions());
        var recording = new RecordingPrefetchStore(inner);
        var partition = new PartitionedSessionStore(recording, new ClientAccess("x", "shop", false));
        byte[] first = [1, 2, 3];
        byte[] tooLong = new byte[SessionStoreLimits.MaxIdLength + 1];
        byte[] last = [4];

        partition.Prefetch([first, ReadOnlyMemory<byte>.Empty, tooLong, last]);

        Assert.Equal(
            [partition.KeyOf(first).ToArray(), partition.KeyOf(last).ToArray()],
            recording.Prefetched);
    }

    // A real store that also notes what it is asked to prefetch.
    private sealed class RecordingPrefetchStore(MemorySessionStore inner) : ISessionStore, ISessionPrefetch
    {
        public List<byte[]> Prefetched { get; } = [];

        public void Prefetch(ReadOnlySpan<ReadOnlyMemory<byte>> ids)
        {
            foreach (ReadOnlyMemory<byte> id in ids)
            {
                Prefetched.Add(id.ToArray());
            }

            inner.Prefetch(ids);
        }

        public ValueTask<AddResult> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default) =>
            inner.AddAsync(id, data, timeout, cancellationToken);

        public ValueTask<bool> GetAsync<TState>(ReadOnlyMemory<byte> id, SessionDataReader<TState> reader, TState state, CancellationToken cancellationToken = default) =>
            inner.GetAsync(id, reader, state, cancellationToken);

        public ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) => inner.RemoveAsync(id, cancellationToken);

        public ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) => inner.ContainsAsync(id, cancellationToken);

        public ValueTask<long> CountAsync(CancellationToken cancellationToken = default) => inner.CountAsync(cancellationToken);

        public void Dispose()
        {
        }
    }

    [Fact]
    public void Id_lists_take_names_and_numbers()
    {
        Assert.True(SecurityParsers.UserIdList("0,root, 12", out uint[]? users, out _));
        Assert.Equal(new uint[] { 0, 0, 12 }, users);
        Assert.True(SecurityParsers.GroupIdList("root", out uint[]? groups, out _));
        Assert.Equal(new uint[] { 0 }, groups);
        Assert.False(SecurityParsers.UserIdList("", out _, out _));
        Assert.False(SecurityParsers.UserIdList("1,", out _, out _));
        Assert.False(SecurityParsers.UserIdList("no-such-user-dcx", out _, out _));
        Assert.False(SecurityParsers.UserIdList("4294967295", out _, out _));
    }

    [Theory]
    [InlineData("IP:9001", true)]
    [InlineData("IP:10.1.2.3:9001", true)]
    [InlineData("IP:cache1.example.com:9001", true)]
    [InlineData("IP:127.0.0.1:9001", false)]
    [InlineData("IP:127.5.6.7:9001", false)]
    [InlineData("IP:localhost:9001", false)]
    [InlineData("IPv6:[::1]:9001", false)]
    [InlineData("IPv6:9001", true)]
    [InlineData("UNIX:/tmp/scache", false)]
    public void Reachable_addresses_are_told_from_local_ones(string address, bool reachable)
    {
        Assert.Equal(reachable, SecurityParsers.IsReachableFromOtherHosts(Address.Parse(address)));
    }

    [Fact]
    public async Task The_listener_counts_and_closes_peers_outside_the_allow_lists()
    {
        Assert.Throws<ArgumentException>(() => NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0"), new ListenerOptions { AllowedPeerUserIds = [0] }));

        uint self = Native.GetEUid();
        using var dir = new TempDir();
        await using var listener = NetworkListener.Listen(Address.Parse("UNIX:" + dir.File("l.sock")), new ListenerOptions { AllowedPeerUserIds = [self + 1], AllowedPeerGroupIds = [] });
        using var refused = Wire.Open("UNIX:" + dir.File("l.sock"));

        // No accept returns the refused peer; on a busy machine the refusal may take more than one short accept.
        var clock = Stopwatch.StartNew();
        while (listener.PeersRefused == 0 && clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await listener.AcceptAsync(cancel.Token));
        }

        Assert.Equal(1, listener.PeersRefused);
        Assert.True(Wire.IsClosedByPeer(refused));

        await using var allowed = NetworkListener.Listen(Address.Parse("UNIX:" + dir.File("m.sock")), new ListenerOptions { AllowedPeerGroupIds = [Native.GetEGid()] });
        using var client = Wire.Open("UNIX:" + dir.File("m.sock"));
        await using NetworkConnection accepted = await allowed.AcceptAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
        Assert.Equal(0, allowed.PeersRefused);

        // The credentials the check read stay with the connection.
        Assert.Equal(Native.GetEGid(), accepted.PeerCredentials?.GroupId);
        Assert.Equal(Environment.ProcessId, accepted.PeerCredentials?.ProcessId);
    }
}
