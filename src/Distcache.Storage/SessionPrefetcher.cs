using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Distcache.Storage;

/// <summary>
/// Brings the buckets, entries and records of a group of sessions into the CPU cache ahead of their lookups
/// (<see cref="MemorySessionStore.Prefetch"/>), so that the cache misses of the lookups overlap instead of following
/// one another.
/// </summary>
/// <remarks>
/// Passes over the ids, each issuing one independent memory access per id: the buckets, then the entries the buckets
/// name, then the records of the entries whose hash matches and, for the others, the next entry of their chain. Each
/// pass waits for about one memory latency instead of one per id. Not thread-safe: the store calls it under its lock.
/// </remarks>
internal static class SessionPrefetcher
{
    /// <summary>How far down a chain <see cref="Prefetch"/> follows an id before giving up on it: at one session
    /// per bucket, about one session in 200 sits deeper than the fourth entry of its chain.</summary>
    private const int MaxChainSteps = 4;

    /// <summary>True where .NET exposes a prefetch instruction (only x86 is used here); elsewhere
    /// <see cref="Prefetch"/> does nothing, and hashing ids for it would be wasted.</summary>
    public static bool IsSupported => Sse.IsSupported;

    /// <summary>Prefetches what the lookups of these hashes will read.</summary>
    /// <param name="index">The index the lookups will search.</param>
    /// <param name="records">Where the entries' records are.</param>
    /// <param name="hashes">The keyed hashes of the ids, a few dozen at most (the caller bounds them).</param>
    public static void Prefetch(SessionIndex index, SlabRecords records, ReadOnlySpan<ulong> hashes)
    {
        if (!Sse.IsSupported)
        {
            return;
        }

        int count = hashes.Length;
        Span<int> found = stackalloc int[count];

        // 'found' holds each id's bucket after the first pass, then the chain entry to look at next (-1 once
        // there is nothing more to fetch for that id).
        for (int i = 0; i < count; i++)
        {
            found[i] = index.BucketOf(hashes[i]);
            PrefetchLine(ref index.ChainHead(found[i]));
        }

        for (int i = 0; i < count; i++)
        {
            int entry = index.ChainHead(found[i]);
            found[i] = entry;
            if (entry >= 0)
            {
                PrefetchEntry(index, entry);
            }
        }

        // Then down the chains, one step per pass for every id at once. With one session per bucket on
        // average only 1 - 1/e (63%) of the sessions are first in their chain, and following only the head
        // left the other 37% to two misses in a row during the GET itself.
        for (int step = 0; step < MaxChainSteps; step++)
        {
            bool more = false;
            for (int i = 0; i < count; i++)
            {
                int current = found[i];
                if (current < 0)
                {
                    continue;
                }

                ref SessionEntry entry = ref index[current];
                if (entry.Hash == hashes[i] && entry.HeapIndex >= 0)
                {
                    // The whole record, not only its header and id: the GET copies all of it out, and fetching
                    // it here beat leaving the data to the hardware prefetcher by 13% at a million sessions
                    // (docs/performance.md), at no cost measurable when everything is cached.
                    ReadOnlySpan<byte> record = records.Record(entry);
                    ref byte start = ref MemoryMarshal.GetReference(record);
                    for (int line = 0; line < record.Length; line += 64)
                    {
                        PrefetchLine(ref Unsafe.Add(ref start, line));
                    }

                    PrefetchLine(ref Unsafe.Add(ref start, record.Length - 1));
                    found[i] = -1;
                }
                else
                {
                    current = entry.Next;
                    found[i] = current;
                    if (current >= 0)
                    {
                        PrefetchEntry(index, current);
                        more = true;
                    }
                }
            }

            if (!more)
            {
                break;
            }
        }
    }

    /// <summary>Prefetches an entry's first and last bytes: a 40-byte entry straddles two cache lines three times
    /// in eight, and the fields read last (where its record is) are at its end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchEntry(SessionIndex index, int entry)
    {
        ref SessionEntry at = ref index[entry];
        PrefetchLine(ref at);
        PrefetchLine(ref Unsafe.Add(ref Unsafe.As<SessionEntry, byte>(ref at), Unsafe.SizeOf<SessionEntry>() - 1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PrefetchLine<T>(ref T location)
    {
        // A hint: it never faults, and if the GC moves a table between taking the address and the prefetch, the
        // only cost is a useless fetch.
        Sse.Prefetch0(Unsafe.AsPointer(ref location));
    }
}
