namespace Distcache.Testing;

/// <summary>What the tests that start real web servers (Apache, nginx, HAProxy) need of files: a self-signed
/// certificate made with the openssl command line, and a server's log read while the server writes it.</summary>
public static class WebServerFiles
{
    /// <summary>
    /// Makes a self-signed certificate for <paramref name="serverName"/> (an EC key: handshakes cost little CPU,
    /// which a 2-core machine running two servers and a client needs), valid for two days.
    /// </summary>
    /// <param name="certificate">Where the PEM certificate goes.</param>
    /// <param name="key">Where the PEM private key goes.</param>
    /// <param name="serverName">The certificate's CN and DNS subject alternative name.</param>
    /// <returns>What openssl did; the caller decides what a failure means.</returns>
    public static Task<ProcessResult> SelfSignedCertificateAsync(string certificate, string key, string serverName) =>
        Tool.RunProgramAsync("openssl",
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", certificate,
             "-days", "2", "-subj", $"/CN={serverName}", "-addext", $"subjectAltName=DNS:{serverName}", "-addext", "basicConstraints=critical,CA:FALSE"],
            TimeSpan.FromSeconds(60));

    /// <summary>The whole of a log a server may be writing, or "" when it does not exist (yet, or any more).</summary>
    /// <param name="path">The log.</param>
    /// <returns>Its text.</returns>
    public static string ReadLog(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd();
        }
        catch (FileNotFoundException)
        {
            return "";
        }
        catch (DirectoryNotFoundException)
        {
            return "";
        }
    }
}
