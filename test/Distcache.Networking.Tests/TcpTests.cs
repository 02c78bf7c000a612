using System.Net;
using System.Net.Sockets;

namespace Distcache.Networking.Tests;

public class TcpTests : NetworkTest
{
    [Fact]
    public async Task Listens_on_an_ephemeral_loopback_port_and_exchanges_bytes_both_ways()
    {
        var listener = Listen("IP:127.0.0.1:0");
        Assert.Equal(AddressKind.IPv4, listener.LocalAddress.Kind);
        Assert.Equal("127.0.0.1", listener.LocalAddress.Host);
        Assert.NotEqual(0, listener.LocalAddress.Port);
        Assert.Equal("IP:127.0.0.1:0", listener.Address.ToString());

        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);

        Assert.Equal(listener.LocalAddress.ToString(), client.PeerDescription);
        var clientPort = ((IPEndPoint)client.Socket!.LocalEndPoint!).Port;
        Assert.Equal($"IP:127.0.0.1:{clientPort}", server.PeerDescription);
        Assert.Equal(server.PeerDescription, server.ToString());
    }

    [Fact]
    public async Task Sets_TCP_NODELAY_on_both_ends()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);

        Assert.True(client.Socket!.NoDelay);
        Assert.True(server.Socket!.NoDelay);
    }

    [Fact]
    public async Task Listens_on_all_IPv4_interfaces_for_IP_port()
    {
        var listener = Listen("IP:0");
        Assert.True(listener.LocalAddress.IsAnyInterface);
        Assert.Equal($"IP:{listener.LocalAddress.Port}", listener.LocalAddress.ToString());
        Assert.Equal(IPAddress.Any, ((IPEndPoint)listener.Socket.LocalEndPoint!).Address);

        var (client, server) = await ConnectPairAsync(listener, Address.Parse($"IP:127.0.0.1:{listener.LocalAddress.Port}"));
        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task Resolves_host_names_when_connecting_and_listening()
    {
        var listener = Listen("IP:localhost:0");
        Assert.Equal("127.0.0.1", listener.LocalAddress.Host);

        var (client, server) = await ConnectPairAsync(listener, Address.Parse($"IP:localhost:{listener.LocalAddress.Port}"));
        await ExchangeAsync(client, server);
        Assert.Equal($"IP:127.0.0.1:{listener.LocalAddress.Port}", client.PeerDescription);
    }

    [Fact]
    public async Task Works_over_IPv6_loopback()
    {
        Assert.SkipUnless(Socket.OSSupportsIPv6, "IPv6 is not supported on this machine");
        NetworkListener listener;
        try
        {
            listener = Listen("IPv6:[::1]:0");
        }
        catch (NetworkException e) when (e.SocketError is SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported)
        {
            Assert.Skip("this machine has no ::1: " + e.Message);
            return;
        }

        Assert.Equal(AddressKind.IPv6, listener.LocalAddress.Kind);
        Assert.Equal("::1", listener.LocalAddress.Host);

        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);

        var clientPort = ((IPEndPoint)client.Socket!.LocalEndPoint!).Port;
        Assert.Equal($"IPv6:[::1]:{clientPort}", server.PeerDescription);
        Assert.Equal($"IPv6:[::1]:{listener.LocalAddress.Port}", client.PeerDescription);
    }

    [Fact]
    public void IPv6_any_listener_is_IPv6_only_so_IPv4_can_share_the_port()
    {
        Assert.SkipUnless(Socket.OSSupportsIPv6, "IPv6 is not supported on this machine");
        var v4 = Listen("IP:0");
        NetworkListener v6;
        try
        {
            v6 = Listen($"IPv6:{v4.LocalAddress.Port}");
        }
        catch (NetworkException e) when (e.SocketError is SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported)
        {
            Assert.Skip("this machine has no IPv6: " + e.Message);
            return;
        }

        Assert.False(v6.Socket.DualMode);
        Assert.Equal($"IPv6:{v4.LocalAddress.Port}", v6.LocalAddress.ToString());
    }

    [Fact]
    public async Task A_second_listener_on_the_same_port_fails_and_the_first_keeps_working()
    {
        var first = Listen("IP:127.0.0.1:0");
        var taken = first.LocalAddress;

        var e = Assert.Throws<NetworkException>(() => Listen(taken.ToString()));
        Assert.Equal(SocketError.AddressAlreadyInUse, e.SocketError);
        Assert.Equal(taken, e.Address);
        Assert.StartsWith($"cannot listen on {taken}: ", e.Message, StringComparison.Ordinal);

        var (client, server) = await ConnectPairAsync(first);
        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task A_restarted_server_rebinds_while_old_connections_are_in_TIME_WAIT()
    {
        var first = NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0"));
        var address = first.LocalAddress;
        await using (first)
        {
            var accept = first.AcceptAsync(Ct);
            await using var client = await NetworkConnection.ConnectAsync(address, ConnectOptions, Ct);
            await using var server = await accept;
            await ExchangeAsync(client, server);

            // The server closes first, so its end of the connection goes into TIME_WAIT on the listening port.
            await server.DisposeAsync();
            Assert.Equal(string.Empty, await ReadToEndAsync(client.Input));
        }

        var second = Listen(address.ToString());
        Assert.Equal(address, second.LocalAddress);
        var (c2, s2) = await ConnectPairAsync(second);
        await ExchangeAsync(c2, s2);
    }

    [Fact]
    public async Task Connecting_where_nothing_listens_names_the_address_and_the_refusal()
    {
        Address vacant;
        await using (var probe = NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0")))
        {
            vacant = probe.LocalAddress;
        }

        var e = await Assert.ThrowsAsync<NetworkException>(async () => await NetworkConnection.ConnectAsync(vacant, ConnectOptions, Ct));
        Assert.Equal(SocketError.ConnectionRefused, e.SocketError);
        Assert.Equal(vacant, e.Address);
        Assert.Equal(SocketError.ConnectionRefused, Assert.IsType<SocketException>(e.InnerException).SocketErrorCode);
        Assert.StartsWith($"cannot connect to {vacant}: ", e.Message, StringComparison.Ordinal);
        Assert.IsAssignableFrom<IOException>(e);
    }

    [Fact]
    public async Task Canceling_a_connect_that_waits_for_the_handshake_ends_it_and_later_connects_work()
    {
        // A listener that never accepts, with a backlog of one: once its queue is full the kernel drops further
        // SYNs, so a connect stays in its handshake until it is canceled.
        using var stuck = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        stuck.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        stuck.Listen(1);
        var address = Address.FromEndPoint(stuck.LocalEndPoint!);
        var connected = new List<NetworkConnection>();
        OperationCanceledException? canceled = null;
        for (int attempt = 0; attempt < 8 && canceled is null; attempt++)
        {
            // The short limit only once a connect has gone through: the first one, into an empty queue, may be slow
            // on a busy machine (the runtime's first connect), and canceling it would prove nothing.
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(connected.Count == 0 ? TimeSpan.FromSeconds(20) : TimeSpan.FromMilliseconds(300));
            try
            {
                connected.Add(Track(await NetworkConnection.ConnectAsync(address, ConnectOptions, timeout.Token)));
            }
            catch (OperationCanceledException e) when (!Ct.IsCancellationRequested)
            {
                canceled = e;
            }
        }

        Assert.NotNull(canceled);
        Assert.NotEmpty(connected);
        var listener = Listen("IP:127.0.0.1:0");
        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task A_canceled_accept_leaves_the_listener_usable()
    {
        var listener = Listen("IP:127.0.0.1:0");
        using (var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(50)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await listener.AcceptAsync(cancel.Token));
        }

        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task Disposing_the_listener_ends_a_pending_accept_with_ObjectDisposedException()
    {
        var listener = NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0"));
        var accept = listener.AcceptAsync(Ct).AsTask();
        await Task.Delay(50, Ct);

        await listener.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await accept.WaitAsync(Ct));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await listener.AcceptAsync(Ct));
        await listener.DisposeAsync();
    }

    [Fact]
    public void Rejects_bad_listener_options()
    {
        var owner = Assert.Throws<ArgumentException>(() => NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0"), new ListenerOptions { UnixSocketOwner = "root" }));
        Assert.StartsWith("socket owner, group and mode only apply to UNIX: addresses, not to IP:127.0.0.1:0", owner.Message, StringComparison.Ordinal);

        Assert.Throws<ArgumentException>(() => NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0"), new ListenerOptions { UnixSocketMode = UnixFileMode.UserRead }));
        Assert.Throws<ArgumentOutOfRangeException>(() => NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0"), new ListenerOptions { Backlog = 0 }));
        Assert.Throws<ArgumentNullException>(() => NetworkListener.Listen(null!));
    }

    [Fact]
    public async Task Backlog_option_is_accepted()
    {
        var listener = Listen("IP:127.0.0.1:0", new ListenerOptions { Backlog = 1 });
        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);
    }
}
