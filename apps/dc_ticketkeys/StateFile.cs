using System.Text;
using Distcache.Hosting;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// The keys a host holds, kept on its disk (mode 0600) so that servers can be given them, and rotated, while the
/// cache is out of reach, and so that a cache that lost them (a restart of a memory store) gets them back from the
/// hosts instead of new ones. The file is a header line naming the farm (<c>dc_ticketkeys state 1 NAME</c>), then the
/// keys' records one after another, each with its own checksum. The farm's name is in the file because a record does
/// not carry it: keys saved under another name (a farm renamed to discard its keys) must never be put back.
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

        byte[] header = Header(schedule);
        int newline = Array.IndexOf(bytes, (byte)'\n');
        if (newline < 0 || !bytes.AsSpan(0, newline + 1).StartsWith(HeaderStart))
        {
            problem = $"{path} is not a dc_ticketkeys state file; starting without saved keys";
            return ring;
        }

        if (!bytes.AsSpan(0, newline + 1).SequenceEqual(header))
        {
            problem = $"the keys saved in {path} are another farm's ({Encoding.ASCII.GetString(bytes, 0, newline)}), not used";
            return ring;
        }

        ReadOnlySpan<byte> records = bytes.AsSpan(newline + 1);
        if (records.Length % TicketKey.RecordSize != 0)
        {
            problem = $"the saved keys in {path} are damaged ({records.Length} bytes is not a whole number of keys); starting without them";
            return ring;
        }

        for (int offset = 0; offset < records.Length; offset += TicketKey.RecordSize)
        {
            if (TicketKey.TryParse(records.Slice(offset, TicketKey.RecordSize), period: null, schedule.PeriodSeconds, out TicketKey? key, out string? reason))
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
    public static void Save(string path, KeySchedule schedule, KeyRing ring)
    {
        byte[] content = [.. Header(schedule), .. ring.Keys.SelectMany(k => k.ToRecord())];
        AtomicFile.WriteIfChanged(path, content, KeyFiles.Mode);
    }

    private static ReadOnlySpan<byte> HeaderStart => "dc_ticketkeys state 1 "u8;

    private static byte[] Header(KeySchedule schedule) => [.. HeaderStart, .. Encoding.ASCII.GetBytes(schedule.Name), (byte)'\n'];
}
