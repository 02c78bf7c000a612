using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Distcache.Testing;

/// <summary>
/// A throw-away PKI in a temporary folder, made with CertificateRequest: a CA, a second unrelated CA, server
/// certificates for 127.0.0.1/localhost (and one for another name), and client certificates, each written as
/// NAME.pem and NAME.key.
/// </summary>
public sealed class TestPki : IDisposable
{
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");
    private readonly TempDir _dir = new();

    public TestPki()
    {
        using var ca = MakeCa("CN=Test CA, O=distcache tests");
        using var other = MakeCa("CN=Other CA, O=elsewhere");
        Write("ca", ca, withKey: true);
        Write("other-ca", other, withKey: true);
        Issue("server", ca, "CN=localhost", server: true, names: ["localhost"], ips: [IPAddress.Loopback]);
        Issue("server2", ca, "CN=localhost, OU=renewed", server: true, names: ["localhost"], ips: [IPAddress.Loopback]);
        Issue("wrong-name", ca, "CN=elsewhere.example", server: true, names: ["elsewhere.example"], ips: []);
        Issue("tenant-a", ca, "CN=tenant-a, O=Shop", server: false);
        Issue("tenant-b", ca, "CN=tenant-b, O=Blog", server: false);
        Issue("reader", ca, "CN=reader, O=Shop", server: false);
        Issue("stranger", other, "CN=tenant-a, O=Shop", server: false);
        Issue("expired", ca, "CN=tenant-a, O=Shop", server: false, notAfter: DateTimeOffset.UtcNow.AddDays(-1));
    }

    public string Folder => _dir.Path;

    public string Ca => Pem("ca");

    public string Pem(string name) => _dir.File(name + ".pem");

    public string Key(string name) => _dir.File(name + ".key");

    public string File(string name) => _dir.File(name);

    /// <summary>The certificate NAME with its key, for an SslStream.</summary>
    public X509Certificate2 Load(string name) => X509Certificate2.CreateFromPemFile(Pem(name), Key(name));

    /// <summary>dc_server's TLS flags for server certificate NAME, with client certificates required.</summary>
    public string[] ServerFlags(string name = "server") => ["-tls-cert", Pem(name), "-tls-key", Key(name), "-tls-ca", Ca];

    /// <summary>A client-library configuration string for client certificate NAME.</summary>
    public string ClientConfiguration(string address, string name) => $"{address},tlsCa={Ca},tlsCert={Pem(name)},tlsKey={Key(name)}";

    public void Dispose() => _dir.Dispose();

    private static X509Certificate2 MakeCa(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-400), DateTimeOffset.UtcNow.AddYears(5));
    }

    private void Issue(string name, X509Certificate2 ca, string subject, bool server, string[]? names = null, IPAddress[]? ips = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([server ? ServerAuth : ClientAuth], false));
        if (names is not null || ips is not null)
        {
            var san = new SubjectAlternativeNameBuilder();
            foreach (string dns in names ?? [])
            {
                san.AddDnsName(dns);
            }

            foreach (IPAddress ip in ips ?? [])
            {
                san.AddIpAddress(ip);
            }

            request.CertificateExtensions.Add(san.Build());
        }

        DateTimeOffset end = notAfter ?? DateTimeOffset.UtcNow.AddDays(30);
        byte[] serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7F;
        using X509Certificate2 issued = request.Create(ca, end.AddDays(-60), end, serial);
        System.IO.File.WriteAllText(Pem(name), issued.ExportCertificatePem());
        System.IO.File.WriteAllText(Key(name), key.ExportPkcs8PrivateKeyPem());
    }

    private void Write(string name, X509Certificate2 certificate, bool withKey)
    {
        System.IO.File.WriteAllText(Pem(name), certificate.ExportCertificatePem());
        if (withKey)
        {
            System.IO.File.WriteAllText(Key(name), certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        }
    }
}
