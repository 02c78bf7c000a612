using Distcache.Storage;

namespace Distcache.Storage.Tests;

public sealed class ChunkedArrayTests
{
    [Fact]
    public void Elements_keep_their_values_as_the_first_chunk_doubles_and_chunks_are_added()
    {
        var array = new ChunkedArray<int>(3, -1);
        Assert.Equal(3, array.Capacity);
        const int Count = (ChunkedArray<int>.ChunkSize * 3) + 5;
        for (int i = 0; i < Count; i++)
        {
            if (i == array.Capacity)
            {
                array.Grow(i + 1, int.MaxValue, -1);
                Assert.Equal(-1, array[i]); // new elements start at the fill value
            }

            array[i] = i * 7;
        }

        for (int i = 0; i < Count; i++)
        {
            Assert.Equal(i * 7, array[i]);
        }

        // Past the first chunk, capacity is whole chunks: the last one added holds the tail.
        Assert.Equal(ChunkedArray<int>.ChunkSize * 4, array.Capacity);
    }

    [Fact]
    public void The_first_chunk_does_not_double_past_the_limit()
    {
        var array = new ChunkedArray<long>(100, 0);
        array.Grow(101, 150, 0);
        Assert.Equal(150, array.Capacity);
        array.Grow(151, 150, 0); // a caller needing more than its limit still gets it
        Assert.Equal(151, array.Capacity);
        Assert.Equal(151L * sizeof(long), array.Bytes);
    }

    [Fact]
    public void A_limit_must_be_positive()
    {
        var array = new ChunkedArray<int>(1, 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => array.Grow(2, 0, 0));
    }
}
