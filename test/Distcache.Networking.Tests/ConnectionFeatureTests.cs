using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Channels;

namespace Distcache.Networking.Tests;

/// <summary>
/// What a connection tells about itself without its socket or stream (the peer's address, credentials and
/// certificate, end-of-batch scheduling), the listener's accept loop, and the failure predicates.
/// </summary>
public class ConnectionFeatureTests : NetworkTest
{
    [Fact]
    public async Task Over_TCP_each_end_knows_the_others_address_and_no_credentials()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);

        Assert.Equal(listener.LocalAddress, client.RemoteAddress);
        Assert.Equal(Address.Parse("IP:127.0.0.1:" + ((IPEndPoint)client.Socket!.LocalEndPoint!).Port), server.RemoteAddress);
        Assert.Equal(server.PeerDescription, server.RemoteAddress!.ToString());
        Assert.Null(server.PeerCredentials);
        Assert.Null(server.PeerCertificate);
    }

    [Fact]
    public async Task Over_a_unix_socket_the_client_knows_the_path_and_the_server_the_peers_credentials()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "SO_PEERCRED is Linux's");
        var listener = Listen("UNIX:" + TempPath("features.sock"));
        var (client, server) = await ConnectPairAsync(listener);

        Assert.Equal(listener.LocalAddress, client.RemoteAddress);
        Assert.Null(server.RemoteAddress);
        PeerCredentials credentials = Assert.NotNull(server.PeerCredentials);
        Assert.Equal(Environment.ProcessId, credentials.ProcessId);
        Assert.Equal(Libc.GetEffectiveUserId(), credentials.UserId);
        Assert.Equal(Libc.GetEffectiveGroupId(), credentials.GroupId);
        Assert.Equal(credentials, server.PeerCredentials);
    }

    [Fact]
    public async Task A_listener_that_checks_peers_hands_on_the_credentials_it_read()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "SO_PEERCRED is Linux's");
        var listener = Listen("UNIX:" + TempPath("checked.sock"), new ListenerOptions { AllowedPeerUserIds = [Libc.GetEffectiveUserId()] });
        var (_, server) = await ConnectPairAsync(listener);

        Assert.Equal(Environment.ProcessId, server.PeerCredentials?.ProcessId);
    }

    [Fact]
    public async Task A_connection_over_a_stream_has_no_address_credentials_certificate_or_loop()
    {
        await using var connection = NetworkConnection.FromStream(new MemoryStream(), "TEST:memory");
        _ = connection.Input;

        Assert.Null(connection.RemoteAddress);
        Assert.Null(connection.PeerCredentials);
        Assert.Null(connection.PeerCertificate);
        Assert.False(connection.TryDeferToEndOfBatch(new SignalWork()));
    }

    [Fact]
    public async Task PeerCertificate_is_what_the_TLS_peer_presented_until_the_connection_closes()
    {
        using var certificate = ConnectionTests.CreateSelfSignedCertificate();
        var listener = Listen("IP:127.0.0.1:0");
        var accept = AcceptAsync(listener);
        var clientTask = ConnectAsync(listener.LocalAddress, new ConnectionOptions
        {
            StreamWrapper = async (inner, ct) =>
            {
                var tls = new SslStream(inner);
                await tls.AuthenticateAsClientAsync(
                    new SslClientAuthenticationOptions
                    {
                        TargetHost = "localhost",
                        ClientCertificates = [certificate],
                        RemoteCertificateValidationCallback = (_, presented, _, _) => presented?.GetCertHashString() == certificate.GetCertHashString(),
                    },
                    ct);
                return tls;
            },
        });
        var server = await accept;
        Assert.Null(server.PeerCertificate);
        await server.WrapStreamAsync(
            async (inner, ct) =>
            {
                var tls = new SslStream(inner);
                await tls.AuthenticateAsServerAsync(
                    new SslServerAuthenticationOptions
                    {
                        ServerCertificate = certificate,
                        ClientCertificateRequired = true,
                        RemoteCertificateValidationCallback = (_, presented, _, _) => presented?.GetCertHashString() == certificate.GetCertHashString(),
                    },
                    ct);
                return tls;
            },
            Ct);
        var client = await clientTask;

        Assert.Equal(certificate.GetCertHashString(), server.PeerCertificate?.GetCertHashString());
        Assert.Equal(certificate.GetCertHashString(), client.PeerCertificate?.GetCertHashString());
        await ExchangeAsync(client, server);

        await server.DisposeAsync();
        Assert.Null(server.PeerCertificate);
    }

    [Fact]
    public async Task TryDeferToEndOfBatch_queues_only_on_the_native_transports_loop()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        var work = new SignalWork();
        Assert.False(await Task.Run(() => server.TryDeferToEndOfBatch(work)), "deferred from a thread that is not a loop's");

        // A read that waits is resumed on the loop's thread when the connection is on the native transport.
        Task<bool> reading = Task.Run(async () =>
        {
            ReadResult read = await server.Input.ReadAsync(Ct).ConfigureAwait(false);
            server.Input.AdvanceTo(read.Buffer.End);
            return server.TryDeferToEndOfBatch(work);
        });
        await Task.Delay(100, Ct);
        Assert.False(reading.IsCompleted, "the read should be waiting for data");
        await SendAsync(client.Output, "x");

        bool deferred = await reading.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        Assert.Equal(NativeTransport && OperatingSystem.IsLinux(), deferred);
        if (deferred)
        {
            await work.Ran.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        }
    }

    [Fact]
    public async Task AcceptLoopAsync_hands_over_each_connection_and_returns_once_cancelled()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var handed = Channel.CreateUnbounded<NetworkConnection>();
        var failures = new List<Exception>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        Task loop = listener.AcceptLoopAsync(c => handed.Writer.TryWrite(c), failures.Add, stop.Token);

        for (int i = 0; i < 3; i++)
        {
            var client = await ConnectAsync(listener.LocalAddress);
            var server = Track(await handed.Reader.ReadAsync(Ct));
            await ExchangeAsync(client, server);
        }

        stop.Cancel();
        await loop.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        Assert.Empty(failures);
    }

    [Fact]
    public async Task AcceptLoopAsync_returns_when_the_listener_is_disposed()
    {
        var listener = Listen("IP:127.0.0.1:0");
        Task loop = listener.AcceptLoopAsync(c => _ = c.DisposeAsync().AsTask(), e => Assert.Fail("accept failed: " + e.Message), Ct);
        await Task.Delay(50, Ct);

        await listener.DisposeAsync();

        await loop.WaitAsync(TimeSpan.FromSeconds(5), Ct);
    }

    [Fact]
    public void The_failure_predicates_tell_a_torn_down_connection_from_a_bug()
    {
        Exception[] transport =
        [
            new IOException("reset"),
            new NetworkException("refused"),
            new SocketException((int)SocketError.ConnectionReset),
            new ObjectDisposedException("stream"),
            new OperationCanceledException(),
        ];
        foreach (var e in transport)
        {
            Assert.True(NetworkErrors.IsTransportFailure(e), e.GetType().Name);
            Assert.True(NetworkErrors.IsConnectionFailure(e), e.GetType().Name);
            Assert.True(NetworkErrors.IsHandshakeFailure(e), e.GetType().Name);
        }

        var completedPipe = new InvalidOperationException("reading is not allowed after the reader was completed");
        Assert.True(NetworkErrors.IsConnectionFailure(completedPipe));
        Assert.False(NetworkErrors.IsTransportFailure(completedPipe));
        Assert.False(NetworkErrors.IsHandshakeFailure(completedPipe));

        var refused = new AuthenticationException("client refused");
        Assert.True(NetworkErrors.IsHandshakeFailure(refused));
        Assert.False(NetworkErrors.IsConnectionFailure(refused));

        foreach (var bug in new Exception[] { new ArgumentException("bug"), new FormatException("bug"), new TimeoutException() })
        {
            Assert.False(NetworkErrors.IsConnectionFailure(bug), bug.GetType().Name);
            Assert.False(NetworkErrors.IsHandshakeFailure(bug), bug.GetType().Name);
        }

        Assert.False(NetworkErrors.IsConnectionFailure(null));
    }

    private sealed class SignalWork : IThreadPoolWorkItem
    {
        public TaskCompletionSource Ran { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Execute() => Ran.TrySetResult();
    }
}
