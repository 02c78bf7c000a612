using System.Text;

namespace Distcache.Protocol;

/// <summary>
/// A consistent hash ring: maps a session id to one of several named nodes so that adding or removing a node
/// moves only the ids that node gains or held, about 1/n of them, and every client with the same node names
/// (in any order) maps every id the same way.
/// </summary>
/// <remarks>
/// Each node is placed on a 64-bit ring at <see cref="VirtualNodes"/> points, hashed from its name and the point's
/// number; an id belongs to the node of the first point at or after the id's hash, wrapping around. Many points
/// per node even out the shares (with 160 points each node's share is typically within about 10% of 1/n).
/// The hash is FNV-1a with a 64-bit finaliser: fixed, so rings agree across processes, machines and versions.
/// </remarks>
public sealed class ConsistentHashRing
{
    /// <summary>The default number of points per node.</summary>
    public const int DefaultVirtualNodes = 160;

    private readonly ulong[] _points;
    private readonly int[] _owners;

    /// <summary>Places <paramref name="nodes"/> on the ring.</summary>
    /// <param name="nodes">The node names (for servers, their addresses as written); at least one, no duplicates.</param>
    /// <param name="virtualNodes">Points per node, 1 to 10000.</param>
    /// <exception cref="ArgumentException">No node, a duplicate name, or <paramref name="virtualNodes"/> out of range.</exception>
    public ConsistentHashRing(IEnumerable<string> nodes, int virtualNodes = DefaultVirtualNodes)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        ArgumentOutOfRangeException.ThrowIfLessThan(virtualNodes, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(virtualNodes, 10_000);
        Nodes = [.. nodes];
        if (Nodes.Count == 0)
        {
            throw new ArgumentException("A ring needs at least one node.", nameof(nodes));
        }

        if (Nodes.Distinct(StringComparer.Ordinal).Count() != Nodes.Count)
        {
            throw new ArgumentException("Node names must be distinct.", nameof(nodes));
        }

        VirtualNodes = virtualNodes;
        var points = new List<(ulong Point, string Name, int Owner)>(Nodes.Count * virtualNodes);
        for (int node = 0; node < Nodes.Count; node++)
        {
            for (int i = 0; i < virtualNodes; i++)
            {
                points.Add((Hash(Encoding.UTF8.GetBytes($"{Nodes[node]}#{i}")), Nodes[node], node));
            }
        }

        // Ties (vanishingly rare) go by name, not by listing order, so that every client builds the same ring.
        points.Sort((a, b) => a.Point != b.Point ? a.Point.CompareTo(b.Point) : string.CompareOrdinal(a.Name, b.Name));
        _points = [.. points.Select(p => p.Point)];
        _owners = [.. points.Select(p => p.Owner)];
    }

    /// <summary>The node names, in the order given.</summary>
    public IReadOnlyList<string> Nodes { get; }

    /// <summary>Points per node.</summary>
    public int VirtualNodes { get; }

    /// <summary>The node that owns <paramref name="key"/>: the index into <see cref="Nodes"/>.</summary>
    /// <param name="key">The key, for distcache a session id.</param>
    /// <returns>The owning node's index.</returns>
    public int Owner(ReadOnlySpan<byte> key) => _owners[Locate(key)];

    /// <summary>
    /// Where <paramref name="key"/> falls on the ring: the index of its first point, for <see cref="FirstUsable(int, ReadOnlySpan{bool})"/>.
    /// A router hashes each key once, when it reads the request, and picks the node later from the position and
    /// whichever nodes are usable at that moment.
    /// </summary>
    /// <param name="key">The key, for distcache a session id.</param>
    /// <returns>A position on the ring, from 0 to the number of points less one.</returns>
    public int Locate(ReadOnlySpan<byte> key)
    {
        ulong hash = Hash(key);
        int index = Array.BinarySearch(_points, hash);
        if (index < 0)
        {
            index = ~index;
        }

        return index == _points.Length ? 0 : index;
    }

    /// <summary>
    /// The first node on the ring from <paramref name="key"/> onwards for which <paramref name="usable"/> is true:
    /// the owner if usable, else the next distinct node clockwise, and so on. With all nodes usable this is
    /// <see cref="Owner"/>; with one unusable, only that node's keys move, spread over the others.
    /// </summary>
    /// <param name="key">The key.</param>
    /// <param name="usable">One flag per node, in the order of <see cref="Nodes"/>.</param>
    /// <returns>The node's index, or -1 if no node is usable.</returns>
    /// <exception cref="ArgumentException"><paramref name="usable"/> does not have one flag per node.</exception>
    public int FirstUsable(ReadOnlySpan<byte> key, ReadOnlySpan<bool> usable) => FirstUsable(Locate(key), usable);

    /// <summary>As <see cref="FirstUsable(ReadOnlySpan{byte}, ReadOnlySpan{bool})"/>, from a position <see cref="Locate"/> gave.</summary>
    /// <param name="position">The key's position on the ring.</param>
    /// <param name="usable">One flag per node, in the order of <see cref="Nodes"/>.</param>
    /// <returns>The node's index, or -1 if no node is usable.</returns>
    /// <exception cref="ArgumentException"><paramref name="usable"/> does not have one flag per node.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="position"/> is not on the ring.</exception>
    public int FirstUsable(int position, ReadOnlySpan<bool> usable)
    {
        if (usable.Length != Nodes.Count)
        {
            throw new ArgumentException("One flag per node is required.", nameof(usable));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(position, _points.Length);
        if (usable[_owners[position]])
        {
            return _owners[position];
        }

        if (!usable.Contains(true))
        {
            return -1;
        }

        for (int step = 1; step < _points.Length; step++)
        {
            int owner = _owners[(position + step) % _points.Length];
            if (usable[owner])
            {
                return owner;
            }
        }

        return -1;
    }

    /// <summary>The ring's hash of <paramref name="data"/>: FNV-1a 64, then a finaliser that spreads its bits.</summary>
    /// <param name="data">The bytes to hash.</param>
    /// <returns>The 64-bit hash.</returns>
    public static ulong Hash(ReadOnlySpan<byte> data)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in data)
        {
            hash = (hash ^ b) * 1099511628211UL;
        }

        // FNV alone leaves short, similar inputs (name#1, name#2) close together; this avalanche step does not.
        hash ^= hash >> 33;
        hash *= 0xff51afd7ed558ccdUL;
        hash ^= hash >> 33;
        hash *= 0xc4ceb9fe1a85ec53UL;
        hash ^= hash >> 33;
        return hash;
    }
}
