using static Distcache.Storage.Tests.TestData;

namespace Distcache.Storage.Tests;

public sealed class SlabRecordsTests
{
    [Fact]
    public void A_record_reads_back_as_written_behind_its_header()
    {
        var owners = new Owners(4);
        using var records = new SlabRecords(64L << 20, owners);
        Assert.Equal(0, records.Bytes);

        records.Write(3, ref owners[3], Id("an id"), Data(1000, 1));

        Assert.Equal(Id("an id"), records.Id(owners[3]).ToArray());
        Assert.Equal(Data(1000, 1), records.Data(owners[3]).ToArray());
        Assert.Equal(SlabRecords.HeaderSize + 5 + 1000, records.Record(owners[3]).Length);
        Assert.Equal(3, BitConverter.ToInt32(records.Record(owners[3])));
        Assert.Equal(SlabRecords.SegmentSize, records.Bytes);
    }

    [Fact]
    public void A_segment_whose_records_all_die_is_reused_without_compacting()
    {
        const int Length = 20_000;
        int perSegment = SlabRecords.SegmentSize / (SlabRecords.HeaderSize + 4 + Length);
        var owners = new Owners(3 * perSegment);
        using var records = new SlabRecords(4L << 20, owners);
        for (int i = 0; i < 2 * perSegment; i++)
        {
            records.Write(i, ref owners[i], Id($"{i:0000}"), Data(Length, i));
        }

        for (int i = 0; i < perSegment; i++)
        {
            records.Free(owners[i]);
        }

        for (int i = 2 * perSegment; i < owners.Length; i++)
        {
            records.Write(i, ref owners[i], Id($"{i:0000}"), Data(Length, i));
        }

        Assert.Equal(0, owners[perSegment * 2].Segment);
        Assert.Equal(2L * SlabRecords.SegmentSize, records.Bytes);
        Assert.Equal(0, records.Compactions);
    }

    [Fact]
    public void Compaction_keeps_segments_within_budget_and_points_owners_at_the_moved_records()
    {
        const long MaxBytes = 3L << 20;
        const int Writes = 3000;
        var owners = new Owners(Writes);
        using var records = new SlabRecords(MaxBytes, owners);
        var random = new Random(11);
        var live = new List<int>();
        long liveBytes = 0;
        for (int i = 0; i < Writes; i++)
        {
            int length = random.Next(1, SessionStoreLimits.MaxDataLength + 1);
            int cost = SlabRecords.HeaderSize + 5 + length;

            // Random deaths punch holes everywhere, as expiry and eviction do; the owner keeps to its byte bound.
            while (liveBytes + cost > MaxBytes || (live.Count > 0 && random.Next(3) == 0))
            {
                int victim = random.Next(live.Count);
                int owner = live[victim];
                live[victim] = live[^1];
                live.RemoveAt(live.Count - 1);
                liveBytes -= records.Record(owners[owner]).Length;
                records.Free(owners[owner]);
            }

            records.Write(i, ref owners[i], Id($"{i:00000}"), Data(length, i));
            live.Add(i);
            liveBytes += cost;
            Assert.InRange(records.Bytes, 0, ((MaxBytes / SlabRecords.SegmentSize) + (MaxBytes / (8 * SlabRecords.SegmentSize)) + 3) * SlabRecords.SegmentSize);
        }

        Assert.True(records.Compactions > 0, "the churn should have forced compaction");
        foreach (int owner in live)
        {
            Assert.Equal(Id($"{owner:00000}"), records.Id(owners[owner]).ToArray());
            Assert.Equal(owner, BitConverter.ToInt32(records.Record(owners[owner])));
            Assert.True(records.Data(owners[owner]).SequenceEqual(Data(owners[owner].DataLength, owner)), $"record {owner} was damaged");
        }
    }

    private sealed class Owners(int count) : IRecordOwners
    {
        private readonly SessionEntry[] _entries = new SessionEntry[count];

        public int Length => _entries.Length;

        public ref SessionEntry this[int owner] => ref _entries[owner];
    }
}
