using static Distcache.Storage.Tests.TestData;

namespace Distcache.Storage.Tests;

public sealed class SessionIndexTests
{
    [Fact]
    public void Linked_entries_are_found_by_id_and_removed_ones_are_not()
    {
        var index = new SessionIndex(16, int.MaxValue);
        using var records = new SlabRecords(64L << 20, index);
        int a = Add(index, records, Id("alpha"), 1);
        int b = Add(index, records, Id("beta"), 2);

        Assert.Equal(a, index.Find(Id("alpha"), 1, records));
        Assert.Equal(b, index.Find(Id("beta"), 2, records));
        Assert.Equal(-1, index.Find(Id("gamma"), 3, records));
        Assert.Equal(-1, index.Find(Id("alpha"), 2, records)); // the hash picks the chain and is compared first
        Assert.Equal(2, index.Count);

        records.Free(index[a]);
        index.Remove(a);
        Assert.Equal(-1, index.Find(Id("alpha"), 1, records));
        Assert.Equal(b, index.Find(Id("beta"), 2, records));
        Assert.Equal(1, index.Count);
    }

    [Fact]
    public void Entries_whose_hashes_are_equal_are_told_apart_by_their_ids()
    {
        var index = new SessionIndex(16, int.MaxValue);
        using var records = new SlabRecords(64L << 20, index);
        int first = Add(index, records, Id("first"), 42);
        int second = Add(index, records, Id("second"), 42);
        int longer = Add(index, records, Id("first-but-longer"), 42);

        Assert.Equal(first, index.Find(Id("first"), 42, records));
        Assert.Equal(second, index.Find(Id("second"), 42, records));
        Assert.Equal(longer, index.Find(Id("first-but-longer"), 42, records));
        Assert.Equal(-1, index.Find(Id("third"), 42, records));

        records.Free(index[second]);
        index.Remove(second); // from the middle of the chain
        Assert.Equal(first, index.Find(Id("first"), 42, records));
        Assert.Equal(longer, index.Find(Id("first-but-longer"), 42, records));
        Assert.Equal(-1, index.Find(Id("second"), 42, records));
    }

    [Fact]
    public void Buckets_split_one_at_a_time_as_the_count_passes_them_and_every_entry_stays_findable()
    {
        const int Count = 5000;
        var index = new SessionIndex(16, int.MaxValue);
        using var records = new SlabRecords(64L << 20, index);
        int[] entries = new int[Count];
        for (int i = 0; i < Count; i++)
        {
            entries[i] = Add(index, records, Id($"id-{i}"), HashOf(i));
            Assert.Equal(Math.Max(16, i + 1), index.BucketCount);
        }

        for (int i = 0; i < Count; i += 3)
        {
            records.Free(index[entries[i]]);
            index.Remove(entries[i]);
        }

        for (int i = 0; i < Count; i++)
        {
            Assert.Equal(i % 3 == 0 ? -1 : entries[i], index.Find(Id($"id-{i}"), HashOf(i), records));
            Assert.InRange(index.BucketOf(HashOf(i)), 0, index.BucketCount - 1);
        }
    }

    [Fact]
    public void Removed_entries_are_marked_free_and_reused_before_the_table_grows()
    {
        var index = new SessionIndex(2, 2);
        using var records = new SlabRecords(64L << 20, index);
        int a = Add(index, records, Id("a"), 1);
        int b = Add(index, records, Id("b"), 2);
        long bytes = index.Bytes;

        records.Free(index[a]);
        index.Remove(a);
        Assert.Equal(-1, index[a].HeapIndex);
        Assert.Equal(a, Add(index, records, Id("c"), 3));
        Assert.Equal(bytes, index.Bytes);
        Assert.Equal(b, index.Find(Id("b"), 2, records));
        Assert.Equal(a, index.Find(Id("c"), 3, records));
    }

    [Fact]
    public void The_expiry_order_records_its_positions_in_the_entries()
    {
        var index = new SessionIndex(16, int.MaxValue);
        var heap = new ExpiryHeap<SessionIndex.HeapPositions>(16, int.MaxValue, new SessionIndex.HeapPositions(index));
        int[] entries = new int[50];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = index.Allocate();
            heap.Push(entries[i], 1000 - (i * 7 % 50));
        }

        for (int i = 0; i < entries.Length; i += 2)
        {
            heap.RemoveAt(index[entries[i]].HeapIndex);
        }

        long previous = long.MinValue;
        int left = 0;
        while (heap.Count > 0)
        {
            Assert.Equal(0, index[heap.Soonest].HeapIndex);
            Assert.True(heap.SoonestExpiry >= previous);
            previous = heap.SoonestExpiry;
            heap.RemoveAt(0);
            left++;
        }

        Assert.Equal(entries.Length / 2, left);
    }

    // Distinct hashes whose low bits spread like a keyed hash's would.
    private static ulong HashOf(int i) => (ulong)(i + 1) * 0x9E3779B97F4A7C15UL;

    private static int Add(SessionIndex index, SlabRecords records, byte[] id, ulong hash)
    {
        int entry = index.Allocate();
        records.Write(entry, ref index[entry], id, Data(10, entry));
        index.Link(entry, hash);
        return entry;
    }
}
