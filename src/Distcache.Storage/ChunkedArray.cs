using System.Runtime.CompilerServices;

namespace Distcache.Storage;

/// <summary>
/// An array of structs stored in fixed-size chunks, so that growing it allocates one chunk and copies
/// nothing. A single array that doubles must copy everything it holds while the store's lock is held: at
/// a few million sessions that is a hundred megabytes and a stall of hundreds of milliseconds for every
/// connection. Growth here costs the same small amount each time, whatever the size.
/// </summary>
/// <remarks>
/// Small arrays stay small: the first chunk starts at the requested size and doubles until it is a
/// full chunk (copying at most one chunk's worth), and only then are further chunks added. A mutable
/// struct, so its owner holds it in a field and reaches elements with one extra load.
/// </remarks>
/// <typeparam name="T">The element type.</typeparam>
internal struct ChunkedArray<T>
    where T : struct
{
    /// <summary>log2 of the elements per chunk: 16384, so a chunk of the largest element (the store's
    /// 40-byte entry) is 640 KiB and a million elements need 62 chunks.</summary>
    internal const int ChunkShift = 14;

    internal const int ChunkSize = 1 << ChunkShift;
    private const int ChunkMask = ChunkSize - 1;

    private T[][] _chunks;
    private int _chunkCount;

    /// <summary>Creates an array of <paramref name="initialCapacity"/> elements (at most one chunk), all set to <paramref name="fill"/>.</summary>
    public ChunkedArray(int initialCapacity, T fill)
    {
        initialCapacity = Math.Clamp(initialCapacity, 1, ChunkSize);
        T[] first = new T[initialCapacity];
        first.AsSpan().Fill(fill);
        _chunks = new T[4][];
        _chunks[0] = first;
        _chunkCount = 1;
        Capacity = initialCapacity;
    }

    /// <summary>The number of usable elements.</summary>
    public int Capacity { get; private set; }

    /// <summary>The bytes held by the chunks.</summary>
    public readonly long Bytes => (long)Capacity * Unsafe.SizeOf<T>();

    /// <summary>The element at <paramref name="index"/>, by reference.</summary>
    public readonly ref T this[int index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _chunks[index >> ChunkShift][index & ChunkMask];
    }

    /// <summary>Grows to hold at least <paramref name="capacity"/> elements (never more than one chunk
    /// beyond it, or beyond <paramref name="limit"/> while within the first chunk); new elements are set
    /// to <paramref name="fill"/>.</summary>
    /// <param name="capacity">The elements needed.</param>
    /// <param name="limit">The most elements the owner will ever need (positive), so that a small first
    /// chunk does not double past it.</param>
    /// <param name="fill">The value of new elements.</param>
    public void Grow(int capacity, int limit, T fill)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        while (Capacity < capacity)
        {
            if (Capacity < ChunkSize)
            {
                // Still within the first chunk: double it (bounded by the limit and a full chunk).
                int size = (int)Math.Min(Math.Min(Math.Max(Capacity * 2L, capacity), ChunkSize), Math.Max(limit, capacity));
                T[] first = _chunks[0];
                Array.Resize(ref first, size);
                first.AsSpan(Capacity).Fill(fill);
                _chunks[0] = first;
                Capacity = size;
                continue;
            }

            if (_chunkCount == _chunks.Length)
            {
                Array.Resize(ref _chunks, _chunks.Length * 2);
            }

            T[] chunk = new T[ChunkSize];
            chunk.AsSpan().Fill(fill);
            _chunks[_chunkCount++] = chunk;
            Capacity += ChunkSize;
        }
    }

    /// <summary>Drops every chunk.</summary>
    public void Clear()
    {
        _chunks = [[]];
        _chunkCount = 1;
        Capacity = 0;
    }
}
