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
/// <para>Not thread-safe: the store calls it under its lock. Blocks are freed by <see cref="Dispose"/>, or by the
/// finalizer if the store is dropped undisposed, so an abandoned store does not leak.</para>
/// </remarks>
internal sealed unsafe partial class SlabMemory : IDisposable
{
    /// <summary>The size and alignment of a block: one x86-64 huge page.</summary>
    internal const int BlockSize = 2 << 20;

    private const int MadvHugePage = 14;

    private nint[] _blocks = new nint[4];
    private int _count;

    ~SlabMemory() => Free();

    /// <summary>The number of blocks allocated.</summary>
    public int Count => _count;

    /// <summary>Allocates a block (contents undefined); returns its number, counting from 0.</summary>
    /// <exception cref="OutOfMemoryException">The system refused the memory.</exception>
    public int Allocate()
    {
        ObjectDisposedException.ThrowIf(_blocks.Length == 0, this);
        if (_count == _blocks.Length)
        {
            Array.Resize(ref _blocks, _count * 2);
        }

        void* block = NativeMemory.AlignedAlloc(BlockSize, BlockSize);
        if (OperatingSystem.IsLinux())
        {
            // Advice only: refused (huge pages disabled, an old kernel), the block is simply made of small pages.
            _ = Madvise((nint)block, BlockSize, MadvHugePage);
        }

        _blocks[_count] = (nint)block;
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

    private void Free()
    {
        for (int i = 0; i < _count; i++)
        {
            NativeMemory.AlignedFree((void*)_blocks[i]);
        }

        _blocks = [];
        _count = 0;
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
