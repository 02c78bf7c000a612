namespace Distcache.Storage.Tests;

public sealed class SlabMemoryTests
{
    [Fact]
    public void Allocate_takes_the_prepared_reserve_and_blocks_are_usable()
    {
        using var slab = new SlabMemory();
        Assert.True(slab.NeedsReserve);

        slab.PrepareReserve();
        Assert.False(slab.NeedsReserve);
        slab.PrepareReserve(); // already there: nothing to do

        Assert.Equal(0, slab.Allocate());
        Assert.True(slab.NeedsReserve);
        Assert.Equal(1, slab.Allocate()); // no reserve: allocated on the spot
        Assert.Equal(2, slab.Count);

        slab[0].Fill(0xA5);
        slab[1].Fill(0x5A);
        Assert.Equal(SlabMemory.BlockSize, slab[1].Length);
        Assert.True(slab[0].IndexOfAnyExcept((byte)0xA5) < 0);
        Assert.True(slab[1].IndexOfAnyExcept((byte)0x5A) < 0);
    }

    [Fact]
    public async Task Reserves_prepared_on_other_threads_while_the_slab_is_disposed_do_not_break_it()
    {
        // PrepareReserve runs outside the store's lock, so it races Allocate and Dispose: each reserve must end up
        // used or freed exactly once, and nothing may throw.
        for (int round = 0; round < 20; round++)
        {
            var slab = new SlabMemory();
            using var stop = new CancellationTokenSource();
            Task[] preparers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    slab.PrepareReserve();
                }
            })).ToArray();

            for (int i = 0; i < 8; i++)
            {
                slab.Allocate();
            }

            slab.Dispose();
            Assert.False(slab.NeedsReserve);
            await stop.CancelAsync();
            await Task.WhenAll(preparers);
            Assert.Equal(0, slab.Count);
            Assert.Throws<ObjectDisposedException>(() => slab.Allocate());
        }
    }
}
