using System.Net;
using System.Net.Sockets;

namespace Distcache.Networking.Tests;

public class FileDescriptorTests : NetworkTest
{
    [Fact]
    public async Task Accepts_through_an_inherited_listening_TCP_socket()
    {
        using var original = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        original.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        original.Listen();
        var fd = Libc.Dup(original.SafeHandle);

        var listener = Listen($"FD:{fd}");
        Assert.Equal(Address.FromEndPoint(original.LocalEndPoint!), listener.LocalAddress);
        Assert.Equal($"FD:{fd}", listener.Address.ToString());

        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);
        Assert.True(server.Socket!.NoDelay);
        var clientPort = ((IPEndPoint)client.Socket!.LocalEndPoint!).Port;
        Assert.Equal($"IP:127.0.0.1:{clientPort}", server.PeerDescription);
    }

    [Fact]
    public async Task Accepts_through_an_inherited_listening_unix_socket_without_removing_its_file()
    {
        var path = TempPath("inherited.sock");
        using var original = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        original.Bind(new UnixDomainSocketEndPoint(path));
        original.Listen();
        var fd = Libc.Dup(original.SafeHandle);

        var listener = Listen($"FD:{fd}");
        Assert.Equal($"UNIX:{path}", listener.LocalAddress.ToString());

        var (client, server) = await ConnectPairAsync(listener, Address.Parse("UNIX:" + path));
        await ExchangeAsync(client, server);
        Assert.Equal($"UNIX:{path}#1", server.PeerDescription);

        await listener.DisposeAsync();
        Assert.True(File.Exists(path));
    }

    [Fact]
    public async Task Uses_an_inherited_connected_socket_as_a_connection()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var accept = listener.AcceptAsync(Ct);
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(listener.LocalAddress.ToEndPoint(), Ct);
        var server = Track(await accept);
        var fd = Libc.Dup(raw.SafeHandle);

        var client = await ConnectAsync(Address.Parse($"FD:{fd}"));

        Assert.Equal(listener.LocalAddress.ToString(), client.PeerDescription);
        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task A_descriptor_that_is_not_a_socket_is_refused_and_left_open()
    {
        var path = TempPath("plain.txt");
        await File.WriteAllTextAsync(path, "plain file", Ct);
        using var file = File.OpenHandle(path);
        var fd = Libc.Dup(file);
        try
        {
            var listen = Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse($"FD:{fd}")));
            Assert.Equal($"FD:{fd} is not a socket", listen.Message);
            var connect = await Assert.ThrowsAsync<NetworkException>(async () => await NetworkConnection.ConnectAsync(Address.Parse($"FD:{fd}"), Ct));
            Assert.Equal($"FD:{fd} is not a socket", connect.Message);

            Assert.True(Libc.IsOpen(fd));
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    [Fact]
    public void A_descriptor_that_is_not_open_is_refused()
    {
        // Far above any descriptor limit, so it is certainly not open.
        var e = Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse("FD:2000000000")));

        Assert.StartsWith("FD:2000000000 is not an open socket: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_socket_in_the_wrong_state_is_refused_and_left_open()
    {
        var listener = Listen("IP:127.0.0.1:0");
        var listeningFd = Libc.Dup(listener.Socket.SafeHandle);
        var accept = listener.AcceptAsync(Ct);
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(listener.LocalAddress.ToEndPoint(), Ct);
        Track(await accept);
        var connectedFd = Libc.Dup(raw.SafeHandle);
        using var unbound = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var unboundFd = Libc.Dup(unbound.SafeHandle);
        using var datagram = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        var datagramFd = Libc.Dup(datagram.SafeHandle);
        try
        {
            var connectToListening = await Assert.ThrowsAsync<NetworkException>(async () => await NetworkConnection.ConnectAsync(Address.Parse($"FD:{listeningFd}"), Ct));
            Assert.Equal($"FD:{listeningFd} is a listening socket, not a connected one; listen with it instead", connectToListening.Message);

            var listenOnConnected = Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse($"FD:{connectedFd}")));
            Assert.Equal($"FD:{connectedFd} is a connected socket, not a listening one; connect with it instead", listenOnConnected.Message);

            var listenOnUnbound = Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse($"FD:{unboundFd}")));
            Assert.Equal($"FD:{unboundFd} is not a listening socket", listenOnUnbound.Message);
            var connectOnUnbound = await Assert.ThrowsAsync<NetworkException>(async () => await NetworkConnection.ConnectAsync(Address.Parse($"FD:{unboundFd}"), Ct));
            Assert.Equal($"FD:{unboundFd} is not a connected socket", connectOnUnbound.Message);

            var udp = Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse($"FD:{datagramFd}")));
            Assert.Equal($"FD:{datagramFd} is a Dgram socket, not a stream socket", udp.Message);

            Assert.True(Libc.IsOpen(listeningFd));
            Assert.True(Libc.IsOpen(connectedFd));
            Assert.True(Libc.IsOpen(unboundFd));
            Assert.True(Libc.IsOpen(datagramFd));
        }
        finally
        {
            Libc.Close(listeningFd);
            Libc.Close(connectedFd);
            Libc.Close(unboundFd);
            Libc.Close(datagramFd);
        }
    }
}
