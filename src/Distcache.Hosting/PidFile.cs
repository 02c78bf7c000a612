using System.Globalization;
using System.Text;

namespace Distcache.Hosting;

/// <summary>
/// A file holding the process id (decimal and a newline), for <c>-pidfile</c>. It is written atomically, so a
/// reader never sees a half-written number, and removed on dispose only while it still holds this process's id,
/// so a newer instance that took over the path keeps its file.
/// </summary>
/// <remarks>
/// The path is made absolute when the file is created, so removal works even if the working directory changes
/// later. An existing file is replaced without a check, as 1.5.1 did. When the process switched to an
/// unprivileged user after writing the file, removal may be refused by the directory's permissions.
/// </remarks>
public sealed class PidFile : IDisposable
{
    private bool _removed;

    private PidFile(string path, int processId)
    {
        Path = path;
        ProcessId = processId;
    }

    /// <summary>The absolute path of the file.</summary>
    public string Path { get; }

    /// <summary>The process id written to the file.</summary>
    public int ProcessId { get; }

    /// <summary>
    /// As <see cref="Create"/>, for a tool's -pidfile: a file that cannot be written is logged in 1.5.1's words
    /// (<c>couldn't open 'pidfile' at 'PATH': why</c>) and null returned, and the tool should then exit 1.
    /// </summary>
    /// <param name="path">Where to write it.</param>
    /// <param name="log">Where the error goes.</param>
    /// <returns>The pid file, or null when it could not be written.</returns>
    public static PidFile? TryCreate(string path, ToolLog log)
    {
        ArgumentNullException.ThrowIfNull(log);
        try
        {
            return Create(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            log.Error($"couldn't open 'pidfile' at '{path}': {e.Message}");
            return null;
        }
    }

    /// <summary>
    /// Writes the current process id to <paramref name="path"/>: into a temporary file in the same directory,
    /// flushed to disk, then renamed over the destination (a rename within one file system is atomic).
    /// </summary>
    /// <param name="path">Where to write it; a relative path is taken relative to the current directory now.</param>
    /// <returns>The pid file, which removes itself when disposed.</returns>
    /// <exception cref="IOException">The file cannot be written or renamed (for example a missing directory); the temporary file is removed.</exception>
    /// <exception cref="UnauthorizedAccessException">The directory is not writable.</exception>
    /// <exception cref="ArgumentException">The path is empty or invalid.</exception>
    public static PidFile Create(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var fullPath = System.IO.Path.GetFullPath(path);
        var processId = Environment.ProcessId;
        var directory = System.IO.Path.GetDirectoryName(fullPath) ?? "/";
        // Hidden and unique per process, so two instances starting together cannot clobber each other's temporary.
        var temporary = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(fullPath)}.{processId.ToString(CultureInfo.InvariantCulture)}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                stream.Write(Encoding.ASCII.GetBytes(processId.ToString(CultureInfo.InvariantCulture) + "\n"));
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }

        return new PidFile(fullPath, processId);
    }

    /// <summary>Reads the process id a pid file holds.</summary>
    /// <param name="path">The file.</param>
    /// <param name="processId">The id when the file holds one.</param>
    /// <returns>False when the file is missing, unreadable or does not hold a decimal number.</returns>
    public static bool TryRead(string path, out int processId)
    {
        processId = 0;
        try
        {
            var text = File.ReadAllText(path).Trim();
            return text.Length > 0 && text.All(char.IsAsciiDigit) && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out processId);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Deletes the file if it still holds <see cref="ProcessId"/>; otherwise leaves it alone.</summary>
    /// <returns>True when the file was deleted; false when it was already gone or now belongs to another process.</returns>
    /// <exception cref="IOException">The file cannot be deleted.</exception>
    /// <exception cref="UnauthorizedAccessException">The directory does not allow deleting it.</exception>
    /// <remarks>
    /// Checking and deleting are two steps: a process replacing the file in between would lose its file. Only
    /// another instance started at that very moment could do that, and it would be misconfigured already.
    /// </remarks>
    public bool Remove()
    {
        if (_removed)
        {
            return false;
        }

        if (!TryRead(Path, out var holder) || holder != ProcessId)
        {
            _removed = true;
            return false;
        }

        File.Delete(Path);
        _removed = true;
        return true;
    }

    /// <summary>Removes the file as <see cref="Remove"/> does, ignoring failures: there is nobody left to tell.</summary>
    public void Dispose()
    {
        try
        {
            Remove();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A clean exit must not turn into a crash over a file that could not be removed.
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
            // The original failure is the one worth reporting.
        }
    }
}
