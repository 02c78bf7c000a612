namespace Distcache.TicketKeys.Tests;

public class StateFileTests
{
    private static readonly KeySchedule Schedule = new("farm", 60);

    [Fact]
    public void Saved_keys_load_back_and_the_file_is_the_owners_only()
    {
        using var dir = new TempDir();
        var ring = new KeyRing();
        ring.Set(TicketKey.Create(5, 60));
        ring.Set(TicketKey.Create(6, 60));
        StateFile.Save(dir.File("keys"), Schedule, ring);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(dir.File("keys")));
        KeyRing back = StateFile.Load(dir.File("keys"), Schedule, out string? problem);
        Assert.Null(problem);
        Assert.Equal(ring.Find(5), back.Find(5));
        Assert.Equal(ring.Find(6), back.Find(6));
    }

    [Fact]
    public void A_missing_file_holds_no_keys_and_a_damaged_one_is_reported_not_used()
    {
        using var dir = new TempDir();
        Assert.Equal(0, StateFile.Load(dir.File("none"), Schedule, out string? problem).Count);
        Assert.Null(problem);

        var ring = new KeyRing();
        ring.Set(TicketKey.Create(5, 60));
        StateFile.Save(dir.File("keys"), Schedule, ring);
        byte[] bytes = File.ReadAllBytes(dir.File("keys"));
        File.WriteAllBytes(dir.File("keys"), bytes[..^1]);
        Assert.Equal(0, StateFile.Load(dir.File("keys"), Schedule, out problem).Count);
        Assert.Equal($"the saved keys in {dir.File("keys")} are damaged ({TicketKey.RecordSize - 1} bytes is not a whole number of keys); starting without them", problem);
    }

    [Fact]
    public void Keys_saved_for_another_period_length_are_not_used()
    {
        using var dir = new TempDir();
        var ring = new KeyRing();
        ring.Set(TicketKey.Create(5, 120));
        StateFile.Save(dir.File("keys"), new KeySchedule("farm", 120), ring);
        Assert.Equal(0, StateFile.Load(dir.File("keys"), Schedule, out string? problem).Count);
        Assert.Equal($"a saved key in {dir.File("keys")} is not used: it was made for periods of 120 s, not 60 s", problem);
    }

    [Fact]
    public void Keys_saved_under_another_farm_name_are_never_used()
    {
        using var dir = new TempDir();
        var ring = new KeyRing();
        ring.Set(TicketKey.Create(5, 60));
        StateFile.Save(dir.File("keys"), new KeySchedule("old-farm", 60), ring);
        Assert.Equal(0, StateFile.Load(dir.File("keys"), Schedule, out string? problem).Count);
        Assert.Equal($"the keys saved in {dir.File("keys")} are another farm's (dc_ticketkeys state 1 old-farm), not used", problem);

        File.WriteAllBytes(dir.File("other"), new byte[TicketKey.RecordSize]);
        Assert.Equal(0, StateFile.Load(dir.File("other"), Schedule, out problem).Count);
        Assert.Equal($"{dir.File("other")} is not a dc_ticketkeys state file; starting without saved keys", problem);
    }
}
