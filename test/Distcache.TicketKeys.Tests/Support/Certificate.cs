using System.Security.Cryptography.X509Certificates;

namespace Distcache.TicketKeys.Tests.Support;

/// <summary>
/// The self-signed certificate every server of the run serves, made once with the openssl command line. One for all:
/// nginx derives its session id context from its certificate, and OpenSSL resumes a session only under the context
/// it was made in, so two nginx hosts share tickets only if they serve the same certificate (as a farm does).
/// </summary>
public sealed class Certificate : IAsyncLifetime
{
    public const string ServerName = "cache.test";

    private readonly string _dir = Directory.CreateTempSubdirectory("dc-tk-cert-").FullName;
    private string? _error;

    public string CertificateFile => Ready(Path.Combine(_dir, "cert.pem"));

    public string KeyFile => Ready(Path.Combine(_dir, "key.pem"));

    /// <summary>Certificate and key in one file, as HAProxy's <c>crt</c> takes them.</summary>
    public string CombinedFile => Ready(Path.Combine(_dir, "site.pem"));

    /// <summary>The certificate's DER encoding.</summary>
    public byte[] Der => X509Certificate2.CreateFromPem(File.ReadAllText(CertificateFile)).RawData;

    public async ValueTask InitializeAsync()
    {
        // Failing here is kept for the tests that use the certificate, so that the tests that skip (no nginx, no
        // HAProxy) still skip.
        string cert = Path.Combine(_dir, "cert.pem");
        string key = Path.Combine(_dir, "key.pem");
        ProcessResult made = await WebServerFiles.SelfSignedCertificateAsync(cert, key, ServerName);
        if (!made.Succeeded)
        {
            _error = $"openssl req -x509 failed: {made.CommandLine}\n{made.Tail()}";
            return;
        }

        await File.WriteAllTextAsync(Path.Combine(_dir, "site.pem"), await File.ReadAllTextAsync(cert) + await File.ReadAllTextAsync(key));
    }

    private string Ready(string path) => _error is null ? path : throw new InvalidOperationException(_error);

    public ValueTask DisposeAsync()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }

        return ValueTask.CompletedTask;
    }
}
