using System.Buffers;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Distcache.Protocol;

namespace Distcache.Security.Tests.Support;

/// <summary>A hand-driven TLS client for dc_server, so that tests can choose exactly what certificate it shows and
/// see the server's certificate.</summary>
internal sealed class TlsPeer : IDisposable
{
    private readonly Socket _socket;

    private TlsPeer(Socket socket, SslStream stream)
    {
        _socket = socket;
        Stream = stream;
    }

    public SslStream Stream { get; }

    /// <summary>The serial number of the certificate the server presented.</summary>
    public string ServerSerial => ((X509Certificate2)Stream.RemoteCertificate!).SerialNumber;

    /// <summary>Connects and runs the handshake; the server certificate is accepted as it is (these tests are about
    /// what the server accepts).</summary>
    public static TlsPeer Open(string address, X509Certificate2? clientCertificate)
    {
        Socket socket = Wire.Open(address);
        var stream = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            stream.AuthenticateAsClient(new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                ClientCertificateContext = clientCertificate is null ? null : SslStreamCertificateContext.Create(clientCertificate, null, offline: true),
                // Only that a certificate came: what the server accepts is under test here, not its identity.
                RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null,
            });
        }
        catch
        {
            stream.Dispose();
            socket.Dispose();
            throw;
        }

        return new TlsPeer(socket, stream);
    }

    /// <summary>
    /// Whether a full request/response exchange works with this client certificate. A refusal can surface in the
    /// handshake (TLS 1.2) or only at the first read (TLS 1.3, where the server judges the client certificate after
    /// the client has finished its side), so both count.
    /// </summary>
    public static bool CanExchange(string address, X509Certificate2? clientCertificate)
    {
        try
        {
            using TlsPeer peer = Open(address, clientCertificate);
            _ = peer.Have([1, 2, 3]);
            return true;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or SocketException or EndOfStreamException)
        {
            return false;
        }
    }

    public byte[] Ask(Action<IBufferWriter<byte>> request)
    {
        Stream.Write(Frames.Encode(request));
        Stream.Flush();
        return new MessageBuffer(MessageDirection.Responses).Read(free => Stream.Read(free.Span)).Payload;
    }

    public byte Add(byte[] id, byte[] data) => Ask(w => Requests.WriteAdd(w, 1, 60_000, id, data))[0];

    public byte[] Get(byte[] id) => Ask(w => Requests.WriteIdRequest(w, 2, Operation.Get, id));

    public bool Have(byte[] id) => Ask(w => Requests.WriteIdRequest(w, 3, Operation.Have, id))[0] == 0;

    public byte Remove(byte[] id) => Ask(w => Requests.WriteIdRequest(w, 4, Operation.Remove, id))[0];

    public void Dispose()
    {
        Stream.Dispose();
        _socket.Dispose();
    }
}
