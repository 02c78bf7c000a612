using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Distcache.Networking;

/// <summary>Reads certificates, keys and CA bundles from PEM files, turning every failure into a
/// <see cref="TlsConfigurationException"/> that names the file.</summary>
internal static class TlsFiles
{
    /// <summary>Server and client TLS both accept only these: TLS 1.0 and 1.1 are broken, and 1.5.1 had no TLS at all
    /// to stay compatible with.</summary>
    public const System.Security.Authentication.SslProtocols Protocols =
        System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13;

    /// <summary>The certificate with its private key, and any further certificates of the file (the chain to send).</summary>
    public static (X509Certificate2 Certificate, X509Certificate2Collection Chain) LoadCertificate(string certificateFile, string? keyFile)
    {
        string text = ReadText(TlsFileRole.Certificate, certificateFile);
        var all = new X509Certificate2Collection();
        try
        {
            all.ImportFromPem(text);
        }
        catch (CryptographicException e)
        {
            throw new TlsConfigurationException(TlsFileRole.Certificate, certificateFile, $"not a valid PEM certificate ({e.Message})", e);
        }

        if (all.Count == 0)
        {
            throw new TlsConfigurationException(TlsFileRole.Certificate, certificateFile, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }

        string keyText = keyFile is null ? text : ReadText(TlsFileRole.Key, keyFile);
        X509Certificate2 withKey;
        try
        {
            withKey = X509Certificate2.CreateFromPem(PemOf(all[0]), keyText);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            string problem = keyText.Contains("PRIVATE KEY-----", StringComparison.Ordinal)
                ? $"the private key does not match the certificate in {certificateFile}, or cannot be read ({e.Message})"
                : "holds no PEM private key (-----BEGIN PRIVATE KEY-----)";
            throw new TlsConfigurationException(TlsFileRole.Key, keyFile ?? certificateFile, problem, e);
        }

        var chain = new X509Certificate2Collection();
        for (int i = 1; i < all.Count; i++)
        {
            chain.Add(all[i]);
        }

        return (withKey, chain);
    }

    /// <summary>The certificates of a CA bundle; at least one.</summary>
    public static X509Certificate2Collection LoadAuthorities(string caFile)
    {
        string text = ReadText(TlsFileRole.CertificateAuthority, caFile);
        var authorities = new X509Certificate2Collection();
        try
        {
            authorities.ImportFromPem(text);
        }
        catch (CryptographicException e)
        {
            throw new TlsConfigurationException(TlsFileRole.CertificateAuthority, caFile, $"not a valid PEM certificate bundle ({e.Message})", e);
        }

        return authorities.Count > 0
            ? authorities
            : throw new TlsConfigurationException(TlsFileRole.CertificateAuthority, caFile, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }

    /// <summary>
    /// Checks a peer's certificate against the configured authorities only (never the system's trust store), for
    /// the given purpose. Returns null when it is acceptable, otherwise why not.
    /// </summary>
    public static string? CheckPeer(X509Certificate? presented, X509Chain? sentChain, X509Certificate2Collection authorities, bool peerIsClient)
    {
        if (presented is null)
        {
            return peerIsClient ? "no client certificate" : "no server certificate";
        }

        using var certificate = new X509Certificate2(presented);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(peerIsClient ? "1.3.6.1.5.5.7.3.2" : "1.3.6.1.5.5.7.3.1"));
        if (sentChain is not null)
        {
            // The intermediates the peer sent; they only help if they lead to one of the configured roots.
            foreach (X509ChainElement element in sentChain.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        if (chain.Build(certificate))
        {
            return null;
        }

        string status = string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct());
        return $"certificate '{certificate.Subject}' is not acceptable: {(status.Length > 0 ? status : "its chain does not lead to the configured CA")}";
    }

    private static string PemOf(X509Certificate2 certificate) => certificate.ExportCertificatePem();

    private static string ReadText(TlsFileRole role, string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new TlsConfigurationException(role, path, $"cannot be read ({e.Message})", e);
        }
    }
}
