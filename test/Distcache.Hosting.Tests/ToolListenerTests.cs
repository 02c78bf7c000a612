using System.Net.Sockets;
using Distcache.Networking;
using Distcache.Testing;

namespace Distcache.Hosting.Tests;

/// <summary>The reason printed after "Error, failed to listen on ADDRESS:".</summary>
public sealed class ToolListenerTests
{
    // What the runtime says for bind(2)'s ENOENT on a unix socket path.
    private static readonly NetworkException NotAvailable = new("cannot listen: Cannot assign requested address", null, SocketError.AddressNotAvailable, null);

    [Fact]
    public void A_unix_socket_in_a_missing_directory_names_the_directory()
    {
        Assert.Equal("the directory /no/such/dir does not exist", ToolListener.Reason(Address.Parse("UNIX:/no/such/dir/sock"), NotAvailable));
    }

    [Fact]
    public void A_unix_socket_under_a_file_says_the_file_is_not_a_directory()
    {
        using var dir = new TempDir();
        string file = dir.File("plain");
        File.WriteAllText(file, "x");

        Assert.Equal($"{file} is a file, not a directory", ToolListener.Reason(Address.Parse($"UNIX:{file}/sock"), NotAvailable));
    }

    [Fact]
    public void A_relative_path_is_shown_as_written()
    {
        Assert.Equal("the directory no-such-dir-dcx does not exist", ToolListener.Reason(Address.Parse("UNIX:no-such-dir-dcx/sock"), NotAvailable));
    }

    [Fact]
    public void Other_failures_keep_their_own_reason()
    {
        using var dir = new TempDir();
        var denied = new NetworkException("cannot listen: Permission denied", null, SocketError.AccessDenied, null);

        Assert.Equal(denied.Message, ToolListener.Reason(Address.Parse("UNIX:/no/such/dir/sock"), denied));
        Assert.Equal(NotAvailable.Message, ToolListener.Reason(Address.Parse($"UNIX:{dir.File("s")}"), NotAvailable));
        Assert.Equal(NotAvailable.Message, ToolListener.Reason(Address.Parse("IP:10.255.255.1:9"), NotAvailable));
    }
}
