using System.Buffers.Binary;
using System.Diagnostics;
using Distcache.Storage;

namespace Distcache.Benchmarks;

/// <summary>
/// `dotnet run -c Release -- memory [sessions]`: fills a store with sessions of 32-byte ids and
/// 1000-byte data and reports what they cost in managed heap (the store's tables), native memory (its slab
/// segments) and resident memory, and how long a full blocking GC takes with them stored (it would trace every
/// session if each were an object).
/// </summary>
internal static class MemoryFootprint
{
    public static void Run(int sessions)
    {
        const int IdLength = 32;
        const int DataLength = 1000;
        byte[] id = new byte[IdLength];
        byte[] data = new byte[DataLength];
        new Random(1).NextBytes(data);

        long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        long rssBefore = Process.GetCurrentProcess().WorkingSet64;

        using var store = new MemorySessionStore(new MemorySessionStoreOptions
        {
            MaxSessions = 0,
            MaxBytes = (long)sessions * (IdLength + DataLength + MemorySessionStore.PerSessionOverhead) + (64L << 20),
        });

        var fill = Stopwatch.StartNew();
        for (int i = 0; i < sessions; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(id, i * unchecked((long)0x9E3779B97F4A7C15UL));
            ValueTask<AddResult> add = store.AddAsync(id, data, TimeSpan.FromHours(1));
            if (!add.IsCompletedSuccessfully || add.Result != AddResult.Stored)
            {
                throw new InvalidOperationException($"Session {i} was not stored.");
            }
        }

        fill.Stop();

        var gc = Stopwatch.StartNew();
        long heapAfter = GC.GetTotalMemory(forceFullCollection: true);
        gc.Stop();
        long rssAfter = Process.GetCurrentProcess().WorkingSet64;
        var gen2 = Stopwatch.StartNew();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        gen2.Stop();

        long payload = (long)sessions * (IdLength + DataLength);
        long heap = heapAfter - heapBefore;
        long rss = rssAfter - rssBefore;
        Console.WriteLine($"sessions              {sessions:N0} x ({IdLength}-byte id + {DataLength}-byte data)");
        Console.WriteLine($"fill time             {fill.Elapsed.TotalMilliseconds:N0} ms ({fill.Elapsed.TotalNanoseconds / sessions:N0} ns/add incl. growth)");
        Console.WriteLine($"Count / BytesUsed     {store.Count:N0} / {store.BytesUsed:N0} (PerSessionOverhead {MemorySessionStore.PerSessionOverhead})");
        Console.WriteLine($"SlabBytes             {store.SlabBytes:N0}");
        Console.WriteLine($"payload (id+data)     {payload:N0}");
        long stored = heap + store.SlabBytes;
        Console.WriteLine($"managed heap growth   {heap:N0} = {(double)heap / sessions:N1} B/session (tables; the slab segments are native memory)");
        Console.WriteLine($"heap + slab           {stored:N0} = {(double)stored / sessions:N1} B/session, {(double)(stored - payload) / sessions:N1} B/session overhead");
        Console.WriteLine($"resident set growth   {rss:N0} = {(double)rss / sessions:N1} B/session, {(double)(rss - payload) / sessions:N1} B/session overhead");
        Console.WriteLine($"full blocking gen2 GC {gen2.Elapsed.TotalMilliseconds:N1} ms with the sessions stored");
        Console.WriteLine($"GC heap size          {GC.GetGCMemoryInfo().HeapSizeBytes:N0}");
        GC.KeepAlive(store);
    }
}
