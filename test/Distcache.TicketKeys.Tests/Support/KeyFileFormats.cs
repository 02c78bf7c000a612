namespace Distcache.TicketKeys.Tests.Support;

/// <summary>Writes a <see cref="HostKeys"/> in the formats dc_ticketkeys writes, where each server reads them.</summary>
internal static class KeyFileFormats
{
    /// <summary>Writes the keys where <paramref name="server"/>'s configuration points; the server reads them at
    /// start and at each reload.</summary>
    public static void WriteKeys(this WebServer server, HostKeys keys)
    {
        switch (server)
        {
            case NginxServer nginx:
                WriteNginx(nginx.KeyDirectory, keys);
                break;
            case HAProxyServer haproxy:
                WriteHAProxy(haproxy.KeyFile, keys);
                break;
            case ApacheServer apache:
                // Apache holds one key, which both encrypts and decrypts: the current one.
                WriteAtomically(ApacheKeyFile(apache), keys.Current.ApacheLayout());
                break;
            default:
                throw new ArgumentException($"no key files for {server.Kind}", nameof(server));
        }
    }

    /// <summary>The key files <paramref name="server"/>'s configuration names.</summary>
    public static IReadOnlyList<string> KeyFiles(this WebServer server) => server switch
    {
        NginxServer nginx => nginx.KeyFiles,
        HAProxyServer haproxy => [haproxy.KeyFile],
        ApacheServer apache => [ApacheKeyFile(apache)],
        _ => throw new ArgumentException($"no key files for {server.Kind}", nameof(server)),
    };

    /// <summary>dc_ticketkeys' flag that writes <paramref name="server"/>'s key files, with its argument.</summary>
    public static string[] DcTicketKeysFlag(this WebServer server) => server switch
    {
        NginxServer nginx => ["-nginx", nginx.KeyDirectory],
        HAProxyServer haproxy => ["-haproxy", haproxy.KeyFile],
        ApacheServer apache => ["-apache", ApacheKeyFile(apache)],
        _ => throw new ArgumentException($"no key files for {server.Kind}", nameof(server)),
    };

    private static string ApacheKeyFile(ApacheServer apache) =>
        apache.TicketKeyFile ?? throw new InvalidOperationException($"Apache {apache.Endpoint} has no SSLSessionTicketKeyFile");

    /// <summary>The nginx key directory's files, for the <c>ssl_session_ticket_key</c> lines in this order (the
    /// first one encrypts).</summary>
    public static readonly string[] NginxFiles = ["current.key", "next.key", "previous.key"];

    /// <summary><c>DIR/current.key</c>, <c>DIR/next.key</c>, <c>DIR/previous.key</c>: 80 bytes each, nginx's layout.</summary>
    public static void WriteNginx(string directory, HostKeys keys)
    {
        Directory.CreateDirectory(directory);
        WriteAtomically(Path.Combine(directory, "current.key"), keys.Current.NginxLayout());
        WriteAtomically(Path.Combine(directory, "next.key"), keys.Next.NginxLayout());
        WriteAtomically(Path.Combine(directory, "previous.key"), keys.Previous.NginxLayout());
    }

    /// <summary>Three lines, base64 of HAProxy's layout, in the order previous, current, next: HAProxy encrypts with
    /// the penultimate line and decrypts with all.</summary>
    public static void WriteHAProxy(string file, HostKeys keys)
    {
        string text = string.Concat(new[] { keys.Previous, keys.Current, keys.Next }.Select(key => Convert.ToBase64String(key.HAProxyLayout()) + "\n"));
        WriteAtomically(file, System.Text.Encoding.ASCII.GetBytes(text));
    }

    /// <summary>As dc_ticketkeys writes: mode 0600, a temporary file in the same folder, fsync, rename over the old one,
    /// so that a server reloading at any moment reads either the old file or the new one.</summary>
    private static void WriteAtomically(string path, byte[] content)
    {
        string temporary = path + ".tmp";
        var options = new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        };
        using (var stream = new FileStream(temporary, options))
        {
            stream.Write(content);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporary, path, overwrite: true);
    }
}
