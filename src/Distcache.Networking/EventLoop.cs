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
        _epoll = Interop.EpollCreate(Interop.EpollCloexec);
        if (_epoll < 0)
        {
            throw new NetworkException($"epoll_create1 failed: {Interop.Describe(Marshal.GetLastPInvokeError())}", null, SocketError.SocketError, null);
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
    public long Register(ITarget target, nint descriptor)
    {
        long id = Interlocked.Increment(ref _nextId);
        _registered[id] = target;
        Span<byte> ev = stackalloc byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(ev, Interop.EpollIn | Interop.EpollOut | Interop.EpollRdHup | Interop.EpollEt);
        BinaryPrimitives.WriteInt64LittleEndian(ev[DataOffset..], id);
        if (Interop.EpollControl(_epoll, Interop.EpollCtlAdd, (int)descriptor, ref MemoryMarshal.GetReference(ev)) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _registered.TryRemove(id, out _);
            throw new NetworkException($"epoll_ctl(ADD) failed: {Interop.Describe(errno)}", null, Interop.ToSocketError(errno), null);
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
            _ = Interop.EpollControl(_epoll, Interop.EpollCtlDel, (int)descriptor, ref MemoryMarshal.GetReference(ev));
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
            int count = Interop.EpollWait(_epoll, ref events[0], MaxEvents, _deferred.Count > 0 ? 0 : -1);
            if (count < 0)
            {
                // EINTR (a signal, a debugger) is routine; anything else would be a bug in how the loop was set up,
                // and a pause keeps that from spinning a core.
                if (Marshal.GetLastPInvokeError() != Interop.EINTR)
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

    /// <summary>The libc calls of the native transport.</summary>
    internal static class Interop
    {
        public const uint EpollIn = 0x001;
        public const uint EpollOut = 0x004;
        public const uint EpollErr = 0x008;
        public const uint EpollHup = 0x010;
        public const uint EpollRdHup = 0x2000;
        public const uint EpollEt = 1u << 31;
        public const int EpollCtlAdd = 1;
        public const int EpollCtlDel = 2;
        public const int EpollCloexec = 0x80000;
        public const int MsgNoSignal = 0x4000;
        public const int MsgDontWait = 0x40;
        public const int EINTR = 4;
        public const int EAGAIN = 11;
        public const int EINPROGRESS = 115;
        public const int SockStream = 1;
        public const int SockNonBlock = 0x800;
        public const int SockCloexec = 0x80000;
        public const int SolSocket = 1;
        public const int SoError = 4;
        public const int FcntlGetFlags = 3;
        public const int FcntlSetFlags = 4;
        public const int ONonBlock = 0x800;

        private const string Libc = "libc";

        [DllImport(Libc, EntryPoint = "epoll_create1", SetLastError = true)]
        public static extern int EpollCreate(int flags);

        [DllImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
        public static extern int EpollControl(int epoll, int operation, int descriptor, ref byte ev);

        [DllImport(Libc, EntryPoint = "epoll_wait", SetLastError = true)]
        public static extern int EpollWait(int epoll, ref byte events, int maxEvents, int timeout);

        [DllImport(Libc, EntryPoint = "recv", SetLastError = true)]
        public static extern nint Receive(nint descriptor, ref byte buffer, nint length, int flags);

        [DllImport(Libc, EntryPoint = "send", SetLastError = true)]
        public static extern nint Send(nint descriptor, ref byte buffer, nint length, int flags);

        [DllImport(Libc, EntryPoint = "socket", SetLastError = true)]
        public static extern int CreateSocket(int domain, int type, int protocol);

        [DllImport(Libc, EntryPoint = "connect", SetLastError = true)]
        public static extern int Connect(nint descriptor, ref byte address, int addressLength);

        [DllImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
        public static extern int GetSocketOption(nint descriptor, int level, int option, ref int value, ref int length);

        [DllImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
        public static extern int Fcntl(nint descriptor, int command, int argument);

        /// <summary>The socket error the runtime reports for an errno, as far as a connection can meet it.</summary>
        public static SocketError ToSocketError(int errno) => errno switch
        {
            111 => SocketError.ConnectionRefused,
            2 or 99 => SocketError.AddressNotAvailable,
            13 or 1 => SocketError.AccessDenied,
            11 => SocketError.WouldBlock,
            97 => SocketError.AddressFamilyNotSupported,
            104 => SocketError.ConnectionReset,
            32 => SocketError.Shutdown,
            110 => SocketError.TimedOut,
            107 => SocketError.NotConnected,
            103 => SocketError.ConnectionAborted,
            113 => SocketError.HostUnreachable,
            101 => SocketError.NetworkUnreachable,
            9 => SocketError.OperationAborted,
            12 or 105 => SocketError.NoBufferSpaceAvailable,
            _ => SocketError.SocketError,
        };

        public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno) + " (errno " + errno.ToString(System.Globalization.CultureInfo.InvariantCulture) + ")";
    }
}
