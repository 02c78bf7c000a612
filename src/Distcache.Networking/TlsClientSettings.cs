using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Distcache.Networking;

/// <summary>
/// The TLS side of a client's connections to a server: the CA the server's certificate must chain to, the name it
/// must carry, and optionally this client's own certificate and key for servers that require one. Only TLS 1.2 and
/// 1.3 are offered.
/// </summary>
/// <remarks>
/// The files are read when the settings are created, so a bad file is reported at once; <see cref="Reload"/> reads
/// them again for the connections made afterwards. The server's certificate is checked against the configured CA
/// alone (never the system's trust store) and against <see cref="ServerName"/>, or the host of the address
/// connected to when no name is configured.
/// </remarks>
public sealed class TlsClientSettings
{
    private Material _material;

    /// <summary>Reads the CA and, if given, the client certificate and key.</summary>
    /// <param name="caFile">PEM file with the CAs that issue server certificates.</param>
    /// <param name="certificateFile">PEM file with this client's certificate (and optionally its chain); null for none.</param>
    /// <param name="keyFile">PEM file with the client's private key; null when it is in <paramref name="certificateFile"/>.</param>
    /// <param name="serverName">The name the server certificate must carry; null for the host of the address connected to.</param>
    /// <exception cref="ArgumentNullException"><paramref name="caFile"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="keyFile"/> is given without <paramref name="certificateFile"/>, or <paramref name="serverName"/> is empty.</exception>
    /// <exception cref="TlsConfigurationException">A file cannot be read or used; the exception names it.</exception>
    public TlsClientSettings(string caFile, string? certificateFile = null, string? keyFile = null, string? serverName = null)
    {
        ArgumentNullException.ThrowIfNull(caFile);
        if (keyFile is not null && certificateFile is null)
        {
            throw new ArgumentException("a client key needs its certificate", nameof(keyFile));
        }

        if (serverName is { Length: 0 })
        {
            throw new ArgumentException("the server name cannot be empty", nameof(serverName));
        }

        CaFile = caFile;
        CertificateFile = certificateFile;
        KeyFile = keyFile;
        ServerName = serverName;
        _material = Load();
    }

    /// <summary>The CA file.</summary>
    public string CaFile { get; }

    /// <summary>The client certificate file, or null.</summary>
    public string? CertificateFile { get; }

    /// <summary>The client key file, or null.</summary>
    public string? KeyFile { get; }

    /// <summary>The name the server's certificate must carry, or null for the host of the address connected to.</summary>
    public string? ServerName { get; }

    /// <summary>The client certificate new connections present, or null.</summary>
    public X509Certificate2? Certificate => Volatile.Read(ref _material).Client?.TargetCertificate;

    /// <summary>Reads the files again for connections made from now on; on failure nothing changes.</summary>
    /// <exception cref="TlsConfigurationException">A file cannot be read or used.</exception>
    public void Reload() => Volatile.Write(ref _material, Load());

    /// <summary>The name a connection to <paramref name="server"/> checks the certificate against.</summary>
    /// <param name="server">The address connected to.</param>
    /// <returns><see cref="ServerName"/>, or the host of <paramref name="server"/>.</returns>
    /// <exception cref="ArgumentException">No name is configured and the address has no host (<c>UNIX:</c>, <c>FD:</c>).</exception>
    public string ExpectedName(Address server)
    {
        ArgumentNullException.ThrowIfNull(server);
        return ServerName ?? server.Host
            ?? throw new ArgumentException($"{server} has no host name to check the server certificate against; give the expected name explicitly", nameof(server));
    }

    /// <summary>
    /// A stream wrapper (<see cref="ConnectionOptions.StreamWrapper"/>) that runs the client side of a handshake
    /// with <paramref name="server"/>, refusing a server whose certificate does not chain to the CA or does not
    /// carry the expected name.
    /// </summary>
    /// <param name="server">The address that will be connected to.</param>
    /// <returns>The wrapper.</returns>
    /// <exception cref="ArgumentException">See <see cref="ExpectedName"/>.</exception>
    public Func<Stream, CancellationToken, ValueTask<Stream>> CreateStreamWrapper(Address server)
    {
        string name = ExpectedName(server);
        return (stream, cancellationToken) => AuthenticateAsync(stream, name, cancellationToken);
    }

    private async ValueTask<Stream> AuthenticateAsync(Stream stream, string name, CancellationToken cancellationToken)
    {
        Material material = Volatile.Read(ref _material);
        string? refusal = null;
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = name,
            EnabledSslProtocols = TlsFiles.Protocols,
            AllowRenegotiation = false,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            ClientCertificateContext = material.Client,
            RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
            {
                // The name check is the runtime's (against TargetHost, including IP addresses); the chain is
                // checked here against the configured CA only, so the runtime's own chain verdict is ignored.
                refusal = (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0
                    ? $"the server certificate '{certificate?.Subject}' is not for '{name}'"
                    : TlsFiles.CheckPeer(certificate, chain, material.Authorities, peerIsClient: false);
                return refusal is null;
            },
        };

        var tls = new SslStream(stream, leaveInnerStreamOpen: false);
        try
        {
            await tls.AuthenticateAsClientAsync(options, cancellationToken).ConfigureAwait(false);
            return tls;
        }
        catch (AuthenticationException e) when (refusal is not null)
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw new AuthenticationException("server refused: " + refusal, e);
        }
        catch
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private Material Load()
    {
        X509Certificate2Collection authorities = TlsFiles.LoadAuthorities(CaFile);
        SslStreamCertificateContext? client = null;
        if (CertificateFile is not null)
        {
            (X509Certificate2 certificate, X509Certificate2Collection chain) = TlsFiles.LoadCertificate(CertificateFile, KeyFile);
            client = SslStreamCertificateContext.Create(certificate, chain, offline: true);
        }

        return new Material(authorities, client);
    }

    private sealed record Material(X509Certificate2Collection Authorities, SslStreamCertificateContext? Client);
}
