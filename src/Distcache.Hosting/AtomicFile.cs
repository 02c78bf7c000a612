using System.Globalization;

namespace Distcache.Hosting;

/// <summary>
/// Replaces a file's content so that a reader sees the old content or the new, never part of either: the new bytes go
/// to a temporary file in the same directory, created with the final mode, flushed to disk, renamed over the
/// destination, and the directory is flushed so that the rename survives a crash. For files other programs read
/// while they change (ticket keys for a web server, a tool's saved state).
/// </summary>
public static class AtomicFile
{
    /// <summary>
    /// Writes <paramref name="content"/> to <paramref name="path"/> with <paramref name="mode"/>, unless the file
    /// already holds exactly these bytes with this mode.
    /// </summary>
    /// <param name="path">The destination; its directory must exist.</param>
    /// <param name="content">The whole new content.</param>
    /// <param name="mode">The file's permissions (the umask does not apply: they are set explicitly).</param>
    /// <returns>True when the file was written, false when it was already as asked.</returns>
    /// <exception cref="IOException">The file cannot be written or renamed; the temporary file is removed.</exception>
    /// <exception cref="UnauthorizedAccessException">The directory or the file is not writable.</exception>
    public static bool WriteIfChanged(string path, ReadOnlySpan<byte> content, UnixFileMode mode)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("file modes are a Unix notion");
        }

        // A symbolic link is followed, and the file it leads to replaced: operators keep key files on a tmpfs behind
        // a link, and expect the link to stay and the file behind it to change.
        string fullPath = Path.GetFullPath(path);
        var link = new FileInfo(fullPath);
        if (link.LinkTarget is not null && link.ResolveLinkTarget(returnFinalTarget: true) is { } target)
        {
            fullPath = target.FullName;
        }

        if (HasContent(fullPath, content, mode))
        {
            return false;
        }

        string directory = Path.GetDirectoryName(fullPath) ?? "/";
        // Hidden, and unique per process and call, so that two writers never share a temporary file.
        string temporary = Path.Combine(directory, string.Create(CultureInfo.InvariantCulture,
            $".{Path.GetFileName(fullPath)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp"));
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, UnixCreateMode = mode };
            using (var stream = new FileStream(temporary, options))
            {
                // The create mode is masked by the umask; the file must end with exactly the mode asked for.
                File.SetUnixFileMode(stream.SafeFileHandle, mode);
                stream.Write(content);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }

        FlushDirectory(directory);
        return true;
    }

    private static bool HasContent(string path, ReadOnlySpan<byte> content, UnixFileMode mode)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists || info.Length != content.Length || info.UnixFileMode != mode)
            {
                return false;
            }

            return File.ReadAllBytes(path).AsSpan().SequenceEqual(content);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Nothing more can be done; the name is hidden and says which process left it.
        }
    }

    // A rename is only durable once the directory holding it is; a failure here loses nothing already written, so
    // it is not reported.
    private static void FlushDirectory(string directory)
    {
        int fd = NativeMethods.OpenWithMode(directory, 0 /* O_RDONLY */, 0);
        if (fd < 0)
        {
            return;
        }

        _ = NativeMethods.Fsync(fd);
        _ = NativeMethods.Close(fd);
    }
}
