using System.Text;
using Distcache.Hosting;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// The files servers read their ticket keys from, one writer per server kind. Every file is written whole, mode
/// 0600, by write-and-rename (<see cref="AtomicFile"/>), and only when its content changes, so that a reload is
/// asked for only when a server has something new to read.
/// </summary>
internal sealed class KeyFiles
{
    /// <summary>Only the owner (the user the server reads its configuration as, usually root) may read a key file.</summary>
    public const UnixFileMode Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    public KeyFiles(string? nginxDirectory, string? haproxyFile, string? apacheFile)
    {
        NginxDirectory = nginxDirectory;
        HAProxyFile = haproxyFile;
        ApacheFile = apacheFile;
    }

    public string? NginxDirectory { get; }

    public string? HAProxyFile { get; }

    public string? ApacheFile { get; }

    public bool Any => NginxDirectory is not null || HAProxyFile is not null || ApacheFile is not null;

    /// <summary>True when every file holds the current key alone (only Apache's is written), so that the servers
    /// decrypt with no other.</summary>
    public bool CurrentKeyOnly => NginxDirectory is null && HAProxyFile is null;

    /// <summary>The paths and contents for <paramref name="keys"/>, in the order they are written.</summary>
    public IEnumerable<(string Path, byte[] Content)> Contents(ServedKeys keys)
    {
        if (NginxDirectory is not null)
        {
            // nginx encrypts with the key of its first ssl_session_ticket_key directive, so its configuration lists
            // current.key first (docs/ticket-keys.md). It reads the files at a reload, which comes after all three.
            yield return (Path.Combine(NginxDirectory, "current.key"), keys.Current.ToNginx());
            yield return (Path.Combine(NginxDirectory, "next.key"), keys.Next.ToNginx());
            yield return (Path.Combine(NginxDirectory, "previous.key"), keys.Previous.ToNginx());
        }

        if (HAProxyFile is not null)
        {
            // HAProxy encrypts with the second-to-last key of the file and decrypts with all of them.
            string text = keys.Previous.ToHAProxyLine() + "\n" + keys.Current.ToHAProxyLine() + "\n" + keys.Next.ToHAProxyLine() + "\n";
            yield return (HAProxyFile, Encoding.ASCII.GetBytes(text));
        }

        if (ApacheFile is not null)
        {
            // Apache holds one key, which both encrypts and decrypts.
            yield return (ApacheFile, keys.Current.ToApache());
        }
    }

    /// <summary>
    /// Writes the files for <paramref name="keys"/> that differ from what is on disk, each on its own: a file that
    /// cannot be written does not keep the others from being written (and their server from being reloaded).
    /// </summary>
    /// <returns>The paths written, and for each file that could not be written, its path and why.</returns>
    public (List<string> Written, List<string> Failed) Write(ServedKeys keys)
    {
        var written = new List<string>();
        var failed = new List<string>();
        foreach ((string path, byte[] content) in Contents(keys))
        {
            try
            {
                if (AtomicFile.WriteIfChanged(path, content, Mode))
                {
                    written.Add(path);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                failed.Add($"{path}: {e.Message}");
            }
        }

        return (written, failed);
    }
}
