using System.Runtime.CompilerServices;

namespace Distcache.Storage;

/// <summary>
/// Where an <see cref="ExpiryHeap{TPositions}"/> records the position of each item it places, so that its owner can
/// remove an item it found by other means (a session found by id) with a sift instead of a search.
/// </summary>
internal interface IHeapPositions
{
    /// <summary>Called whenever <paramref name="item"/> is placed at <paramref name="position"/>.</summary>
    /// <param name="item">The item placed.</param>
    /// <param name="position">Its position in the heap, for <see cref="ExpiryHeap{TPositions}.RemoveAt"/>.</param>
    void Placed(int item, int position);
}

/// <summary>
/// The expiry order: a min-heap of items (entry numbers) on the timestamp each expires at, so the item due to expire
/// soonest is always at hand, for reclaiming expired sessions and for evicting soonest-expiry-first.
/// </summary>
/// <remarks>
/// <para>4-ary: half the depth of a binary heap, and a node's children are adjacent. The nodes carry the key, so
/// sifting reads contiguous memory rather than the entries.</para>
/// <para>Positions are reported through <typeparamref name="TPositions"/>, a struct, so that the JIT compiles a copy
/// of the heap for it and the report inlines into the sift loops: no interface call per level.</para>
/// <para>Not thread-safe: the store calls it under its lock.</para>
/// </remarks>
/// <typeparam name="TPositions">Receives each item's position as it moves.</typeparam>
internal sealed class ExpiryHeap<TPositions>
    where TPositions : struct, IHeapPositions
{
    private readonly TPositions _positions;
    private readonly int _limit;
    private ChunkedArray<Node> _nodes;
    private int _count;

    /// <summary>Creates an empty heap.</summary>
    /// <param name="initialCapacity">The nodes to make room for at once (at most a chunk).</param>
    /// <param name="limit">The most items the owner will ever hold (positive), so that the first chunk does not
    /// double past it.</param>
    /// <param name="positions">Receives each item's position.</param>
    public ExpiryHeap(int initialCapacity, int limit, TPositions positions)
    {
        _positions = positions;
        _limit = limit;
        _nodes = new ChunkedArray<Node>(initialCapacity, default);
    }

    /// <summary>The bytes of one item's node.</summary>
    public static int NodeSize => Unsafe.SizeOf<Node>();

    /// <summary>The number of items held.</summary>
    public int Count => _count;

    /// <summary>The bytes held by the node table.</summary>
    public long Bytes => _nodes.Bytes;

    /// <summary>The item due to expire soonest; only meaningful while <see cref="Count"/> is positive.</summary>
    public int Soonest => _nodes[0].Item;

    /// <summary>When <see cref="Soonest"/> expires; only meaningful while <see cref="Count"/> is positive.</summary>
    public long SoonestExpiry => _nodes[0].ExpiresAt;

    /// <summary>Adds an item.</summary>
    /// <param name="item">The item (not already held).</param>
    /// <param name="expiresAt">The timestamp it is ordered by.</param>
    public void Push(int item, long expiresAt)
    {
        if (_count == _nodes.Capacity)
        {
            _nodes.Grow(_count + 1, _limit, default);
        }

        SiftUp(_count++, new Node { ExpiresAt = expiresAt, Item = item });
    }

    /// <summary>Removes the item at <paramref name="position"/> (the last position reported for it).</summary>
    /// <param name="position">A position below <see cref="Count"/>.</param>
    public void RemoveAt(int position)
    {
        int last = --_count;
        if (position == last)
        {
            return;
        }

        Node moved = _nodes[last];
        if (position > 0 && _nodes[(position - 1) >> 2].ExpiresAt > moved.ExpiresAt)
        {
            SiftUp(position, moved);
        }
        else
        {
            SiftDown(position, moved);
        }
    }

    /// <summary>Drops every item and the node table.</summary>
    public void Clear()
    {
        _nodes.Clear();
        _count = 0;
    }

    private void SiftUp(int position, Node node)
    {
        while (position > 0)
        {
            int parent = (position - 1) >> 2;
            Node above = _nodes[parent];
            if (above.ExpiresAt <= node.ExpiresAt)
            {
                break;
            }

            _nodes[position] = above;
            _positions.Placed(above.Item, position);
            position = parent;
        }

        _nodes[position] = node;
        _positions.Placed(node.Item, position);
    }

    private void SiftDown(int position, Node node)
    {
        int count = _count;
        while (true)
        {
            long first = (4L * position) + 1;
            if (first >= count)
            {
                break;
            }

            int best = (int)first;
            long bestKey = _nodes[best].ExpiresAt;
            int end = (int)Math.Min(first + 4, count);
            for (int child = best + 1; child < end; child++)
            {
                long key = _nodes[child].ExpiresAt;
                if (key < bestKey)
                {
                    best = child;
                    bestKey = key;
                }
            }

            if (bestKey >= node.ExpiresAt)
            {
                break;
            }

            Node moved = _nodes[best];
            _nodes[position] = moved;
            _positions.Placed(moved.Item, position);
            position = best;
        }

        _nodes[position] = node;
        _positions.Placed(node.Item, position);
    }

    private struct Node
    {
        public long ExpiresAt;
        public int Item;
    }
}
