using System.Globalization;
using System.Text;
using Distcache.Networking;
using Microsoft.Extensions.Logging;

namespace Distcache.Client;

/// <summary>
/// Settings of a <see cref="DistcacheClient"/> (and of a <see cref="DcContext"/>, which uses the address, the two
/// timeouts, <see cref="Connection"/> and <see cref="LoggerFactory"/>). A client takes a copy when it is created;
/// changing the options afterwards does not affect it.
/// </summary>
/// <remarks>
/// <para>The connection-string form, read by <see cref="Parse"/>, is the address followed by comma-separated
/// <c>key=value</c> pairs; keys are case-insensitive and every value is in milliseconds:</para>
/// <list type="table">
/// <item><term><c>timeout</c></term><description><see cref="OperationTimeout"/> (default 5000).</description></item>
/// <item><term><c>connectTimeout</c></term><description><see cref="ConnectTimeout"/> (default 5000).</description></item>
/// <item><term><c>reconnectMin</c></term><description><see cref="ReconnectMinDelay"/> (default 100).</description></item>
/// <item><term><c>reconnectMax</c></term><description><see cref="ReconnectMaxDelay"/> (default 5000).</description></item>
/// </list>
/// <para>TLS (see <see cref="Tls"/>) takes file names instead: <c>tlsCa</c> (required for TLS: the CA the server's
/// certificate must chain to), <c>tlsCert</c> and <c>tlsKey</c> (this client's certificate and key, for a server that
/// requires one), <c>tlsName</c> (the name the server's certificate must carry; default the address's host). For
/// example <c>IP:cache1:9001,tlsCa=/etc/distcache/ca.pem,tlsCert=/etc/distcache/web1.pem,tlsKey=/etc/distcache/web1.key</c>.
/// File names cannot contain commas.</para>
/// <para>For example <c>UNIX:/tmp/scache</c> or <c>IP:cache1:9001,timeout=2000,reconnectMax=1000</c>. The address
/// is everything before the first comma, so a unix socket path containing a comma must be given through
/// <see cref="Address"/> instead.</para>
/// </remarks>
public sealed class DistcacheClientOptions
{
    private static readonly TimeSpan MaxMillisecondsTimeSpan = TimeSpan.FromMilliseconds(int.MaxValue);

    /// <summary>Where the cache (a <c>dc_server</c>, or a <c>dc_client</c> proxy) listens, for example
    /// <c>UNIX:/tmp/scache</c> or <c>IP:cache1:9001</c>. Required; it must name a host or path (not <c>IP:port</c>).</summary>
    public Address? Address { get; set; }

    /// <summary>How long a request may take, from the call to its response, including any wait for the first
    /// connection. A request that runs out of time fails with <see cref="TimeoutException"/>. Default 5 seconds;
    /// 1 ms to <see cref="int.MaxValue"/> ms.</summary>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long one connection attempt (including a <see cref="ConnectionOptions.StreamWrapper"/> such as a
    /// TLS handshake) may take. Default 5 seconds.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The delay before the second reconnect attempt after a link drops (the first is immediate); each
    /// further failed attempt doubles it, up to <see cref="ReconnectMaxDelay"/>, with random jitter so that many
    /// clients of one restarted server do not reconnect in lock step. Default 100 ms.</summary>
    public TimeSpan ReconnectMinDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest delay between reconnect attempts. Default 5 seconds, the retry period of 1.5.1's
    /// <c>dc_client</c> proxy.</summary>
    public TimeSpan ReconnectMaxDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How connections are set up: <see cref="ConnectionOptions.StreamWrapper"/> is the hook for TLS, run on
    /// every (re)connect. Null for plain connections.</summary>
    public ConnectionOptions? Connection { get; set; }

    /// <summary>TLS for every (re)connection: the server is verified against the CA and name of these settings, and the
    /// client certificate (if any) is presented. Null for plain connections. Cannot be combined with a
    /// <see cref="ConnectionOptions.StreamWrapper"/> in <see cref="Connection"/>.</summary>
    public TlsClientSettings? Tls { get; set; }

    /// <summary>Where the client logs (connects, lost links, protocol violations); null for nowhere.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>Reads a connection string: an address, then optional <c>key=value</c> pairs (see the remarks of
    /// <see cref="DistcacheClientOptions"/>).</summary>
    /// <param name="configuration">For example <c>IP:cache1:9001,timeout=2000</c>.</param>
    /// <returns>The options it describes; the others keep their defaults.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="configuration"/> is null.</exception>
    /// <exception cref="ArgumentException">The address is invalid, a key is unknown or repeated, or a value is not
    /// a positive whole number of milliseconds; the message names the part.</exception>
    public static DistcacheClientOptions Parse(string configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        string[] parts = configuration.Split(',');
        string addressText = parts[0].Trim();
        if (!Address.TryParse(addressText, out Address? address, out string error))
        {
            throw new ArgumentException($"Invalid distcache address '{addressText}' in '{configuration}': {error}.", nameof(configuration));
        }

        var options = new DistcacheClientOptions { Address = address };
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var tlsFiles = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        for (int i = 1; i < parts.Length; i++)
        {
            string part = parts[i].Trim();
            int equals = part.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw new ArgumentException($"Expected key=value after the address in '{configuration}', found '{part}'.", nameof(configuration));
            }

            string key = part[..equals].Trim();
            string value = part[(equals + 1)..].Trim();
            if (!seen.Add(key))
            {
                throw new ArgumentException($"'{key}' appears twice in '{configuration}'.", nameof(configuration));
            }

            if (TlsKeys.Contains(key))
            {
                if (value.Length == 0)
                {
                    throw new ArgumentException($"'{key}' in '{configuration}' needs a value.", nameof(configuration));
                }

                tlsFiles[key] = value;
                continue;
            }

            if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int milliseconds) || milliseconds <= 0)
            {
                throw new ArgumentException($"'{key}' in '{configuration}' must be a positive number of milliseconds, not '{value}'.", nameof(configuration));
            }

            TimeSpan span = TimeSpan.FromMilliseconds(milliseconds);
            switch (key.ToUpperInvariant())
            {
                case "TIMEOUT":
                    options.OperationTimeout = span;
                    break;
                case "CONNECTTIMEOUT":
                    options.ConnectTimeout = span;
                    break;
                case "RECONNECTMIN":
                    options.ReconnectMinDelay = span;
                    break;
                case "RECONNECTMAX":
                    options.ReconnectMaxDelay = span;
                    break;
                default:
                    throw new ArgumentException(
                        $"Unknown key '{key}' in '{configuration}' (known: timeout, connectTimeout, reconnectMin, reconnectMax, tlsCa, tlsCert, tlsKey, tlsName).",
                        nameof(configuration));
            }
        }

        if (tlsFiles.Count > 0)
        {
            options.Tls = ParseTls(configuration, tlsFiles);
        }

        return options;
    }

    private static readonly HashSet<string> TlsKeys = new(StringComparer.OrdinalIgnoreCase) { "tlsCa", "tlsCert", "tlsKey", "tlsName" };

    private static TlsClientSettings ParseTls(string configuration, Dictionary<string, string> values)
    {
        string? Get(string key) => values.TryGetValue(key, out string? value) ? value : null;
        string? ca = Get("tlsCa");
        string? certificate = Get("tlsCert");
        string? key = Get("tlsKey");
        if (ca is null)
        {
            throw new ArgumentException($"TLS in '{configuration}' needs tlsCa, the CA that issued the server's certificate.", nameof(configuration));
        }

        if (key is not null && certificate is null)
        {
            throw new ArgumentException($"tlsKey in '{configuration}' needs tlsCert, the certificate it belongs to.", nameof(configuration));
        }

        try
        {
            return new TlsClientSettings(ca, certificate, key, Get("tlsName"));
        }
        catch (TlsConfigurationException e)
        {
            string name = e.Role switch
            {
                TlsFileRole.CertificateAuthority => "tlsCa",
                TlsFileRole.Key => "tlsKey",
                _ => "tlsCert",
            };
            throw new ArgumentException($"{name} {e.Message}", nameof(configuration), e);
        }
    }

    /// <summary>The connection-string form of these options, which <see cref="Parse"/> reads back (the stream
    /// wrapper and logger factory have no text form and are left out).</summary>
    /// <returns>For example <c>IP:cache1:9001,timeout=2000,connectTimeout=5000,reconnectMin=100,reconnectMax=5000</c>.</returns>
    public override string ToString()
    {
        var text = new StringBuilder(Address?.ToString() ?? "(no address)");
        text.Append(CultureInfo.InvariantCulture, $",timeout={(long)OperationTimeout.TotalMilliseconds}");
        text.Append(CultureInfo.InvariantCulture, $",connectTimeout={(long)ConnectTimeout.TotalMilliseconds}");
        text.Append(CultureInfo.InvariantCulture, $",reconnectMin={(long)ReconnectMinDelay.TotalMilliseconds}");
        text.Append(CultureInfo.InvariantCulture, $",reconnectMax={(long)ReconnectMaxDelay.TotalMilliseconds}");
        if (Tls is { } tls)
        {
            text.Append(",tlsCa=").Append(tls.CaFile);
            AppendIfSet(text, "tlsCert", tls.CertificateFile);
            AppendIfSet(text, "tlsKey", tls.KeyFile);
            AppendIfSet(text, "tlsName", tls.ServerName);
        }

        return text.ToString();
    }

    private static void AppendIfSet(StringBuilder text, string key, string? value)
    {
        if (value is not null)
        {
            text.Append(',').Append(key).Append('=').Append(value);
        }
    }

    /// <summary>These options for one server of several (<see cref="ShardedDistcacheClient"/>): every setting,
    /// including connection options such as TLS, copied as it is, with <paramref name="server"/> as the address.</summary>
    internal DistcacheClientOptions ForServer(Address server)
    {
        var copy = (DistcacheClientOptions)MemberwiseClone();
        copy.Address = server;
        return copy;
    }

    /// <summary>A validated copy, so that later changes to this instance cannot reach a running client.</summary>
    internal DistcacheClientOptions Snapshot(string paramName)
    {
        if (Address is null)
        {
            throw new ArgumentException("DistcacheClientOptions.Address is required.", paramName);
        }

        if (!Address.CanConnect)
        {
            throw new ArgumentException(
                $"DistcacheClientOptions.Address {Address} cannot be connected to: a client needs a host or a path (IP:host:port, UNIX:/path).",
                paramName);
        }

        CheckMilliseconds(OperationTimeout, nameof(OperationTimeout), paramName);
        CheckMilliseconds(ConnectTimeout, nameof(ConnectTimeout), paramName);
        CheckMilliseconds(ReconnectMinDelay, nameof(ReconnectMinDelay), paramName);
        CheckMilliseconds(ReconnectMaxDelay, nameof(ReconnectMaxDelay), paramName);
        if (ReconnectMaxDelay < ReconnectMinDelay)
        {
            throw new ArgumentOutOfRangeException(
                paramName,
                ReconnectMaxDelay,
                $"DistcacheClientOptions.ReconnectMaxDelay must not be less than ReconnectMinDelay ({ReconnectMinDelay}).");
        }

        ConnectionOptions? connection = Connection;
        if (Tls is { } tls)
        {
            if (connection?.StreamWrapper is not null)
            {
                throw new ArgumentException("DistcacheClientOptions.Tls and a Connection.StreamWrapper cannot both be set: TLS is the stream wrapper.", paramName);
            }

            try
            {
                // TLS goes in through the one hook every connect runs, so reconnects are authenticated the same way.
                connection = new ConnectionOptions { StreamWrapper = tls.CreateStreamWrapper(Address), Logger = connection?.Logger };
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"DistcacheClientOptions.Tls: {e.Message} (TlsClientSettings.ServerName).", paramName, e);
            }
        }

        return new DistcacheClientOptions
        {
            Address = Address,
            OperationTimeout = OperationTimeout,
            ConnectTimeout = ConnectTimeout,
            ReconnectMinDelay = ReconnectMinDelay,
            ReconnectMaxDelay = ReconnectMaxDelay,
            Tls = Tls,
            Connection = connection,
            LoggerFactory = LoggerFactory,
        };
    }

    private static void CheckMilliseconds(TimeSpan value, string name, string paramName)
    {
        if (value < TimeSpan.FromMilliseconds(1) || value > MaxMillisecondsTimeSpan)
        {
            throw new ArgumentOutOfRangeException(paramName, value, $"DistcacheClientOptions.{name} must be 1 ms to {int.MaxValue} ms.");
        }
    }
}
