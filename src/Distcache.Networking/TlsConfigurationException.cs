namespace Distcache.Networking;

/// <summary>Which file of a TLS configuration a <see cref="TlsConfigurationException"/> is about.</summary>
public enum TlsFileRole
{
    /// <summary>The PEM file with this side's certificate (and optionally its chain and key).</summary>
    Certificate,

    /// <summary>The PEM file with this side's private key.</summary>
    Key,

    /// <summary>The PEM file with the certificate authorities the peer's certificate must chain to.</summary>
    CertificateAuthority,
}

/// <summary>
/// A TLS certificate, key or CA file cannot be used. The message names the file and the problem; callers that
/// know which option gave the file (a command-line flag, a connection-string key) put its name in front.
/// </summary>
public sealed class TlsConfigurationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TlsConfigurationException()
        : this("the TLS configuration is invalid")
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong.</param>
    public TlsConfigurationException(string message)
        : base(message)
    {
        Path = string.Empty;
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong.</param>
    /// <param name="innerException">The cause.</param>
    public TlsConfigurationException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Path = string.Empty;
    }

    /// <summary>Creates the exception for one file.</summary>
    /// <param name="role">Which file of the configuration it is.</param>
    /// <param name="path">The file.</param>
    /// <param name="problem">What is wrong with it.</param>
    /// <param name="innerException">The cause, if any.</param>
    public TlsConfigurationException(TlsFileRole role, string path, string problem, Exception? innerException = null)
        : base($"{path}: {problem}", innerException)
    {
        Role = role;
        Path = path;
    }

    /// <summary>Which file of the configuration is at fault.</summary>
    public TlsFileRole Role { get; }

    /// <summary>The file at fault; empty when the problem is not about one file.</summary>
    public string Path { get; }
}
