using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Distcache.Networking;

/// <summary>
/// The TLS side of a listening server: its certificate and key, and optionally the CA whose client certificates it
/// requires (mutual authentication). Only TLS 1.2 and 1.3 are offered and renegotiation is refused.
/// </summary>
/// <remarks>
/// <para>The files are read when the settings are created, so a bad file is reported at start-up.
/// <see cref="Reload"/> reads them again (on SIGHUP in the tools): handshakes that start afterwards use the new
/// certificate and CA, connections already established carry on untouched.</para>
/// <para>Asking a TLS client for a certificate is only a request; a client may answer with none. With a CA
/// configured, the validation callback therefore refuses a handshake without one, as well as one whose certificate
/// does not chain to the CA (the system's trust store is never consulted), has expired, or is not for client
/// authentication.</para>
/// </remarks>
public sealed class TlsServerSettings
{
    private Material _material;

    /// <summary>Reads the certificate, key and CA files.</summary>
    /// <param name="certificateFile">PEM file with the server certificate, optionally followed by its intermediates.</param>
    /// <param name="keyFile">PEM file with the server's private key; null when it is in <paramref name="certificateFile"/>.</param>
    /// <param name="clientCaFile">PEM file with the CAs that issue client certificates; null for no client authentication.</param>
    /// <exception cref="ArgumentNullException"><paramref name="certificateFile"/> is null.</exception>
    /// <exception cref="TlsConfigurationException">A file cannot be read or used; the exception names it.</exception>
    public TlsServerSettings(string certificateFile, string? keyFile = null, string? clientCaFile = null)
    {
        ArgumentNullException.ThrowIfNull(certificateFile);
        CertificateFile = certificateFile;
        KeyFile = keyFile;
        ClientCaFile = clientCaFile;
        _material = Load();
    }

    /// <summary>The server certificate file.</summary>
    public string CertificateFile { get; }

    /// <summary>The private key file, or null when the key is in <see cref="CertificateFile"/>.</summary>
    public string? KeyFile { get; }

    /// <summary>The client CA file, or null when clients are not authenticated.</summary>
    public string? ClientCaFile { get; }

    /// <summary>True when every client must present a certificate issued by <see cref="ClientCaFile"/>.</summary>
    public bool RequiresClientCertificate => ClientCaFile is not null;

    /// <summary>How long a client has to complete its handshake before the connection is closed. Default 5 seconds.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The certificate new handshakes present.</summary>
    public X509Certificate2 Certificate => Volatile.Read(ref _material).Context.TargetCertificate;

    /// <summary>
    /// Reads the files again and makes new handshakes use them. If any file is unusable nothing changes and the
    /// exception says why; established connections are never affected.
    /// </summary>
    /// <exception cref="TlsConfigurationException">A file cannot be read or used.</exception>
    public void Reload() => Volatile.Write(ref _material, Load());

    /// <summary>
    /// Runs the server side of a handshake on <paramref name="stream"/>; usable as a stream wrapper for
    /// <see cref="NetworkConnection.WrapStreamAsync"/>. The returned stream owns <paramref name="stream"/>.
    /// </summary>
    /// <param name="stream">The accepted connection's stream.</param>
    /// <param name="cancellationToken">Abandons the handshake.</param>
    /// <returns>The authenticated stream; with a client CA, its <see cref="SslStream.RemoteCertificate"/> is the
    /// client's verified certificate.</returns>
    /// <exception cref="AuthenticationException">The handshake failed or the client was refused; the message says why.</exception>
    public async ValueTask<Stream> AuthenticateAsync(Stream stream, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Material material = Volatile.Read(ref _material);
        string? refusal = null;
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = material.Context,
            EnabledSslProtocols = TlsFiles.Protocols,
            AllowRenegotiation = false,
            ClientCertificateRequired = material.ClientAuthorities is not null,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };
        if (material.ClientAuthorities is { } authorities)
        {
            options.RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
            {
                refusal = TlsFiles.CheckPeer(certificate, chain, authorities, peerIsClient: true);
                return refusal is null;
            };
        }

        var tls = new SslStream(stream, leaveInnerStreamOpen: false);
        try
        {
            await tls.AuthenticateAsServerAsync(options, cancellationToken).ConfigureAwait(false);
            return tls;
        }
        catch (AuthenticationException e) when (refusal is not null)
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw new AuthenticationException("client refused: " + refusal, e);
        }
        catch
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private Material Load()
    {
        (X509Certificate2 certificate, X509Certificate2Collection chain) = TlsFiles.LoadCertificate(CertificateFile, KeyFile);
        X509Certificate2Collection? authorities = ClientCaFile is null ? null : TlsFiles.LoadAuthorities(ClientCaFile);

        // offline: the chain is built from what the file holds, never by fetching intermediates at start-up. The
        // client CAs are named in the certificate request, so that a client holding several certificates (mod_ssl,
        // stunnel, openssl s_client) can pick the one this server accepts.
        SslCertificateTrust? trust = authorities is null ? null : SslCertificateTrust.CreateForX509Collection(authorities, sendTrustInHandshake: true);
        var context = SslStreamCertificateContext.Create(certificate, chain, offline: true, trust);
        return new Material(context, authorities);
    }

    private sealed record Material(SslStreamCertificateContext Context, X509Certificate2Collection? ClientAuthorities);
}
