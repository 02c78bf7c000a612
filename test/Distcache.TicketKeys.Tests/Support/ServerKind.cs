namespace Distcache.TicketKeys.Tests.Support;

/// <summary>The web servers the tests run.</summary>
public enum ServerKind
{
    Nginx,
    HAProxy,
    Apache,
}

/// <summary>
/// The web servers of the tests as hosts of a farm: each serves TLS with session tickets only (no session cache, so
/// that a resumed session proves a ticket was decrypted), with the ticket keys of files in its own folder.
/// </summary>
internal static class ServerKinds
{
    /// <summary>A server of <paramref name="kind"/> on ADDRESS:PORT, not started yet.</summary>
    public static WebServer Create(ServerKind kind, string address, int port, Certificate certificate) => kind switch
    {
        ServerKind.Nginx => new NginxServer(address, port, certificate),
        ServerKind.HAProxy => new HAProxyServer(address, port, certificate),
        // ServerName and port make mod_ssl's session id context: the same on every host, as in a farm. No
        // SSLSessionCache; the key file is in the server's folder.
        ServerKind.Apache => new ApacheServer(new ApacheSettings(address, port, Certificate.ServerName, certificate.CertificateFile, certificate.KeyFile)
        {
            TicketKeyFile = "ticket.key",
        }),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Debian's program for <paramref name="kind"/> and its package, which scripts/test.sh installs.</summary>
    public static (string Binary, string Package) Program(ServerKind kind) => kind switch
    {
        ServerKind.Nginx => (NginxServer.Binary, "nginx"),
        ServerKind.HAProxy => (HAProxyServer.Binary, "haproxy"),
        ServerKind.Apache => (ApacheServer.Binary, "apache2"),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Skips the test when <paramref name="kind"/>'s program is not installed.</summary>
    public static void Require(ServerKind kind)
    {
        (string binary, string package) = Program(kind);
        Assert.SkipUnless(File.Exists(binary), $"{binary} is not installed (Debian package {package}; scripts/test.sh installs it)");
    }
}
