using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Distcache.Networking;

/// <summary>
/// One thread waiting in <c>epoll_wait</c> for the sockets of the connections it was given, and running their
/// readers' and writers' continuations when they become readable or writable. One loop per core, shared by
/// every connection of the process that uses the native transport.
/// </summary>
/// <remarks>
/// Sockets are registered once, edge-triggered, for both directions, so that a connection never changes its
/// registration (no <c>epoll_ctl</c> per request). Each event carries the registration's number rather than a
/// reference, so that an event still queued for a connection that has just closed finds nothing and is dropped.
/// </remarks>
internal sealed class EventLoop
{
    private const int MaxEvents = 256;

    private static readonly Lazy<EventLoop[]> Loops = new(CreateLoops, LazyThreadSafetyMode.ExecutionAndPublication);
    private static int s_next;

    // x86 and x64 pack struct epoll_event to 12 bytes (events, then the 64-bit data at offset 4); other
    // architectures align the data to 8.
    private static readonly bool Packed = RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86;
    private static readonly int EventSize = Packed ? 12 : 16;
    private static readonly int DataOffset = Packed ? 4 : 8;

    // Deferred work runs after a batch of events, in turns of at most this many items, so that work deferring more
    // work cannot keep the loop from its sockets.
    private const int MaxDeferredPerTurn = 1024;

    [ThreadStatic]
    private static EventLoop? t_current;

    private readonly int _epoll;
    private readonly ConcurrentDictionary<long, ITarget> _registered = new();

    // Touched only by the loop's own thread.
    private readonly Queue<IThreadPoolWorkItem> _deferred = new();
    private long _nextId;

    private EventLoop(int index)
    {
        _epoll = NativeMethods.EpollCreate(NativeMethods.EpollCloexec);
        if (_epoll < 0)
        {
            throw new NetworkException($"epoll_create1 failed: {NativeMethods.Describe(Marshal.GetLastPInvokeError())}", null, SocketError.SocketError, null);
        }

        var thread = new Thread(Run)
        {
            IsBackground = true,
            Name = "distcache event loop " + index.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        thread.Start();
    }

    /// <summary>True where the native transport can run (Linux).</summary>
    public static bool IsSupported => OperatingSystem.IsLinux();

    /// <summary>Every loop of the process, one per core, started on first use.</summary>
    public static IReadOnlyList<EventLoop> All => Loops.Value;

    /// <summary>The loop for the next connection: round robin over one loop per core.</summary>
    public static EventLoop Next()
    {
        EventLoop[] loops = Loops.Value;
        return loops[(uint)Interlocked.Increment(ref s_next) % (uint)loops.Length];
    }

    /// <summary>What a registered socket's events are delivered to.</summary>
    public interface ITarget
    {
        /// <summary>Called on the loop's thread with the events (<c>EPOLLIN</c>, ...) that arrived for the socket.</summary>
        void OnEvents(uint events);
    }

    /// <summary>
    /// Runs <paramref name="work"/> on the calling thread once the event loop it belongs to has dispatched every event
    /// of its current batch, before it waits again; false, doing nothing, when the caller is not a loop's thread.
    /// </summary>
    public static bool TryDefer(IThreadPoolWorkItem work)
    {
        EventLoop? loop = t_current;
        if (loop is null)
        {
            return false;
        }

        loop._deferred.Enqueue(work);
        return true;
    }

    /// <summary>Starts delivering the socket's events to <paramref name="target"/>; returns the registration's number.</summary>
    /// <exception cref="NetworkException">The kernel refused the registration.</exception>
    public long Register(ITarget target, nint descriptor) =>
        Register(target, descriptor, NativeMethods.EpollIn | NativeMethods.EpollOut | NativeMethods.EpollRdHup | NativeMethods.EpollEt);

    /// <summary>Starts delivering the socket's <paramref name="events"/> (<c>EPOLLIN</c>, ...) to <paramref name="target"/>;
    /// returns the registration's number.</summary>
    /// <exception cref="NetworkException">The kernel refused the registration.</exception>
    public long Register(ITarget target, nint descriptor, uint events)
    {
        long id = Interlocked.Increment(ref _nextId);
        _registered[id] = target;
        Span<byte> ev = stackalloc byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(ev, events);
        BinaryPrimitives.WriteInt64LittleEndian(ev[DataOffset..], id);
        if (NativeMethods.EpollControl(_epoll, NativeMethods.EpollCtlAdd, (int)descriptor, ref MemoryMarshal.GetReference(ev)) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _registered.TryRemove(id, out _);
            throw new NetworkException($"epoll_ctl(ADD) failed: {NativeMethods.Describe(errno)}", null, NativeMethods.ToSocketError(errno), null);
        }

        return id;
    }

    /// <summary>Stops delivering events for a registration. Events already collected for it are dropped.</summary>
    public void Unregister(long id, nint descriptor)
    {
        if (_registered.TryRemove(id, out _) && descriptor >= 0)
        {
            // Closing the descriptor would remove it too, but only once every duplicate of it is closed. A failure
            // (the descriptor is already gone from the set) leaves nothing to undo: the number is forgotten above.
            Span<byte> ev = stackalloc byte[16];
            _ = NativeMethods.EpollControl(_epoll, NativeMethods.EpollCtlDel, (int)descriptor, ref MemoryMarshal.GetReference(ev));
        }
    }

    private static EventLoop[] CreateLoops()
    {
        var loops = new EventLoop[Math.Clamp(Environment.ProcessorCount, 1, 64)];
        for (int i = 0; i < loops.Length; i++)
        {
            loops[i] = new EventLoop(i);
        }

        return loops;
    }

    private void Run()
    {
        t_current = this;
        byte[] events = new byte[MaxEvents * EventSize];
        while (true)
        {
            // With deferred work still queued (a turn's worth was not enough), only look for events, do not sleep.
            int count = NativeMethods.EpollWait(_epoll, ref events[0], MaxEvents, _deferred.Count > 0 ? 0 : -1);
            if (count < 0)
            {
                // EINTR (a signal, a debugger) is routine; anything else would be a bug in how the loop was set up,
                // and a pause keeps that from spinning a core.
                if (Marshal.GetLastPInvokeError() != NativeMethods.EINTR)
                {
                    Thread.Sleep(10);
                }

                continue;
            }

            for (int i = 0; i < count; i++)
            {
                ReadOnlySpan<byte> ev = events.AsSpan(i * EventSize, EventSize);
                if (_registered.TryGetValue(BinaryPrimitives.ReadInt64LittleEndian(ev[DataOffset..]), out ITarget? target))
                {
                    target.OnEvents(BinaryPrimitives.ReadUInt32LittleEndian(ev));
                }
            }

            RunDeferred();
        }
    }

    private void RunDeferred()
    {
        for (int i = 0; i < MaxDeferredPerTurn && _deferred.TryDequeue(out IThreadPoolWorkItem? work); i++)
        {
            try
            {
                work.Execute();
            }
#pragma warning disable CA1031 // The loop serves every connection of the process and must outlive a failing item.
            catch (Exception)
#pragma warning restore CA1031
            {
                // Deferred work reports its own failures (TryDefer's callers start tasks that catch and log); this
                // only keeps a bug in one from stopping the loop.
            }
        }
    }
}
