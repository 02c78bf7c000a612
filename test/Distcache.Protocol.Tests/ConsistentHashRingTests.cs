using System.Text;

namespace Distcache.Protocol.Tests;

/// <summary>The hash ring: balance, stability when servers come and go, agreement between clients.</summary>
public sealed class ConsistentHashRingTests
{
    private static byte[][] SessionIds(int count)
    {
        var random = new Random(1234);
        return [.. Enumerable.Range(0, count).Select(_ =>
        {
            byte[] id = new byte[32];
            random.NextBytes(id);
            return id;
        })];
    }

    private static string[] Servers(int count) => [.. Enumerable.Range(1, count).Select(i => $"IP:cache{i}.example:9001")];

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void Ids_are_spread_evenly(int servers)
    {
        var ring = new ConsistentHashRing(Servers(servers));
        int[] shares = new int[servers];
        byte[][] ids = SessionIds(60_000);
        foreach (byte[] id in ids)
        {
            shares[ring.Owner(id)]++;
        }

        double fair = (double)ids.Length / servers;
        foreach (int share in shares)
        {
            Assert.InRange(share, fair * 0.75, fair * 1.25);
        }
    }

    [Fact]
    public void Adding_a_server_moves_only_the_ids_it_takes_over()
    {
        var before = new ConsistentHashRing(Servers(3));
        var after = new ConsistentHashRing(Servers(4));
        byte[][] ids = SessionIds(40_000);
        int moved = 0;
        foreach (byte[] id in ids)
        {
            int was = before.Owner(id);
            int now = after.Owner(id);
            if (was != now)
            {
                // Every id that moves, moves to the new server; none is reshuffled among the old ones.
                Assert.Equal(3, now);
                moved++;
            }
        }

        // About a quarter should move (the new server's fair share); far fewer than rehashing all would move.
        Assert.InRange(moved, ids.Length * 0.15, ids.Length * 0.35);
    }

    [Fact]
    public void A_server_that_is_skipped_gives_away_only_its_own_ids_and_spreads_them()
    {
        var ring = new ConsistentHashRing(Servers(3));
        bool[] allButFirst = [false, true, true];
        int[] took = new int[3];
        foreach (byte[] id in SessionIds(30_000))
        {
            int owner = ring.Owner(id);
            int chosen = ring.FirstUsable(id, allButFirst);
            if (owner != 0)
            {
                Assert.Equal(owner, chosen);
            }
            else
            {
                Assert.NotEqual(0, chosen);
                took[chosen]++;
            }
        }

        // Both survivors take a real part of the down server's ids (virtual nodes interleave them).
        Assert.True(took[1] > 1000 && took[2] > 1000, $"took {took[1]} and {took[2]}");
    }

    [Fact]
    public void No_usable_server_is_minus_one_and_all_usable_is_the_owner()
    {
        var ring = new ConsistentHashRing(Servers(3));
        byte[] id = Encoding.ASCII.GetBytes("some session");
        Assert.Equal(-1, ring.FirstUsable(id, [false, false, false]));
        Assert.Equal(ring.Owner(id), ring.FirstUsable(id, [true, true, true]));
        Assert.Throws<ArgumentException>(() => ring.FirstUsable(id, [true, true]));
    }

    [Fact]
    public void Clients_listing_the_servers_in_another_order_agree()
    {
        string[] servers = Servers(4);
        var forward = new ConsistentHashRing(servers);
        var backward = new ConsistentHashRing(servers.Reverse());
        foreach (byte[] id in SessionIds(5000))
        {
            Assert.Equal(forward.Nodes[forward.Owner(id)], backward.Nodes[backward.Owner(id)]);
        }
    }

    [Fact]
    public void The_hash_is_fixed_across_versions()
    {
        // Clients on different machines and releases must agree: these values may never change. They were computed
        // independently of this code, from the definition (FNV-1a 64, then the MurmurHash3 64-bit finaliser).
        Assert.Equal(0xEFD01F60BA992926UL, ConsistentHashRing.Hash([]));
        Assert.Equal(0x4BB52BE113BBC7B5UL, ConsistentHashRing.Hash("distcache"u8));
    }

    [Fact]
    public void Bad_rings_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new ConsistentHashRing([]));
        Assert.Throws<ArgumentException>(() => new ConsistentHashRing(["a", "a"]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ConsistentHashRing(["a"], 0));
    }

    [Fact]
    public void A_position_located_once_picks_the_same_server_as_the_key()
    {
        var ring = new ConsistentHashRing(Servers(4));
        bool[][] masks = [[true, true, true, true], [false, true, true, true], [true, false, false, true], [false, false, false, false]];
        foreach (byte[] id in SessionIds(2000))
        {
            int position = ring.Locate(id);
            foreach (bool[] usable in masks)
            {
                Assert.Equal(ring.FirstUsable(id, usable), ring.FirstUsable(position, usable));
            }
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => ring.FirstUsable(-1, masks[0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => ring.FirstUsable(4 * ConsistentHashRing.DefaultVirtualNodes, masks[0]));
    }

    [Fact]
    public void A_request_is_routed_by_its_session_id()
    {
        byte[] id = Encoding.ASCII.GetBytes("the session");
        var add = new System.Buffers.ArrayBufferWriter<byte>();
        Requests.WriteAdd(add, 1, 1000, id, [1, 2, 3]);
        byte[] addPayload = add.WrittenSpan[ProtocolConstants.FrameHeaderSize..].ToArray();

        Assert.Equal(id, Requests.SessionIdOf(Operation.Add, addPayload).ToArray());
        Assert.Equal(id, Requests.SessionIdOf(Operation.Get, id).ToArray());
        Assert.Equal(id, Requests.SessionIdOf(Operation.Remove, id).ToArray());
        Assert.Equal(id, Requests.SessionIdOf(Operation.Have, id).ToArray());

        // An ADD whose id does not fit (the server answers it with an error) has no id to route by.
        Assert.True(Requests.SessionIdOf(Operation.Add, addPayload.AsSpan(0, 7)).IsEmpty);
        byte[] corrupt = (byte[])addPayload.Clone();
        corrupt[4] = 0x80;
        Assert.True(Requests.SessionIdOf(Operation.Add, corrupt).IsEmpty);
        Assert.True(Requests.SessionIdOf(Operation.Add, addPayload.AsSpan(0, 8 + id.Length)).IsEmpty);
    }
}
