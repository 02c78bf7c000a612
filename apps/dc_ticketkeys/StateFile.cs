using Distcache.Hosting;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// The keys a host holds, kept on its disk (mode 0600) so that servers can be given them, and rotated, while the
/// cache is out of reach, and so that a cache that lost them (a restart of a memory store) gets them back from the
/// hosts instead of new ones. The file is the keys' records one after another; each carries its own checksum.
/// </summary>
internal static class StateFile
{
    /// <summary>Reads the keys saved at <paramref name="path"/> for <paramref name="schedule"/>'s period length.</summary>
    /// <param name="path">The file; a missing file holds no keys.</param>
    /// <param name="schedule">The period length the keys must have been made for.</param>
    /// <param name="problem">Why some or all of the file was not used, or null.</param>
    /// <returns>The keys that could be read.</returns>
    public static KeyRing Load(string path, KeySchedule schedule, out string? problem)
    {
        var ring = new KeyRing();
        problem = null;
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            return ring;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"cannot read the saved keys in {path}: {e.Message}";
            return ring;
        }

        if (bytes.Length % TicketKey.RecordSize != 0)
        {
            problem = $"the saved keys in {path} are damaged ({bytes.Length} bytes is not a whole number of keys); starting without them";
            return ring;
        }

        for (int offset = 0; offset < bytes.Length; offset += TicketKey.RecordSize)
        {
            if (TicketKey.TryParse(bytes.AsSpan(offset, TicketKey.RecordSize), period: null, schedule.PeriodSeconds, out TicketKey? key, out string? reason))
            {
                ring.Set(key);
            }
            else
            {
                // A change of -period makes every saved key unusable; the cache has (or will make) the new ones.
                problem = $"a saved key in {path} is not used: {reason}";
            }
        }

        return ring;
    }

    /// <summary>Saves <paramref name="ring"/> to <paramref name="path"/> (write-and-rename, mode 0600), if it changed.</summary>
    /// <exception cref="IOException">The file cannot be written.</exception>
    /// <exception cref="UnauthorizedAccessException">The directory is not writable.</exception>
    public static void Save(string path, KeyRing ring)
    {
        byte[] content = [.. ring.Keys.SelectMany(k => k.ToRecord())];
        AtomicFile.WriteIfChanged(path, content, KeyFiles.Mode);
    }
}
