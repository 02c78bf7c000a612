using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Text;

namespace Distcache.Networking.Tests;

/// <summary>The connection tests again, with both ends on the native transport.</summary>
public sealed class NativeTransportConnectionTests : ConnectionTests
{
    protected override bool NativeTransport => true;
}

/// <summary>The TCP tests again (connecting, refusals, cancellation), with both ends on the native transport.</summary>
public sealed class NativeTransportTcpTests : TcpTests
{
    protected override bool NativeTransport => true;
}

/// <summary>The connection feature tests again, with both ends on the native transport.</summary>
public sealed class NativeTransportConnectionFeatureTests : ConnectionFeatureTests
{
    protected override bool NativeTransport => true;
}

/// <summary>The unix socket tests again, with both ends on the native transport.</summary>
public sealed class NativeTransportUnixSocketTests : UnixSocketTests
{
    protected override bool NativeTransport => true;
}

/// <summary>
/// What only the native transport (epoll event loops, the pipes straight over the socket) can get wrong: partial
/// sends and receives, edge-triggered wake-ups, cancellation, and descriptor numbers reused after a close.
/// </summary>
public sealed class NativeTransportTests : NetworkTest
{
    protected override bool NativeTransport => true;

    [Theory]
    [InlineData("IP:127.0.0.1:0")]
    [InlineData("UNIX")]
    public async Task The_accept_loop_hands_each_connection_over_on_the_event_loop_thread_that_serves_it(string address)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen(address == "UNIX" ? "UNIX:" + TempPath("loop.sock") : address);
        var handed = System.Threading.Channels.Channel.CreateUnbounded<(NetworkConnection Connection, string? Thread)>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        Task loop = listener.AcceptLoopAsync(c => handed.Writer.TryWrite((c, Thread.CurrentThread.Name)), e => handed.Writer.TryComplete(e), stop.Token);

        for (int i = 0; i < 3; i++)
        {
            var client = await ConnectAsync(listener.LocalAddress);
            var (server, thread) = await handed.Reader.ReadAsync(Ct);
            Track(server);
            Assert.StartsWith("distcache event loop", thread, StringComparison.Ordinal);
            await ExchangeAsync(client, server);
            Assert.True(server.UsesNativeTransport);
        }

        // Stopped, the loops leave the listening socket alone, and the listener stays usable.
        stop.Cancel();
        await loop.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        var accept = listener.AcceptAsync(Ct);
        var late = await ConnectAsync(listener.LocalAddress);
        await ExchangeAsync(late, Track(await accept));
    }

    [Fact]
    public async Task A_natively_accepted_connection_makes_its_socket_only_when_asked_and_the_pipes_still_work_after()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);

        // A view made before the pipes: it makes the descriptor blocking (the runtime's expectation), and the
        // transport must make it non-blocking again, or its first receive would block an event loop.
        System.Net.Sockets.Socket view = server.Socket!;
        Assert.Same(view, server.Socket);
        Assert.True(view.NoDelay, "TCP_NODELAY, inherited from the listener");
        Assert.Equal(((System.Net.IPEndPoint)client.Socket!.LocalEndPoint!).Port, ((System.Net.IPEndPoint)view.RemoteEndPoint!).Port);
        await ExchangeAsync(client, server);
        await ExchangeAsync(client, server);
        Assert.True(server.UsesNativeTransport);

        // The view does not own the descriptor: the connection closes it, once, and the client sees the end.
        await server.DisposeAsync();
        Assert.Equal(string.Empty, await ReadToEndAsync(client.Input));
    }

    [Fact]
    public async Task A_hand_over_that_throws_is_reported_and_costs_only_its_own_connection()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen("UNIX:" + TempPath("throws.sock"));
        var handed = System.Threading.Channels.Channel.CreateUnbounded<NetworkConnection>();
        var failures = System.Threading.Channels.Channel.CreateUnbounded<Exception>();
        int calls = 0;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        Task loop = listener.AcceptLoopAsync(
            c =>
            {
                if (Interlocked.Increment(ref calls) == 1)
                {
                    throw new InvalidOperationException("a bug in the hand-over");
                }

                handed.Writer.TryWrite(c);
            },
            e => failures.Writer.TryWrite(e),
            stop.Token);

        var first = await ConnectAsync(listener.LocalAddress);
        Assert.Equal("a bug in the hand-over", (await failures.Reader.ReadAsync(Ct)).Message);
        Assert.Equal(string.Empty, await ReadToEndAsyncTolerant(first));

        var second = await ConnectAsync(listener.LocalAddress);
        await ExchangeAsync(second, Track(await handed.Reader.ReadAsync(Ct)));
        stop.Cancel();
        await loop.WaitAsync(TimeSpan.FromSeconds(5), Ct);
    }

    [Fact]
    public async Task Disposing_the_listener_ends_the_native_accept_loop_and_removes_the_socket_file()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        string path = TempPath("gone.sock");
        var listener = Listen("UNIX:" + path);
        var handed = System.Threading.Channels.Channel.CreateUnbounded<NetworkConnection>();
        Task loop = listener.AcceptLoopAsync(c => handed.Writer.TryWrite(c), e => Assert.Fail("accept failed: " + e.Message), Ct);
        var client = await ConnectAsync(listener.LocalAddress);
        var server = Track(await handed.Reader.ReadAsync(Ct));
        await ExchangeAsync(client, server);

        await listener.DisposeAsync();

        await loop.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        Assert.False(File.Exists(path));
        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task A_natively_accepted_connection_on_its_pipes_has_no_stream_and_no_certificate()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);

        Assert.Null(server.PeerCertificate);
        Assert.Throws<InvalidOperationException>(() => server.Stream);
        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task After_an_abort_a_natively_accepted_connection_refuses_its_pipes_and_touches_no_reused_descriptor()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen("UNIX:" + TempPath("aborted.sock"));
        var (_, server) = await ConnectPairAsync(listener);

        server.Abort();

        // The number the aborted connection had is the lowest free one: the next connection gets it, and must
        // keep working whatever the aborted one is asked.
        var (client2, server2) = await ConnectPairAsync(listener);
        Assert.Throws<ObjectDisposedException>(() => server.Input);
        Assert.Throws<ObjectDisposedException>(() => server.Socket);
        await ExchangeAsync(client2, server2);
        await ExchangeAsync(client2, server2);
    }

    [Fact]
    public async Task TLS_over_natively_accepted_connections_works_and_their_numbers_serve_runtime_sockets_after()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        using var certificate = ConnectionTests.CreateSelfSignedCertificate();
        var listener = Listen("IP:127.0.0.1:0");

        // The runtime's Socket of a natively accepted connection owns its descriptor (a duplicate), so the runtime
        // clears its own state for the number at the close, and runtime sockets that get the number next work.
        for (int i = 0; i < 5; i++)
        {
            var accept = AcceptAsync(listener);
            var connect = NetworkConnection.ConnectAsync(listener.LocalAddress, new ConnectionOptions { StreamWrapper = (inner, ct) => ClientTlsAsync(inner, certificate, ct) }, Ct).AsTask();
            await using var server = await accept;
            await server.WrapStreamAsync((inner, ct) => ServerTlsAsync(inner, certificate, ct), Ct);
            await using var client = await connect;
            await ExchangeAsync(client, server);
            await server.DisposeAsync();
            await client.DisposeAsync();

            // Runtime sockets now, reusing the lowest free numbers, each waiting for its data.
            using var runtimeListener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            runtimeListener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
            runtimeListener.Listen();
            using var a = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            await a.ConnectAsync(runtimeListener.LocalEndPoint!, Ct);
            using var b = await runtimeListener.AcceptAsync(Ct);
            var buffer = new byte[4];
            var receive = b.ReceiveAsync(buffer, System.Net.Sockets.SocketFlags.None, Ct);
            await Task.Delay(20, Ct);
            await a.SendAsync(new byte[] { 1, 2, 3, 4 }, System.Net.Sockets.SocketFlags.None, Ct);
            Assert.Equal(4, await receive);
        }
    }

    [Fact]
    public async Task An_abort_wakes_a_TLS_handshake_waiting_on_a_natively_accepted_connection()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        using var certificate = ConnectionTests.CreateSelfSignedCertificate();
        var listener = Listen("IP:127.0.0.1:0");
        var (_, server) = await ConnectPairAsync(listener);

        // The client never says hello: the handshake waits in a receive of the runtime's, with no token to end it.
        Task handshake = server.WrapStreamAsync((inner, _) => ServerTlsAsync(inner, certificate, CancellationToken.None), CancellationToken.None).AsTask();
        await Task.Delay(100, Ct);
        Assert.False(handshake.IsCompleted);

        server.Abort();

        // Pending reads are woken, as the documentation of Abort promises; nothing else would end this one.
        await Assert.ThrowsAnyAsync<Exception>(() => handshake.WaitAsync(TimeSpan.FromSeconds(5), Ct));
        Assert.True(handshake.IsCompleted, "the handshake still waits after the abort");
    }

    [Fact]
    public async Task The_accept_loop_ends_only_after_a_hand_over_under_way()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen("UNIX:" + TempPath("handover.sock"));
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var handed = new List<NetworkConnection>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        Task loop = listener.AcceptLoopAsync(
            c =>
            {
                lock (handed)
                {
                    handed.Add(c);
                }

                entered.Set();
                release.Wait(TimeSpan.FromSeconds(10));
            },
            e => Assert.Fail("accept failed: " + e.Message),
            stop.Token);

        var client = await ConnectAsync(listener.LocalAddress);
        Assert.True(entered.Wait(TimeSpan.FromSeconds(10)));
        stop.Cancel();
        await Task.Delay(100, Ct);
        Assert.False(loop.IsCompleted, "the loop ended while a connection was still being handed over");

        release.Set();
        await loop.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        lock (handed)
        {
            foreach (var connection in handed)
            {
                Track(connection);
            }
        }

        _ = client;
    }

    private static async ValueTask<Stream> ClientTlsAsync(Stream inner, System.Security.Cryptography.X509Certificates.X509Certificate2 certificate, CancellationToken ct)
    {
        var tls = new System.Net.Security.SslStream(inner);
        await tls.AuthenticateAsClientAsync(
            new System.Net.Security.SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                RemoteCertificateValidationCallback = (_, presented, _, _) => presented?.GetCertHashString() == certificate.GetCertHashString(),
            },
            ct);
        return tls;
    }

    private static async ValueTask<Stream> ServerTlsAsync(Stream inner, System.Security.Cryptography.X509Certificates.X509Certificate2 certificate, CancellationToken ct)
    {
        var tls = new System.Net.Security.SslStream(inner);
        await tls.AuthenticateAsServerAsync(new System.Net.Security.SslServerAuthenticationOptions { ServerCertificate = certificate }, ct);
        return tls;
    }

    // The end of stream, or a reset (an aborted connection), read as the end.
    private async Task<string> ReadToEndAsyncTolerant(NetworkConnection connection)
    {
        try
        {
            return await ReadToEndAsync(connection.Input);
        }
        catch (IOException)
        {
            return string.Empty;
        }
    }

    [Theory]
    [InlineData("IP:127.0.0.1:0")]
    [InlineData("UNIX")]
    public async Task Accepted_and_connected_connections_use_it_and_exchange_bytes(string address)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen(address == "UNIX" ? "UNIX:" + TempPath("native.sock") : address);
        var (client, server) = await ConnectPairAsync(listener);

        await ExchangeAsync(client, server);

        Assert.True(server.UsesNativeTransport);
        Assert.True(client.UsesNativeTransport);
        Assert.True(client.Socket!.Connected);
        Assert.Equal(listener.LocalAddress.ToString(), client.PeerDescription);
    }

    [Theory]
    [InlineData("IP:127.0.0.1:0")]
    [InlineData("UNIX")]
    public async Task A_connected_socket_is_registered_with_its_event_loop_only(string address)
    {
        // The point of connecting natively: a socket the runtime's engine had registered (as its ConnectAsync
        // does) would be in two epoll sets, and every packet would wake the runtime's thread as well as the loop.
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen(address == "UNIX" ? "UNIX:" + TempPath("sets.sock") : address);
        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);

        // The accepted end, which the runtime never touched, shows that the count sees the loops' sets.
        Assert.Equal(1, EpollSetsHolding((int)server.Socket!.Handle));
        Assert.Equal(1, EpollSetsHolding((int)client.Socket!.Handle));
    }

    [Fact]
    public async Task A_connect_that_must_wait_for_the_handshake_completes_through_the_loop()
    {
        // Many connects at once, so that some of them find the handshake unfinished when connect returns.
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen("IP:127.0.0.1:0");
        var connects = Enumerable.Range(0, 32).Select(_ => ConnectAsync(listener.LocalAddress)).ToList();
        var accepted = new List<NetworkConnection>();
        for (int i = 0; i < connects.Count; i++)
        {
            accepted.Add(await AcceptAsync(listener));
        }

        foreach (var connect in connects)
        {
            var client = await connect;
            await SendAsync(client.Output, "hello");
        }

        foreach (var server in accepted)
        {
            Assert.Equal("hello", await ReceiveAsync(server.Input, 5));
        }
    }

    [Fact]
    public async Task Work_deferred_from_a_loop_runs_on_its_thread_after_the_continuation_that_deferred_it()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        var work = new RecordingWork();
        // (From the thread pool: this test's own continuations may run on a loop's thread.)
        Assert.False(await Task.Run(() => server.TryDeferToEndOfBatch(work)), "deferred from a thread that is not a loop's");

        // A read that waits is resumed on the loop's thread, inside its batch of events.
        Task<(bool Deferred, int Thread, string? Name)> reading = Task.Run(async () =>
        {
            ReadResult read = await server.Input.ReadAsync(Ct).ConfigureAwait(false);
            server.Input.AdvanceTo(read.Buffer.End);
            bool deferred = server.TryDeferToEndOfBatch(work);
            work.Log.Enqueue("continuation done");
            return (deferred, Environment.CurrentManagedThreadId, Thread.CurrentThread.Name);
        });
        await Task.Delay(100, Ct);
        Assert.False(reading.IsCompleted, "the read should be waiting for data");
        await SendAsync(client.Output, "x");

        var (deferredOk, loopThread, name) = await reading.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        await work.Ran.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        Assert.True(deferredOk);
        Assert.StartsWith("distcache event loop", name, StringComparison.Ordinal);
        Assert.Equal(loopThread, work.Thread);
        Assert.Equal(["continuation done", "work ran"], work.Log);
    }

    private sealed class RecordingWork : IThreadPoolWorkItem
    {
        public System.Collections.Concurrent.ConcurrentQueue<string> Log { get; } = new();

        public TaskCompletionSource Ran { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Thread { get; private set; }

        public void Execute()
        {
            Thread = Environment.CurrentManagedThreadId;
            Log.Enqueue("work ran");
            Ran.TrySetResult();
        }
    }

    // How many epoll instances of this process watch the descriptor (each lists it as "tfd: N" in its fdinfo).
    // The epoll sets of this process holding the socket of descriptor, under that number or any other for the same
    // socket (a natively accepted connection's runtime Socket is a duplicate of the number its loop holds).
    private static int EpollSetsHolding(int descriptor)
    {
        string socket = new FileInfo("/proc/self/fd/" + descriptor.ToString(System.Globalization.CultureInfo.InvariantCulture)).LinkTarget!;
        var numbers = new HashSet<string>();
        foreach (string path in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(path).LinkTarget == socket)
                {
                    numbers.Add(Path.GetFileName(path));
                }
            }
            catch (IOException)
            {
            }
        }

        int sets = 0;
        foreach (string path in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(path).LinkTarget;
            }
            catch (IOException)
            {
                continue;
            }

            if (target != "anon_inode:[eventpoll]")
            {
                continue;
            }

            string info;
            try
            {
                info = File.ReadAllText("/proc/self/fdinfo/" + Path.GetFileName(path));
            }
            catch (IOException)
            {
                continue;
            }

            if (info.Split('\n').Select(line => line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
                .Any(fields => fields.Length >= 2 && fields[0] == "tfd:" && numbers.Contains(fields[1])))
            {
                sets++;
            }
        }

        return sets;
    }

    [Fact]
    public async Task Without_the_option_the_runtime_sockets_serve()
    {
        var listener = Track(NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0")));
        var (client, server) = await ConnectPairAsync(listener);

        await ExchangeAsync(client, server);

        Assert.False(server.UsesNativeTransport);
    }

    [Fact]
    public async Task A_wrapped_stream_keeps_the_stream_pipes()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);

        await server.WrapStreamAsync((inner, _) => ValueTask.FromResult<Stream>(new BufferedStream(inner)), Ct);
        await ExchangeAsync(client, server);

        Assert.False(server.UsesNativeTransport);
    }

    [Fact]
    public async Task Megabytes_both_ways_arrive_intact_through_full_socket_buffers()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        // A small send buffer, so that sends stop at EAGAIN and resume on the next edge. (Not a small receive
        // buffer: shrunk after the handshake, it leaves the peer's window closed until a zero-window probe, which
        // stalls any transport for seconds.) Far more than the buffers hold, so that receives take many partial
        // reads; both directions at once, so that neither side waits for the other.
        server.Socket!.SendBufferSize = 4096;
        byte[] up = RandomBytes(3 << 20, seed: 1);
        byte[] down = RandomBytes(3 << 20, seed: 2);
        Task send = WriteInChunksAsync(client.Output, up, 100_000);
        Task serverSend = WriteInChunksAsync(server.Output, down, 70_000);
        Task<byte[]> serverReceive = ReadExactlyAsync(server.Input, up.Length);
        Task<byte[]> receive = ReadExactlyAsync(client.Input, down.Length);
        await Task.WhenAll(send, serverSend, serverReceive, receive).WaitAsync(TimeSpan.FromSeconds(15), Ct);

        Assert.Equal(up, await serverReceive);
        Assert.Equal(down, await receive);
    }

    [Fact]
    public async Task A_message_larger_than_the_receive_buffer_accumulates_until_it_is_whole()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        byte[] message = RandomBytes(200_000, seed: 3);

        Task send = WriteInChunksAsync(client.Output, message, 1000);

        // Like a frame decoder that needs the whole message: examine everything, consume nothing, until it is
        // all there. The buffer must grow to hold it rather than hand out the same bytes again.
        int reads = 0;
        while (true)
        {
            ReadResult result = await server.Input.ReadAsync(Ct);
            reads++;
            if (result.Buffer.Length >= message.Length)
            {
                Assert.True(message.AsSpan().SequenceEqual(result.Buffer.Slice(0, message.Length).ToArray()));
                server.Input.AdvanceTo(result.Buffer.GetPosition(message.Length));
                break;
            }

            Assert.False(result.IsCompleted);
            server.Input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }

        await send;
        Assert.True(reads > 1);
    }

    [Fact]
    public async Task A_pipeline_larger_than_the_receive_buffer_comes_back_from_one_read()
    {
        // 16 ADDs of 1 KB are 17 KB: the whole pipeline in one read is answered with one send, not two.
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        _ = server.Input;
        byte[] pipeline = RandomBytes(40_000, seed: 4);
        await client.Output.WriteAsync(pipeline, Ct);
        await Task.Delay(100, Ct);

        ReadResult result = await server.Input.ReadAsync(Ct);

        Assert.Equal(pipeline, result.Buffer.ToArray());
        server.Input.AdvanceTo(result.Buffer.End);
    }

    [Fact]
    public async Task Bytes_left_unconsumed_are_offered_again_with_what_arrives_next()
    {
        var listener = Listen("UNIX:" + TempPath("partial.sock"));
        var (client, server) = await ConnectPairAsync(listener);

        await SendAsync(client.Output, "abcdef");
        ReadResult first = await ReadAtLeastAsync(server.Input, 6);
        server.Input.AdvanceTo(first.Buffer.GetPosition(2), first.Buffer.End);

        // Everything was examined, so the next read waits for more rather than returning "cdef" again at once.
        ValueTask<ReadResult> next = server.Input.ReadAsync(Ct);
        await Task.Delay(50, Ct);
        Assert.False(next.IsCompleted);

        await SendAsync(client.Output, "gh");
        ReadResult second = await next;
        Assert.Equal("cdefgh", Encoding.UTF8.GetString(second.Buffer));
        server.Input.AdvanceTo(second.Buffer.End);
    }

    [Fact]
    public async Task A_half_closed_peer_is_end_of_stream_and_can_still_be_answered()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);

        await SendAsync(client.Output, "last request");
        client.Socket!.Shutdown(SocketShutdown.Send);

        Assert.Equal("last request", await ReadToEndAsync(server.Input));
        await SendAsync(server.Output, "answer");
        Assert.Equal("answer", await ReceiveAsync(client.Input, "answer".Length));
    }

    [Fact]
    public async Task Regression_an_end_of_stream_that_arrived_with_the_last_data_is_not_missed()
    {
        // The loop saw the data and the FIN in one edge before anyone read. The read then took the data in one
        // short receive, took "short" to mean "drained", and waited for an edge that had already come: the end of
        // stream was never seen and the connection hung until the peer's timeout.
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        _ = server.Input;

        await SendAsync(client.Output, "last request");
        client.Socket!.Shutdown(SocketShutdown.Send);
        await Task.Delay(100, Ct);

        Assert.Equal("last request", await ReadToEndAsync(server.Input).WaitAsync(TimeSpan.FromSeconds(5), Ct));
    }

    [Fact]
    public async Task Regression_a_reset_that_arrived_with_the_last_data_is_not_missed()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        _ = server.Input;

        await SendAsync(client.Output, "last request");
        client.Abort();
        await Task.Delay(100, Ct);

        Assert.Equal("last request", await ReceiveAsync(server.Input, "last request".Length));
        await Assert.ThrowsAsync<IOException>(async () => await ReadToEndAsync(server.Input).WaitAsync(TimeSpan.FromSeconds(5), Ct));
    }

    [Fact]
    public async Task A_reset_peer_fails_the_read_as_the_runtime_sockets_would()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);

        ValueTask<ReadResult> pending = server.Input.ReadAsync(Ct);
        client.Abort();

        var e = await Assert.ThrowsAsync<IOException>(async () => await pending);
        Assert.Equal(SocketError.ConnectionReset, Assert.IsType<SocketException>(e.InnerException).SocketErrorCode);
    }

    [Fact]
    public async Task A_flush_waiting_on_a_peer_that_does_not_read_is_woken_by_abort()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        client.Socket!.ReceiveBufferSize = 4096;
        server.Socket!.SendBufferSize = 4096;

        server.Output.Write(new byte[4 << 20]);
        ValueTask<FlushResult> flush = server.Output.FlushAsync(Ct);
        await Task.Delay(50, Ct);
        Assert.False(flush.IsCompleted);

        server.Abort();

        await Assert.ThrowsAsync<IOException>(async () => await flush.AsTask().WaitAsync(TimeSpan.FromSeconds(5), Ct));
    }

    [Fact]
    public async Task A_canceled_token_ends_the_wait_and_the_connection_stays_usable()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);

        using (var cancel = new CancellationTokenSource())
        {
            ValueTask<ReadResult> read = server.Input.ReadAsync(cancel.Token);
            Assert.False(read.IsCompleted);
            cancel.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await read);
        }

        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task CancelPendingRead_and_CancelPendingFlush_give_canceled_results_once()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);

        // While waiting, and before the next wait: each cancels exactly one read.
        ValueTask<ReadResult> waiting = server.Input.ReadAsync(Ct);
        server.Input.CancelPendingRead();
        ReadResult canceled = await waiting;
        Assert.True(canceled.IsCanceled);
        server.Input.AdvanceTo(canceled.Buffer.Start);

        server.Input.CancelPendingRead();
        ReadResult early = await server.Input.ReadAsync(Ct);
        Assert.True(early.IsCanceled);
        server.Input.AdvanceTo(early.Buffer.Start);

        server.Output.CancelPendingFlush();
        Assert.True((await server.Output.FlushAsync(Ct)).IsCanceled);

        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task Regression_the_token_of_a_finished_read_cannot_cancel_a_later_one()
    {
        // The token's registration was stored after the wait began, outside the lock; when the event loop
        // completed the read in between, completing unregistered nothing, and the registration lived on. Canceling
        // that token later then ended whatever read was waiting at the time: another request's. The window is a
        // few instructions wide, so this is a stress test: many reads, each racing the loop that completes it.
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        var tokens = new List<CancellationTokenSource>();
        try
        {
            for (int i = 0; i < 2000; i++)
            {
                var source = new CancellationTokenSource();
                tokens.Add(source);
                Task send = SendAsync(client.Output, "x");
                ReadResult result = await server.Input.ReadAsync(source.Token);
                server.Input.AdvanceTo(result.Buffer.End);
                await send;
            }

            ValueTask<ReadResult> later = server.Input.ReadAsync(Ct);
            foreach (var source in tokens)
            {
                source.Cancel();
            }

            await Task.Delay(20, Ct);
            Assert.False(later.IsCompleted);
            await SendAsync(client.Output, "y");
            ReadResult answer = await later;
            Assert.EndsWith("y", Encoding.UTF8.GetString(answer.Buffer));
            server.Input.AdvanceTo(answer.Buffer.End);
        }
        finally
        {
            foreach (var source in tokens)
            {
                source.Dispose();
            }
        }
    }

    [Fact]
    public async Task Descriptor_numbers_reused_by_new_connections_get_only_their_own_events()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the native transport runs on Linux only");
        var listener = Listen("UNIX:" + TempPath("churn.sock"));

        // One long-lived connection, and many short ones whose descriptor numbers the kernel hands out again at
        // once: an event meant for a closed connection must never reach its successor, nor the long-lived one.
        var (steadyClient, steadyServer) = await ConnectPairAsync(listener);
        for (int i = 0; i < 200; i++)
        {
            var accept = AcceptAsync(listener);
            await using var client = await NetworkConnection.ConnectAsync(listener.LocalAddress, ConnectOptions, Ct);
            await using var server = await accept;
            string text = "message " + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await SendAsync(client.Output, text);
            Assert.Equal(text, await ReceiveAsync(server.Input, text.Length));
            if (i % 3 == 0)
            {
                server.Abort();
            }

            if (i % 50 == 0)
            {
                await ExchangeAsync(steadyClient, steadyServer);
            }
        }

        await ExchangeAsync(steadyClient, steadyServer);
    }

    [Fact]
    public async Task Many_connections_served_at_once_each_see_only_their_own_bytes()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var pairs = new List<(NetworkConnection Client, NetworkConnection Server)>();
        for (int i = 0; i < 64; i++)
        {
            pairs.Add(await ConnectPairAsync(listener));
        }

        await Task.WhenAll(pairs.Select((pair, index) => Task.Run(async () =>
        {
            for (int round = 0; round < 50; round++)
            {
                string request = $"{index}:{round}:request";
                await SendAsync(pair.Client.Output, request);
                Assert.Equal(request, await ReceiveAsync(pair.Server.Input, request.Length));
                string answer = $"{index}:{round}:answer";
                await SendAsync(pair.Server.Output, answer);
                Assert.Equal(answer, await ReceiveAsync(pair.Client.Input, answer.Length));
            }
        }))).WaitAsync(TimeSpan.FromSeconds(15), Ct);
    }

    [Fact]
    public async Task Completing_the_writer_sends_what_was_written_but_not_flushed()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);

        server.Output.Write(Encoding.UTF8.GetBytes("unflushed"));
        Assert.Equal(9, server.Output.UnflushedBytes);
        await server.Output.CompleteAsync();

        Assert.Equal("unflushed", await ReceiveAsync(client.Input, 9));
    }

    [Fact]
    public async Task Misuse_of_the_pipes_is_refused_with_a_clear_error()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        await SendAsync(client.Output, "data");
        ReadResult result = await ReadAtLeastAsync(server.Input, 4);

        // A second read before AdvanceTo, and a position from somewhere else.
        Assert.Throws<InvalidOperationException>(() => server.Input.TryRead(out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => server.Input.AdvanceTo(new ReadOnlySequence<byte>(new byte[4]).End));
        server.Input.AdvanceTo(result.Buffer.End);
        Assert.Throws<InvalidOperationException>(() => server.Input.AdvanceTo(result.Buffer.End));

        Assert.Throws<ArgumentOutOfRangeException>(() => server.Output.Advance(1 << 20));
        await server.Output.CompleteAsync();
        Assert.Throws<InvalidOperationException>(() => server.Output.GetSpan());
    }

    [Fact]
    public async Task DisposeAsync_wakes_a_read_left_waiting()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (_, server) = await ConnectPairAsync(listener);

        ValueTask<ReadResult> read = server.Input.ReadAsync(Ct);
        await Task.Delay(20, Ct);
        await server.DisposeAsync();

        // A caller that forgot to stop reading first gets an error, not a read that never ends.
        await Assert.ThrowsAnyAsync<Exception>(async () => await read.AsTask().WaitAsync(TimeSpan.FromSeconds(5), Ct));
    }

    private static byte[] RandomBytes(int length, int seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private async Task WriteInChunksAsync(PipeWriter output, byte[] bytes, int chunk)
    {
        for (int offset = 0; offset < bytes.Length; offset += chunk)
        {
            FlushResult result = await output.WriteAsync(bytes.AsMemory(offset, Math.Min(chunk, bytes.Length - offset)), Ct);
            Assert.False(result.IsCanceled);
        }
    }

    private async Task<byte[]> ReadExactlyAsync(PipeReader input, int length)
    {
        byte[] received = new byte[length];
        int filled = 0;
        while (filled < length)
        {
            ReadResult result = await input.ReadAsync(Ct);
            ReadOnlySequence<byte> buffer = result.Buffer.Slice(0, Math.Min(result.Buffer.Length, length - filled));
            buffer.CopyTo(received.AsSpan(filled));
            filled += (int)buffer.Length;
            input.AdvanceTo(buffer.End);
            if (result.IsCompleted && filled < length)
            {
                throw new EndOfStreamException($"stream ended after {filled} of {length} bytes");
            }
        }

        return received;
    }

    private async Task<ReadResult> ReadAtLeastAsync(PipeReader input, int length)
    {
        while (true)
        {
            ReadResult result = await input.ReadAsync(Ct);
            if (result.Buffer.Length >= length || result.IsCompleted)
            {
                return result;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }
}
