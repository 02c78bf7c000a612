namespace Distcache.TicketKeys.Tests;

public class KeyRingTests
{
    private const uint Period = 60;

    private static TicketKey Key(long period) => TicketKey.Create(period, Period);

    [Fact]
    public void Servers_get_the_previous_current_and_next_periods_keys()
    {
        var ring = new KeyRing();
        TicketKey k9 = Key(9), k10 = Key(10), k11 = Key(11);
        ring.Set(k9);
        ring.Set(k10);
        ring.Set(k11);
        ServedKeys served = ring.Select(10)!;
        Assert.Same(k9, served.Previous);
        Assert.Same(k10, served.Current);
        Assert.Same(k11, served.Next);
        Assert.False(served.IsStale);
    }

    [Fact]
    public void An_unknown_slot_repeats_the_current_key()
    {
        var ring = new KeyRing();
        TicketKey k10 = Key(10);
        ring.Set(k10);
        ServedKeys served = ring.Select(10)!;
        Assert.Same(k10, served.Previous);
        Assert.Same(k10, served.Next);
    }

    [Fact]
    public void Without_this_periods_key_the_newest_older_one_keeps_encrypting()
    {
        var ring = new KeyRing();
        TicketKey k10 = Key(10), k11 = Key(11);
        ring.Set(k10);
        ring.Set(k11);
        ServedKeys served = ring.Select(12)!;
        Assert.Same(k11, served.Current);
        Assert.Same(k11, served.Previous);
        Assert.True(served.IsStale);
        Assert.Null(new KeyRing().Select(12));
    }

    [Fact]
    public void Keys_no_server_needs_are_forgotten_and_setting_the_same_key_changes_nothing()
    {
        var ring = new KeyRing();
        TicketKey k8 = Key(8);
        ring.Set(k8);
        ring.Set(Key(9));
        Assert.False(ring.Set(new TicketKey(8, Period, k8.ToNginx())));
        Assert.True(ring.Set(Key(8)));
        Assert.True(ring.ForgetBefore(9));
        Assert.False(ring.ForgetBefore(9));
        Assert.Equal(1, ring.Count);
        Assert.Null(ring.Find(8));
    }
}
