using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Distcache.Networking.Tests;

public class UnixSocketTests : NetworkTest
{
    [Fact]
    public async Task Exchanges_bytes_and_names_anonymous_peers_by_listener_path_and_number()
    {
        var path = TempPath("dc.sock");
        var listener = Listen("UNIX:" + path);
        Assert.Equal($"UNIX:{path}", listener.LocalAddress.ToString());

        var (client1, server1) = await ConnectPairAsync(listener);
        var (client2, server2) = await ConnectPairAsync(listener);
        await ExchangeAsync(client1, server1);
        await ExchangeAsync(client2, server2);

        Assert.Equal($"UNIX:{path}", client1.PeerDescription);
        Assert.Equal($"UNIX:{path}#1", server1.PeerDescription);
        Assert.Equal($"UNIX:{path}#2", server2.PeerDescription);
        Assert.Equal(AddressFamily.Unix, server1.Socket!.AddressFamily);
    }

    [Fact]
    public async Task Dispose_removes_the_socket_file_it_created()
    {
        var path = TempPath("gone.sock");
        var listener = NetworkListener.Listen(Address.Parse("UNIX:" + path));
        Assert.True(File.Exists(path));

        await listener.DisposeAsync();

        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task Dispose_leaves_a_file_that_replaced_its_socket()
    {
        var path = TempPath("replaced.sock");
        var listener = NetworkListener.Listen(Address.Parse("UNIX:" + path));
        File.Delete(path);
        await File.WriteAllTextAsync(path, "someone else's", Ct);

        await listener.DisposeAsync();

        Assert.Equal("someone else's", await File.ReadAllTextAsync(path, Ct));
    }

    [Fact]
    public async Task A_stale_socket_file_left_by_a_dead_process_is_replaced()
    {
        var path = TempPath("stale.sock");
        LeaveStaleSocket(path);

        var listener = Listen("UNIX:" + path);
        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task A_stale_socket_file_is_replaced_logged_and_the_new_one_removed_on_dispose()
    {
        var path = TempPath("stale2.sock");
        LeaveStaleSocket(path);
        var logs = new LogCapture();

        await using (var listener = NetworkListener.Listen(Address.Parse("UNIX:" + path), new ListenerOptions { Logger = logs.CreateLogger(nameof(NetworkListener)) }))
        {
            Assert.True(File.Exists(path));
        }

        Assert.False(File.Exists(path));
        Assert.Contains((LogLevel.Information, $"Removed stale socket file {path}: nothing was listening on it"), logs.Entries.Select(e => (e.Level, e.Message)));
    }

    [Fact]
    public async Task A_socket_a_running_process_accepts_on_is_not_taken_over()
    {
        var path = TempPath("live.sock");
        var first = Listen("UNIX:" + path);

        var e = Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse("UNIX:" + path)));
        Assert.Equal($"UNIX:{path} is in use by a running process", e.Message);
        Assert.Equal(SocketError.AddressAlreadyInUse, e.SocketError);
        Assert.True(File.Exists(path));

        // The liveness probe was itself a connection: the running server sees it as one that ends at once.
        var probe = await AcceptAsync(first);
        Assert.Equal(string.Empty, await ReadToEndAsync(probe.Input));

        var (client, server) = await ConnectPairAsync(first);
        await ExchangeAsync(client, server);
    }

    [Fact]
    public async Task A_regular_file_at_the_path_is_refused_and_left_untouched()
    {
        var path = TempPath("precious.txt");
        await File.WriteAllTextAsync(path, "do not delete", Ct);

        var e = Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse("UNIX:" + path)));

        Assert.Equal($"UNIX:{path} exists and is not a socket; refusing to replace it", e.Message);
        Assert.Equal("do not delete", await File.ReadAllTextAsync(path, Ct));
    }

    [Fact]
    public void A_directory_or_a_symbolic_link_at_the_path_is_refused_and_left_untouched()
    {
        var directory = TempPath("dir");
        Directory.CreateDirectory(directory);
        var link = TempPath("link");
        File.CreateSymbolicLink(link, TempPath("nowhere"));

        Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse("UNIX:" + directory)));
        var e = Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse("UNIX:" + link)));

        Assert.Equal($"UNIX:{link} exists and is not a socket; refusing to replace it", e.Message);
        Assert.True(Directory.Exists(directory));
        Assert.Equal(TempPath("nowhere"), new FileInfo(link).LinkTarget);
    }

    [Fact]
    public void Connecting_to_a_path_without_a_socket_names_the_address()
    {
        var address = Address.Parse("UNIX:" + TempPath("nobody.sock"));

        var e = Assert.Throws<NetworkException>(() => NetworkConnection.ConnectAsync(address, ConnectOptions, Ct).AsTask().GetAwaiter().GetResult());

        Assert.StartsWith($"cannot connect to {address}: ", e.Message, StringComparison.Ordinal);
        Assert.IsType<SocketException>(e.InnerException);
    }

    [Fact]
    public async Task Connecting_to_a_stale_socket_is_refused()
    {
        var path = TempPath("stale.sock");
        LeaveStaleSocket(path);

        var e = await Assert.ThrowsAsync<NetworkException>(async () => await NetworkConnection.ConnectAsync(Address.Parse("UNIX:" + path), ConnectOptions, Ct));
        Assert.Equal(SocketError.ConnectionRefused, e.SocketError);
    }

    [Theory]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite)]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite)]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute)]
    public async Task The_socket_mode_is_in_place_when_Listen_returns(UnixFileMode mode)
    {
        var path = TempPath("mode.sock");

        var listener = Listen("UNIX:" + path, new ListenerOptions { UnixSocketMode = mode });

        Assert.Equal(mode, File.GetUnixFileMode(path));
        var (client, server) = await ConnectPairAsync(listener);
        await ExchangeAsync(client, server);
    }

    [Fact]
    public void Owner_and_group_can_be_given_as_numeric_ids()
    {
        Assert.SkipUnless(Libc.GetEffectiveUserId() == 0, "only root can give a file away");
        var path = TempPath("ids.sock");

        Listen("UNIX:" + path, new ListenerOptions { UnixSocketOwner = "65534", UnixSocketGroup = "65533", UnixSocketMode = UnixFileMode.UserRead | UnixFileMode.UserWrite });

        Assert.Equal((65534u, 65533u), Libc.OwnerOf(path));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void Owner_and_group_of_the_current_user_can_be_given_as_numeric_ids()
    {
        var uid = Libc.GetEffectiveUserId();
        var gid = Libc.GetEffectiveGroupId();
        var path = TempPath("self.sock");

        Listen("UNIX:" + path, new ListenerOptions { UnixSocketOwner = $"{uid}", UnixSocketGroup = $"{gid}" });

        Assert.Equal((uid, gid), Libc.OwnerOf(path));
    }

    [Fact]
    public void Owner_and_group_can_be_given_by_name()
    {
        var uid = Libc.GetEffectiveUserId();
        var gid = Libc.GetEffectiveGroupId();
        var user = Libc.NameOf("/etc/passwd", uid);
        var group = Libc.NameOf("/etc/group", gid);
        Assert.SkipWhen(user is null || group is null, "the current user or group has no entry in /etc/passwd or /etc/group");
        var path = TempPath("names.sock");

        Listen("UNIX:" + path, new ListenerOptions { UnixSocketOwner = user, UnixSocketGroup = group });

        Assert.Equal((uid, gid), Libc.OwnerOf(path));
    }

    [Fact]
    public void Another_user_can_be_given_by_name()
    {
        Assert.SkipUnless(Libc.GetEffectiveUserId() == 0, "only root can give a file away");
        var nobody = Libc.NameOf("/etc/passwd", 65534);
        var nogroup = Libc.NameOf("/etc/group", 65534);
        Assert.SkipWhen(nobody is null || nogroup is null, "no user and group 65534 in /etc/passwd and /etc/group");
        var path = TempPath("nobody.sock");

        Listen("UNIX:" + path, new ListenerOptions { UnixSocketOwner = nobody, UnixSocketGroup = nogroup });

        Assert.Equal((65534u, 65534u), Libc.OwnerOf(path));
    }

    [Fact]
    public void An_unknown_user_or_group_is_an_error_and_leaves_no_file()
    {
        var path = TempPath("unknown.sock");
        var address = Address.Parse("UNIX:" + path);

        var user = Assert.Throws<ArgumentException>(() => NetworkListener.Listen(address, new ListenerOptions { UnixSocketOwner = "no-such-user-dcn" }));
        Assert.StartsWith($"unknown user 'no-such-user-dcn' for the owner of {address}", user.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(path));

        var group = Assert.Throws<ArgumentException>(() => NetworkListener.Listen(address, new ListenerOptions { UnixSocketGroup = "no-such-group-dcn" }));
        Assert.StartsWith($"unknown group 'no-such-group-dcn' for the owner group of {address}", group.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(path));

        var range = Assert.Throws<ArgumentException>(() => NetworkListener.Listen(address, new ListenerOptions { UnixSocketOwner = "4294967296" }));
        Assert.StartsWith($"user id 4294967296 for {address} is out of range", range.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Failing_to_set_the_owner_leaves_no_file()
    {
        Assert.SkipWhen(Libc.GetEffectiveUserId() == 0, "root may give a file to anyone, so chown cannot be made to fail");
        var path = TempPath("denied.sock");

        var e = Assert.Throws<NetworkException>(() => NetworkListener.Listen(Address.Parse("UNIX:" + path), new ListenerOptions { UnixSocketOwner = "0" }));

        Assert.Contains("owner 0", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(path));
    }

    /// <summary>What a crashed server leaves behind: a socket file that nothing listens on any more.</summary>
    private static void LeaveStaleSocket(string path)
    {
        using (var dead = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            // Bound through a plain EndPoint: a UnixDomainSocketEndPoint would make Dispose unlink the file,
            // which a killed process never gets to do.
            dead.Bind(new NoUnlinkEndPoint(path));
            dead.Listen();
        }

        Assert.True(File.Exists(path));
    }

    private sealed class NoUnlinkEndPoint(string path) : System.Net.EndPoint
    {
        private readonly UnixDomainSocketEndPoint _endPoint = new(path);

        public override AddressFamily AddressFamily => AddressFamily.Unix;

        public override System.Net.SocketAddress Serialize() => _endPoint.Serialize();

        public override System.Net.EndPoint Create(System.Net.SocketAddress socketAddress) => _endPoint.Create(socketAddress);
    }
}
