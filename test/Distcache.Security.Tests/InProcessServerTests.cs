using Distcache.Networking;
using Distcache.Security.Tests.Support;
using Distcache.Server;
using Distcache.Storage;

namespace Distcache.Security.Tests;

/// <summary>DistcacheServer with TLS and an access policy, in process: what its counters say about refusals.</summary>
public sealed class InProcessServerTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);
    private readonly TestPki _pki = new();

    public void Dispose() => _pki.Dispose();

    [Fact]
    public async Task Failed_handshakes_and_refused_identities_are_counted()
    {
        File.WriteAllLines(_pki.File("map"), ["shop rw CN=tenant-a,O=Shop"]);
        using var store = new MemorySessionStore(new MemorySessionStoreOptions());
        var server = new DistcacheServer(store, new DistcacheServerOptions
        {
            // Long enough for a first, cold handshake on a busy machine: one that timed out would be counted as a
            // failure and shift every count below.
            Tls = new TlsServerSettings(_pki.Pem("server"), _pki.Key("server"), _pki.Ca) { HandshakeTimeout = TimeSpan.FromSeconds(10) },
            Access = ClientAccessPolicy.Load(_pki.File("map")),
        });
        await using var host = InProcessHost.Start(NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0")), server.RunAsync);
        string address = host.Address.ToString();

        using (var plain = Wire.Open(address))
        {
            Wire.Send(plain, w => Protocol.Requests.WriteIdRequest(w, 1, Protocol.Operation.Have, [1]));
            Assert.True(Wire.IsClosedByPeer(plain));
        }

        using var stranger = _pki.Load("stranger");
        Assert.False(TlsPeer.CanExchange(address, stranger));
        using var unlisted = _pki.Load("tenant-b");
        Assert.False(TlsPeer.CanExchange(address, unlisted));
        using var listed = _pki.Load("tenant-a");
        Assert.True(TlsPeer.CanExchange(address, listed));

        // A client that connects and never starts its handshake is dropped after the handshake timeout.
        using (var silent = Wire.Open(address, timeoutMs: 30_000))
        {
            Assert.True(Wire.IsClosedByPeer(silent));
        }

        await Poll.UntilAsync(() => server.Statistics.HandshakeFailures == 3 && server.Statistics.IdentitiesRefused == 1, Limit, "the counters to reach the expected values", interval: TimeSpan.FromMilliseconds(20));
        await host.StopAsync(Limit);
    }
}
