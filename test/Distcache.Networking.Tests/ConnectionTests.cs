using System.Buffers;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Distcache.Networking.Tests;

public class ConnectionTests : NetworkTest
{
    [Fact]
    public async Task DisposeAsync_flushes_unflushed_output_then_the_peer_reads_end_of_stream()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);

        // Written but never flushed: the close must still deliver it.
        server.Output.Write(Encoding.UTF8.GetBytes("last words"));
        await server.DisposeAsync();

        Assert.Equal("last words", await ReadToEndAsync(client.Input));
        Assert.False(server.IsAborted);
    }

    [Fact]
    public async Task Regression_abort_after_dispose_is_a_no_op()
    {
        // Abort() threw ObjectDisposedException when called after DisposeAsync, although callers that race a
        // shutdown against a failure rely on it being safe at any time.
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        _ = server.Input;
        _ = server.Output;
        await server.DisposeAsync();
        server.Abort();
        await client.DisposeAsync();
        client.Abort();
    }

    [Fact]
    public async Task Abort_resets_the_connection_and_discards_unsent_output()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);

        server.Output.Write(Encoding.UTF8.GetBytes("never sent"));
        server.Abort();
        Assert.True(server.IsAborted);

        var e = await Assert.ThrowsAnyAsync<IOException>(async () => await ReadToEndAsync(client.Input));
        Assert.Equal(SocketError.ConnectionReset, Assert.IsType<SocketException>(e.InnerException).SocketErrorCode);

        server.Abort();
        await server.DisposeAsync();
    }

    [Fact]
    public async Task Abort_wakes_a_pending_read_on_the_same_connection()
    {
        var listener = Listen("UNIX:" + TempPath("abort.sock"));
        var (_, server) = await ConnectPairAsync(listener);

        var read = server.Input.ReadAsync(Ct).AsTask();
        await Task.Delay(50, Ct);
        Assert.False(read.IsCompleted);

        server.Abort();

        try
        {
            var result = await read.WaitAsync(TimeSpan.FromSeconds(5), Ct);
            Assert.True(result.IsCanceled || result.IsCompleted);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
        {
            // Also an acceptable way for the read to end: it must just not hang.
        }
    }

    [Fact]
    public async Task A_peer_that_stops_reading_cannot_hold_DisposeAsync_past_the_close_timeout()
    {
        var listener = Listen("UNIX:" + TempPath("stuck.sock"));
        var (client, server) = await ConnectPairAsync(listener);
        client.Socket!.ReceiveBufferSize = 4096;
        server.Socket!.SendBufferSize = 4096;
        server.CloseTimeout = TimeSpan.FromMilliseconds(200);

        // Far more than both socket buffers hold, never read by the client, and not flushed by the writer.
        server.Output.Write(new byte[8 << 20]);
        var started = DateTime.UtcNow;
        await server.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10), Ct);

        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(5));
        Assert.True(server.IsAborted);
    }

    [Fact]
    public async Task WrapStreamAsync_puts_a_stream_between_the_socket_and_the_pipes()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        var original = server.Stream;
        CountingStream? counting = null;

        await server.WrapStreamAsync((inner, _) => ValueTask.FromResult<Stream>(counting = new CountingStream(inner)), Ct);

        Assert.Same(counting, server.Stream);
        Assert.IsType<NetworkStream>(original);
        await ExchangeAsync(client, server);
        Assert.Equal("pong from server".Length, counting!.BytesWritten);
        Assert.Equal("ping from client".Length, counting.BytesRead);
    }

    [Fact]
    public async Task WrapStreamAsync_is_refused_once_the_pipes_are_in_use()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (_, server) = await ConnectPairAsync(listener);
        _ = server.Output;

        var e = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
            await server.WrapStreamAsync((s, _) => ValueTask.FromResult(s), Ct));
        Assert.Equal("the stream can only be wrapped before Input or Output is first used", e.Message);
    }

    [Fact]
    public async Task A_failing_stream_wrapper_fails_the_connect_and_closes_the_socket()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var accept = AcceptAsync(listener);
        var options = new ConnectionOptions { StreamWrapper = (_, _) => throw new AuthenticationFailedForTestException() };

        await Assert.ThrowsAsync<AuthenticationFailedForTestException>(async () =>
            await NetworkConnection.ConnectAsync(listener.LocalAddress, options, Ct));

        var server = await accept;
        Assert.Equal(string.Empty, await ReadToEndAsyncTolerant(server));
    }

    [Fact]
    public async Task TLS_can_be_layered_on_both_ends_through_the_stream_hooks()
    {
        using var certificate = CreateSelfSignedCertificate();
        var listener = Listen("IP:127.0.0.1:0");
        var accept = AcceptAsync(listener);
        var clientOptions = new ConnectionOptions
        {
            StreamWrapper = async (inner, ct) =>
            {
                var tls = new SslStream(inner);
                await tls.AuthenticateAsClientAsync(
                    new SslClientAuthenticationOptions
                    {
                        TargetHost = "localhost",
                        RemoteCertificateValidationCallback = (_, cert, _, _) => cert?.GetCertHashString() == certificate.GetCertHashString(),
                    },
                    ct);
                return tls;
            },
        };

        var clientTask = ConnectAsync(listener.LocalAddress, clientOptions);
        var server = await accept;
        await server.WrapStreamAsync(
            async (inner, ct) =>
            {
                var tls = new SslStream(inner);
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = certificate }, ct);
                return tls;
            },
            Ct);
        var client = await clientTask;

        Assert.IsType<SslStream>(client.Stream);
        Assert.IsType<SslStream>(server.Stream);
        await ExchangeAsync(client, server);

        await server.DisposeAsync();
        Assert.Equal(string.Empty, await ReadToEndAsync(client.Input));
    }

    [Fact]
    public async Task FromStream_reads_and_writes_any_stream()
    {
        var connection = Track(NetworkConnection.FromStream(new MemoryStream(Encoding.UTF8.GetBytes("in memory")), "TEST:memory"));

        Assert.Null(connection.Socket);
        Assert.Equal("TEST:memory", connection.PeerDescription);
        Assert.Equal("in memory", await ReadToEndAsync(connection.Input));
    }

    [Fact]
    public async Task Regression_a_flushed_pipeline_of_answers_goes_out_in_one_write()
    {
        // The output pipe sends each of its buffer segments with its own system call. With the default 4 KiB
        // segments, the answers to a pipeline of 16 GETs of 1 KB sessions went out in four sends, and the
        // server spent most of its time in the kernel: twice the CPU per operation of what one send costs.
        var counting = new CountingStream(new MemoryStream());
        await using var connection = NetworkConnection.FromStream(counting, "TEST:memory");
        byte[] answer = new byte[1012]; // a GET answer: frame header and 1000 bytes of session data
        for (int i = 0; i < 16; i++)
        {
            connection.Output.Write(answer);
        }

        await connection.Output.FlushAsync(Ct);

        Assert.Equal(16 * answer.Length, counting.BytesWritten);
        Assert.Equal(1, counting.Writes);
    }

    [Fact]
    public async Task CloseTimeout_rejects_negative_values()
    {
        await using var connection = NetworkConnection.FromStream(new MemoryStream(), "TEST:memory");

        Assert.Throws<ArgumentOutOfRangeException>(() => connection.CloseTimeout = TimeSpan.FromSeconds(-1));
        connection.CloseTimeout = Timeout.InfiniteTimeSpan;
        Assert.Equal(Timeout.InfiniteTimeSpan, connection.CloseTimeout);
    }

    [Fact]
    public async Task Pipes_of_a_disposed_connection_are_unavailable()
    {
        var connection = NetworkConnection.FromStream(new MemoryStream(), "TEST:memory");
        await connection.DisposeAsync();
        await connection.DisposeAsync();

        Assert.Throws<ObjectDisposedException>(() => connection.Input);
        Assert.Throws<ObjectDisposedException>(() => connection.Output);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await connection.WrapStreamAsync((s, _) => ValueTask.FromResult(s), Ct));
    }

    private async Task<string> ReadToEndAsyncTolerant(NetworkConnection connection)
    {
        try
        {
            return await ReadToEndAsync(connection.Input);
        }
        catch (IOException)
        {
            // The client end was reset rather than closed: just as closed for this purpose.
            return string.Empty;
        }
    }

    internal static X509Certificate2 CreateSelfSignedCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        using var ephemeral = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);
    }

    private sealed class AuthenticationFailedForTestException : Exception
    {
        public AuthenticationFailedForTestException()
            : base("handshake failed on purpose")
        {
        }
    }

    /// <summary>Passes everything through, counting bytes, to show where the wrapper sits.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long BytesRead { get; private set; }

        public long BytesWritten { get; private set; }

        public int Writes { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = inner.Read(buffer, offset, count);
            BytesRead += n;
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken);
            BytesRead += n;
            return n;
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            inner.Write(buffer, offset, count);
            BytesWritten += count;
            Writes++;
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await inner.WriteAsync(buffer, cancellationToken);
            BytesWritten += buffer.Length;
            Writes++;
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
