using System.Runtime.InteropServices;

namespace Distcache.Storage;

/// <summary>
/// The memory of the store's slab segments: blocks of <see cref="BlockSize"/> bytes outside the garbage-collected
/// heap, aligned on 2 MiB and, on Linux, advised for transparent huge pages.
/// </summary>
/// <remarks>
/// <para>Why: a GET reads one session record at a random place among all of them. With a million sessions of 1 KB
/// that is a gigabyte, a quarter of a million 4 KiB pages, far more than the TLB holds, so nearly every lookup also
/// walks the page tables, which on a virtual machine is a two-level walk. With 2 MiB pages the same gigabyte is
/// 512 pages. Measured on the 2-core EPYC VM of docs/performance.md, a chain of dependent reads over 1 GiB took
/// 213 ns per read on 4 KiB pages and 166 ns on 2 MiB pages. The garbage collector cannot be asked for huge pages
/// for a given array, hence native memory; it also keeps a gigabyte of session bytes out of the GC's accounting,
/// where it is never collectable anyway.</para>
/// <para>Where huge pages are disabled (<c>/sys/kernel/mm/transparent_hugepage/enabled</c> is <c>never</c>) or the
/// system is not Linux, the blocks are ordinary pages and everything works the same, a little slower.</para>
/// <para>Faulting a block in is slow on a virtual machine: a 2 MiB huge page measured 0.1-4 ms the first time
/// (the host backs the guest's memory on first touch), and the store would take that under its lock, stalling
/// every connection. So one block is kept in reserve, already faulted in: <see cref="PrepareReserve"/> makes it
/// outside the lock (the store calls it before an add takes the lock), and <see cref="Allocate"/> under the lock
/// only takes it. The reserve is at most one block (2 MiB) beyond <see cref="Count"/>.</para>
/// <para><see cref="Allocate"/>, the indexer and <see cref="Dispose"/> are not thread-safe: the store calls them
/// under its lock. <see cref="NeedsReserve"/> and <see cref="PrepareReserve"/> may run on any thread at any time,
/// even during <see cref="Dispose"/>. Blocks are freed by <see cref="Dispose"/>, or by the finalizer if the store
/// is dropped undisposed, so an abandoned store does not leak.</para>
/// </remarks>
internal sealed unsafe partial class SlabMemory : IDisposable
{
    /// <summary>The size and alignment of a block: one x86-64 huge page.</summary>
    internal const int BlockSize = 2 << 20;

    private const int MadvHugePage = 14;
    private const int PageSize = 4096;

    private nint[] _blocks = new nint[4];
    private int _count;
    private nint _reserve;
    private volatile bool _disposed;

    ~SlabMemory() => Free();

    /// <summary>The number of blocks allocated (not counting the reserve).</summary>
    public int Count => _count;

    /// <summary>True while no block is in reserve: the next <see cref="Allocate"/> would fault one in itself.</summary>
    public bool NeedsReserve => Volatile.Read(ref _reserve) == 0 && !_disposed;

    /// <summary>Makes the reserve block if there is none. Slow (it faults the block in): call it outside any lock.</summary>
    /// <exception cref="OutOfMemoryException">The system refused the memory.</exception>
    public void PrepareReserve()
    {
        if (!NeedsReserve)
        {
            return;
        }

        nint block = NewBlock(faultIn: true);
        if (Interlocked.CompareExchange(ref _reserve, block, 0) != 0)
        {
            NativeMemory.AlignedFree((void*)block); // another thread made one meanwhile
        }
        else if (_disposed)
        {
            FreeReserve(); // Dispose ran meanwhile and may have missed it; whoever takes it frees it
        }
    }

    /// <summary>Allocates a block (contents undefined): the reserve if there is one; returns its number, counting from 0.</summary>
    /// <exception cref="OutOfMemoryException">The system refused the memory.</exception>
    public int Allocate()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_count == _blocks.Length)
        {
            Array.Resize(ref _blocks, _count * 2);
        }

        nint block = Interlocked.Exchange(ref _reserve, 0);
        _blocks[_count] = block != 0 ? block : NewBlock(faultIn: false);
        return _count++;
    }

    /// <summary>The bytes of block <paramref name="block"/>.</summary>
    public Span<byte> this[int block] => new((void*)_blocks[block], BlockSize);

    /// <summary>Frees every block; later use throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private static nint NewBlock(bool faultIn)
    {
        byte* block = (byte*)NativeMemory.AlignedAlloc(BlockSize, BlockSize);
        if (OperatingSystem.IsLinux())
        {
            // Advice only: refused (huge pages disabled, an old kernel), the block is simply made of small pages.
            _ = Madvise((nint)block, BlockSize, MadvHugePage);
        }

        if (faultIn)
        {
            // A write to every small page: one huge page fault, or 512 small ones where huge pages are refused.
            for (int offset = 0; offset < BlockSize; offset += PageSize)
            {
                block[offset] = 0;
            }
        }

        return (nint)block;
    }

    private void Free()
    {
        _disposed = true;
        for (int i = 0; i < _count; i++)
        {
            NativeMemory.AlignedFree((void*)_blocks[i]);
        }

        _blocks = [];
        _count = 0;
        FreeReserve();
    }

    private void FreeReserve()
    {
        nint block = Interlocked.Exchange(ref _reserve, 0);
        if (block != 0)
        {
            NativeMemory.AlignedFree((void*)block);
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
