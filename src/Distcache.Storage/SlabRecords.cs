using System.Buffers.Binary;
using System.Diagnostics;

namespace Distcache.Storage;

/// <summary>
/// The entries that own records, by the number each record's header holds: compaction moves a record and must point
/// its owner at the new place.
/// </summary>
internal interface IRecordOwners
{
    /// <summary>Entry <paramref name="owner"/>, by reference.</summary>
    /// <param name="owner">The number a live record's header holds.</param>
    ref SessionEntry this[int owner] { get; }
}

/// <summary>
/// The session records (id and data) in slab segments of <see cref="SlabMemory"/>, filled log-style and compacted so
/// that the segments in use stay within a bound set by the byte limit, however the store fragments them.
/// </summary>
/// <remarks>
/// <para>Each record in a segment is [int32 header][id][data]. A live record's header is the number of its entry,
/// which lets compaction find and update the owner; a dead record's header is minus its length, which lets
/// compaction skip it. Where a record is lives in its entry (<see cref="SessionEntry.Segment"/>,
/// <see cref="SessionEntry.Offset"/>, and the lengths).</para>
/// <para>Not thread-safe: the store calls it under its lock, except <see cref="NeedsReserve"/> and
/// <see cref="PrepareReserve"/> (see <see cref="SlabMemory"/>).</para>
/// </remarks>
internal sealed class SlabRecords : IDisposable
{
    /// <summary>Slab segment size: one huge page of <see cref="SlabMemory"/>. Large enough that a maximum-size
    /// record is under a ninth of it (the compaction bound below relies on that) and that a million sessions
    /// need about five hundred.</summary>
    internal const int SegmentSize = SlabMemory.BlockSize;

    /// <summary>The bytes in front of each record's id.</summary>
    internal const int HeaderSize = sizeof(int);

    private const int MaxRecordSize = HeaderSize + SessionStoreLimits.MaxIdLength + SessionStoreLimits.MaxDataLength;

    private readonly IRecordOwners _owners;
    private readonly int _segmentBudget;

    // Slab segments, filled log-style at _head. _spare is kept empty as the compaction target.
    private readonly SlabMemory _segments = new();
    private int[] _segmentLive = new int[4];
    private int[] _segmentEnd = new int[4];
    private int[] _freeSegments = new int[4];
    private int _freeSegmentCount;
    private int _head = -1;
    private int _headOffset;
    private int _spare = -1;

    private long _compactions;

    /// <summary>Creates an empty record memory (no segment is allocated until the first record).</summary>
    /// <param name="maxBytes">The most bytes the live records may take, ids and data with their headers and
    /// anything else the owner counts; the slab memory stays within about 1.125 times this plus three segments.</param>
    /// <param name="owners">The entries the record headers name.</param>
    public SlabRecords(long maxBytes, IRecordOwners owners)
    {
        _owners = owners;

        // Compaction copies the emptiest segment into the spare. With this many segments in use and at
        // most maxBytes of live records, the emptiest holds at most 8/9 of a segment, so compacting it
        // frees at least a ninth (233 KiB), more than the largest record: a write always finds room.
        _segmentBudget = (int)Math.Min(int.MaxValue / 2, (maxBytes / SegmentSize) + (maxBytes / (8L * SegmentSize)) + 2);
        Debug.Assert(MaxRecordSize <= SegmentSize / 9, "The segment budget argument needs a record to fit in a ninth of a segment.");
    }

    /// <summary>True while no segment is in reserve (see <see cref="SlabMemory.NeedsReserve"/>).</summary>
    public bool NeedsReserve => _segments.NeedsReserve;

    /// <summary>The bytes of slab memory allocated (live records, dead ones and free space).</summary>
    public long Bytes => (long)_segments.Count * SegmentSize;

    /// <summary>Segments compacted so far. Safe to read without the lock.</summary>
    public long Compactions => Interlocked.Read(ref _compactions);

    /// <summary>Faults the next segment in ahead of need. Slow: call it outside any lock (see <see cref="SlabMemory"/>).</summary>
    /// <exception cref="OutOfMemoryException">The system refused the memory.</exception>
    public void PrepareReserve() => _segments.PrepareReserve();

    /// <summary>Writes the record of entry <paramref name="owner"/> and points the entry at it.</summary>
    /// <param name="owner">The entry's number, written in the record's header.</param>
    /// <param name="entry">The entry itself: its location and lengths are set.</param>
    /// <param name="id">The session id.</param>
    /// <param name="data">The session data.</param>
    /// <exception cref="OutOfMemoryException">The system refused a new segment.</exception>
    public void Write(int owner, ref SessionEntry entry, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data)
    {
        int length = HeaderSize + id.Length + data.Length;
        int segment = Allocate(length, out int offset);

        Span<byte> record = _segments[segment].Slice(offset, length);
        BinaryPrimitives.WriteInt32LittleEndian(record, owner);
        id.CopyTo(record[HeaderSize..]);
        data.CopyTo(record[(HeaderSize + id.Length)..]);

        entry.Segment = segment;
        entry.Offset = offset;
        entry.IdLength = (byte)id.Length;
        entry.DataLength = data.Length;
    }

    /// <summary>The id of the record <paramref name="entry"/> points at; valid until the next write or free.</summary>
    /// <param name="entry">An entry with a record.</param>
    /// <returns>The id bytes.</returns>
    public ReadOnlySpan<byte> Id(in SessionEntry entry) => _segments[entry.Segment].Slice(entry.Offset + HeaderSize, entry.IdLength);

    /// <summary>The data of the record <paramref name="entry"/> points at; valid until the next write or free.</summary>
    /// <param name="entry">An entry with a record.</param>
    /// <returns>The data bytes.</returns>
    public ReadOnlySpan<byte> Data(in SessionEntry entry) =>
        _segments[entry.Segment].Slice(entry.Offset + HeaderSize + entry.IdLength, entry.DataLength);

    /// <summary>The whole record <paramref name="entry"/> points at, header included.</summary>
    /// <param name="entry">An entry with a record.</param>
    /// <returns>The record bytes.</returns>
    public ReadOnlySpan<byte> Record(in SessionEntry entry) => _segments[entry.Segment].Slice(entry.Offset, RecordLength(entry));

    /// <summary>Frees the record <paramref name="entry"/> points at.</summary>
    /// <param name="entry">An entry with a record, which it no longer has afterwards.</param>
    public void Free(in SessionEntry entry)
    {
        int segment = entry.Segment;
        int length = RecordLength(entry);
        BinaryPrimitives.WriteInt32LittleEndian(_segments[segment][entry.Offset..], -length);
        if ((_segmentLive[segment] -= length) == 0 && segment != _head)
        {
            PushFreeSegment(segment);
        }
    }

    /// <summary>Frees every segment; later writes throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose() => _segments.Dispose();

    private static int RecordLength(in SessionEntry entry) => HeaderSize + entry.IdLength + entry.DataLength;

    /// <summary>Reserves <paramref name="length"/> bytes at the log head; returns the segment.</summary>
    private int Allocate(int length, out int offset)
    {
        if (_head < 0 || SegmentSize - _headOffset < length)
        {
            OpenHead(length);
        }

        offset = _headOffset;
        _headOffset += length;
        _segmentLive[_head] += length;
        return _head;
    }

    private void OpenHead(int length)
    {
        if (_head >= 0)
        {
            int closed = _head;
            _segmentEnd[closed] = _headOffset;
            _head = -1;
            if (_segmentLive[closed] == 0)
            {
                PushFreeSegment(closed);
            }
        }

        _headOffset = 0;
        if (_freeSegmentCount > 0)
        {
            _head = _freeSegments[--_freeSegmentCount];
            return;
        }

        int inUse = _segments.Count - (_spare >= 0 ? 1 : 0);
        if (inUse < _segmentBudget)
        {
            _head = NewSegment();
            return;
        }

        Compact();
        if (SegmentSize - _headOffset < length)
        {
            // The segment budget makes this unreachable (see the constructor); should that argument
            // ever fail, going over the memory bound beats corrupting a session.
            Debug.Fail("Compaction freed less than a record.");
            _segmentEnd[_head] = _headOffset;
            _head = NewSegment();
            _headOffset = 0;
        }
    }

    /// <summary>Copies the live records of the emptiest segment into the spare, which becomes the head;
    /// the emptied segment becomes the spare.</summary>
    private void Compact()
    {
        // A linear pass over the segments is a few thousand ints at most, and it happens once per
        // segment filled (two megabytes of records), so it costs nothing per add.
        int victim = -1;
        int least = int.MaxValue;
        for (int s = 0; s < _segments.Count; s++)
        {
            if (s != _spare && _segmentLive[s] < least)
            {
                victim = s;
                least = _segmentLive[s];
            }
        }

        if (_spare < 0)
        {
            _spare = NewSegment();
        }

        Span<byte> source = _segments[victim];
        Span<byte> target = _segments[_spare];
        int end = _segmentEnd[victim];
        int written = 0;
        for (int position = 0; position < end;)
        {
            int header = BinaryPrimitives.ReadInt32LittleEndian(source[position..]);
            if (header < 0)
            {
                position -= header;
                continue;
            }

            ref SessionEntry entry = ref _owners[header];
            int length = RecordLength(entry);
            source.Slice(position, length).CopyTo(target[written..]);
            entry.Segment = _spare;
            entry.Offset = written;
            position += length;
            written += length;
        }

        Debug.Assert(written == _segmentLive[victim], "Compaction must move exactly the live bytes.");
        _segmentLive[_spare] = written;
        _segmentLive[victim] = 0;
        _segmentEnd[victim] = 0;
        _head = _spare;
        _headOffset = written;
        _spare = victim;
        Interlocked.Increment(ref _compactions);
    }

    private int NewSegment()
    {
        if (_segments.Count == _segmentLive.Length)
        {
            int size = _segmentLive.Length * 2;
            Array.Resize(ref _segmentLive, size);
            Array.Resize(ref _segmentEnd, size);
            Array.Resize(ref _freeSegments, size);
        }

        int segment = _segments.Allocate();
        _segmentLive[segment] = 0;
        _segmentEnd[segment] = 0;
        return segment;
    }

    private void PushFreeSegment(int segment)
    {
        _segmentEnd[segment] = 0;
        _freeSegments[_freeSegmentCount++] = segment;
    }
}
