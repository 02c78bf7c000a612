using CsCheck;

namespace Distcache.Storage.Tests;

public sealed class ExpiryHeapTests
{
    [Fact]
    public void Items_leave_from_the_top_soonest_expiry_first()
    {
        int[] slots = new int[1000];
        var heap = new ExpiryHeap<Positions>(4, int.MaxValue, new Positions(slots));
        var random = new Random(7);
        long[] keys = new long[slots.Length];
        for (int item = 0; item < slots.Length; item++)
        {
            keys[item] = random.Next(0, 300); // plenty of ties
            heap.Push(item, keys[item]);
        }

        long previous = long.MinValue;
        var seen = new HashSet<int>();
        while (heap.Count > 0)
        {
            int item = heap.Soonest;
            Assert.Equal(keys[item], heap.SoonestExpiry);
            Assert.True(heap.SoonestExpiry >= previous, $"{heap.SoonestExpiry} came out after {previous}");
            Assert.Equal(0, slots[item]);
            Assert.True(seen.Add(item), $"item {item} came out twice");
            previous = heap.SoonestExpiry;
            heap.RemoveAt(0);
        }

        Assert.Equal(slots.Length, seen.Count);
    }

    [Fact]
    public void Removing_any_item_at_its_reported_position_keeps_the_order()
    {
        Gen<(int Kind, long Key)[]> steps = Gen.Select(Gen.Int[0, 2], Gen.Long[0, 40], (kind, key) => (kind, key)).Array[1, 300];
        steps.Sample(RunAgainstModel, iter: 300, threads: 1);
    }

    [Fact]
    public void The_node_table_does_not_double_past_the_limit()
    {
        var heap = new ExpiryHeap<Positions>(100, 150, new Positions(new int[200]));
        for (int item = 0; item < 150; item++)
        {
            heap.Push(item, 1000 - item);
        }

        Assert.Equal(150L * ExpiryHeap<Positions>.NodeSize, heap.Bytes);
        Assert.Equal(150, heap.Count);
        Assert.Equal(149, heap.Soonest);

        heap.Clear();
        Assert.Equal(0, heap.Count);
        Assert.Equal(0, heap.Bytes);
    }

    // Pushes (kinds 0 and 1) and removals of an arbitrary held item (kind 2, the key choosing which), checked against
    // a dictionary of what the heap should hold.
    private static void RunAgainstModel((int Kind, long Key)[] steps)
    {
        int[] slots = new int[steps.Length];
        var heap = new ExpiryHeap<Positions>(2, int.MaxValue, new Positions(slots));
        var model = new Dictionary<int, long>();
        int next = 0;
        foreach ((int kind, long key) in steps)
        {
            if (kind < 2 || model.Count == 0)
            {
                heap.Push(next, key);
                model[next++] = key;
            }
            else
            {
                int item = model.Keys.OrderBy(i => i).ElementAt((int)(key % model.Count));
                heap.RemoveAt(slots[item]);
                model.Remove(item);
            }

            Assert.Equal(model.Count, heap.Count);
            foreach ((int item, long _) in model)
            {
                Assert.InRange(slots[item], 0, heap.Count - 1);
            }

            if (model.Count > 0)
            {
                Assert.Equal(model.Values.Min(), heap.SoonestExpiry);
                Assert.Equal(model[heap.Soonest], heap.SoonestExpiry);
            }
        }

        long previous = long.MinValue;
        while (heap.Count > 0)
        {
            Assert.True(model.Remove(heap.Soonest, out long key), "the heap gave back an item it should not hold");
            Assert.True(key >= previous);
            previous = key;
            heap.RemoveAt(0);
        }

        Assert.Empty(model);
    }

    private readonly struct Positions(int[] slots) : IHeapPositions
    {
        public void Placed(int item, int position) => slots[item] = position;
    }
}
