using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Distcache.Networking.NativeMethods;

namespace Distcache.Networking;

/// <summary>
/// A listener's accept loop on the native transport's event loops: every loop waits for the listening socket
/// along with its connections, accepts when it is readable, and serves each new connection on its own thread.
/// </summary>
/// <remarks>
/// <para>Why: with the runtime's accept, a short-lived connection crossed three threads before its first byte was
/// read (the runtime's epoll thread, a thread-pool thread for the accept's continuation, then the event loop that
/// the connection was registered with), and on a busy machine each hand-over is a context switch, tens of
/// microseconds. Here the thread that accepts a connection registers it with its own loop and reads its first
/// request at once, usually already there: connect, request, answer and close take no hand-over at all, as in
/// memcached's and Redis's own loops.</para>
/// <para>The listening socket is registered with every loop, level-triggered and <c>EPOLLEXCLUSIVE</c>, so that the
/// kernel wakes one loop (not all) per arrival and arrivals spread over the loops that are idle. A woken loop accepts
/// until the backlog is empty (<c>EAGAIN</c>) or it has taken <see cref="MaxAcceptsPerWake"/>, so that a flood of
/// connections cannot keep it from its established ones; the level-triggered registration wakes it again for the
/// rest. A kernel older than Linux 4.5 ignores <c>EPOLLEXCLUSIVE</c> and wakes every loop: still correct, as the
/// losers find the backlog empty (<c>EAGAIN</c>); a kernel that refuses the flag gets the socket on one loop.</para>
/// <para>When accepting fails for want of a resource (out of descriptors, <c>EMFILE</c>, or memory), the socket
/// stays readable, so a level-triggered registration would spin: the failure is reported, the socket is taken out
/// of every loop, and put back after the retry delay, as the runtime path's loop pauses.</para>
/// </remarks>
internal sealed class NativeAcceptor : IDisposable
{
    private const int MaxAcceptsPerWake = 64;

    // struct sockaddr_storage.
    private const int AddressCapacity = 128;

    private readonly NetworkListener _listener;
    private readonly SafeHandle _handle;
    private readonly nint _descriptor;
    private readonly Action<NetworkConnection> _accepted;
    private readonly Action<Exception> _acceptFailed;
    private readonly TimeSpan _retryDelay;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _gate = new();
    private readonly List<Slot> _slots = [];
    private readonly Timer _resume;
    private CancellationTokenRegistration _cancellation;
    private uint _events;
    private bool _paused;
    private volatile bool _stopping;

    // Loop threads inside AcceptSome: Stopped completes only once none is, so that no connection is handed over
    // after the caller was told the loop has ended.
    private int _busy;

    private NativeAcceptor(NetworkListener listener, SafeHandle handle, Action<NetworkConnection> accepted, Action<Exception> acceptFailed, TimeSpan retryDelay)
    {
        _listener = listener;
        _handle = handle;
        _descriptor = handle.DangerousGetHandle();
        _accepted = accepted;
        _acceptFailed = acceptFailed;
        _retryDelay = retryDelay;
        _resume = new Timer(static state => ((NativeAcceptor)state!).Resume(), this, Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>A task that completes once the acceptor has stopped (<see cref="Stop"/>, or its token) and no
    /// connection is being handed over any more.</summary>
    public Task Stopped => _stopped.Task;

    /// <summary>
    /// Starts accepting on the event loops; null, having started nothing, when the loops cannot take the listening
    /// socket (the caller then accepts with the runtime's sockets).
    /// </summary>
    public static NativeAcceptor? TryStart(NetworkListener listener, SafeHandle handle, Action<NetworkConnection> accepted, Action<Exception> acceptFailed, TimeSpan retryDelay, CancellationToken cancellationToken)
    {
        var acceptor = new NativeAcceptor(listener, handle, accepted, acceptFailed, retryDelay);
        if (!acceptor.Register())
        {
            acceptor._resume.Dispose();
            return null;
        }

        acceptor._cancellation = cancellationToken.Register(static state => ((NativeAcceptor)state!).Stop(), acceptor);
        return acceptor;
    }

    /// <inheritdoc cref="Stop"/>
    public void Dispose() => Stop();

    /// <summary>Stops accepting: the listening socket leaves every loop. Connections already accepted are not affected.</summary>
    public void Stop()
    {
        lock (_gate)
        {
            if (_stopping)
            {
                return;
            }

            _stopping = true;
            if (!_paused)
            {
                UnregisterAll();
            }
        }

        _resume.Dispose();
        _cancellation.Dispose();

        // A full fence between the write of _stopping and the read of _busy, paired with AcceptSome's increment
        // before its read of _stopping: either this sees the loop thread busy (and the thread completes Stopped on
        // its way out), or the thread sees _stopping and hands nothing over.
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _busy) == 0)
        {
            _stopped.TrySetResult();
        }
    }

    // Registers the listening socket with every loop; false if no loop would take it.
    private bool Register()
    {
        // Several loops may wake for one arrival, and all but one then find the backlog empty: accept4 must say so
        // (EAGAIN) rather than block a loop's thread until the next connection. The runtime, which believes the socket
        // blocking, makes it non-blocking itself at its first asynchronous accept anyway.
        if (SetNonBlocking(_descriptor, on: true) != 0)
        {
            return false;
        }

        IReadOnlyList<EventLoop> loops = EventLoop.All;
        _events = EpollIn | EpollExclusive;
        try
        {
            foreach (EventLoop loop in loops)
            {
                _slots.Add(new Slot(this, loop));
            }

            RegisterAll();
            return true;
        }
        catch (NetworkException)
        {
            UnregisterAll();
        }

        // A kernel without EPOLLEXCLUSIVE: one loop, which then accepts for all.
        _slots.RemoveRange(1, _slots.Count - 1);
        _events = EpollIn;
        try
        {
            RegisterAll();
            return true;
        }
        catch (NetworkException)
        {
            UnregisterAll();
            return false;
        }
    }

    private void RegisterAll()
    {
        foreach (Slot slot in _slots)
        {
            slot.Registration = slot.Loop.Register(slot, _descriptor, _events);
        }
    }

    private void UnregisterAll()
    {
        foreach (Slot slot in _slots)
        {
            if (slot.Registration != 0)
            {
                slot.Loop.Unregister(slot.Registration, _descriptor);
                slot.Registration = 0;
            }
        }
    }

    // A loop's thread: the listening socket is readable.
    private void AcceptSome()
    {
        Interlocked.Increment(ref _busy);
        try
        {
            AcceptBatch();
        }
        finally
        {
            if (Interlocked.Decrement(ref _busy) == 0 && _stopping)
            {
                _stopped.TrySetResult();
            }
        }
    }

    private void AcceptBatch()
    {
        Span<byte> address = stackalloc byte[AddressCapacity];
        for (int i = 0; i < MaxAcceptsPerWake && !_stopping; i++)
        {
            int length = AddressCapacity;
            int descriptor;
            int errno = 0;
            bool added = false;
            try
            {
                // The reference keeps the listener's close from freeing the number while accept4 uses it.
                _handle.DangerousAddRef(ref added);
                descriptor = Accept(_descriptor, ref address[0], ref length, SockNonBlock | SockCloexec);
                if (descriptor < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                }
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            finally
            {
                if (added)
                {
                    _handle.DangerousRelease();
                }
            }

            if (descriptor < 0)
            {
                if (errno == EAGAIN)
                {
                    return;
                }

                if (errno == EINTR || IsPeerProblem(errno))
                {
                    // Linux reports a connection that failed in the backlog as accept's own error; the next one
                    // is unaffected.
                    continue;
                }

                Pause(errno);
                return;
            }

            NetworkConnection? connection = _listener.Admit(new NativeSocketHandle(descriptor), address[..Math.Min(length, AddressCapacity)]);
            if (connection is null)
            {
                continue;
            }

            if (_stopping)
            {
                // Accepted just as the loop was stopped: the caller no longer expects connections.
                connection.Abort();
                _ = connection.DisposeAsync().AsTask();
                return;
            }

            NetworkListener.HandOver(connection, _accepted, _acceptFailed);
        }
    }

    // accept(2): "Linux accept() passes already-pending network errors on the new socket as an error code from
    // accept()": the peer's problem, not the listener's.
    private static bool IsPeerProblem(int errno) => errno is 103 /* ECONNABORTED */ or 71 /* EPROTO */ or 92 /* ENOPROTOOPT */
        or 100 /* ENETDOWN */ or 101 /* ENETUNREACH */ or 112 /* EHOSTDOWN */ or 113 /* EHOSTUNREACH */ or 64 /* ENONET */
        or 95 /* EOPNOTSUPP */ or 110 /* ETIMEDOUT */ or 104 /* ECONNRESET */ or 1 /* EPERM: a firewall rule */
        or 93 /* EPROTONOSUPPORT */ or 94 /* ESOCKTNOSUPPORT */;

    private void Pause(int errno)
    {
        lock (_gate)
        {
            if (_stopping || _paused)
            {
                return;
            }

            _paused = true;
            UnregisterAll();
            _resume.Change(_retryDelay, Timeout.InfiniteTimeSpan);
        }

        _acceptFailed(new NetworkException(
            $"cannot accept on {_listener.Address}: {Describe(errno)}",
            _listener.Address,
            errno is EMFILE or ENFILE ? SocketError.TooManyOpenSockets : ToSocketError(errno),
            null));
    }

    private void Resume()
    {
        NetworkException failure;
        lock (_gate)
        {
            if (_stopping || !_paused)
            {
                return;
            }

            _paused = false;
            try
            {
                RegisterAll();
                return;
            }
            catch (NetworkException e)
            {
                // Out of memory for the registration too: stay paused and try again later.
                UnregisterAll();
                _paused = true;
                _resume.Change(_retryDelay, Timeout.InfiniteTimeSpan);
                failure = e;
            }
        }

        _acceptFailed(failure);
    }

    // The listening socket's registration with one loop.
    private sealed class Slot(NativeAcceptor owner, EventLoop loop) : EventLoop.ITarget
    {
        public EventLoop Loop { get; } = loop;

        // 0 while not registered.
        public long Registration { get; set; }

        public void OnEvents(uint events)
        {
            try
            {
                owner.AcceptSome();
            }
#pragma warning disable CA1031 // The loop's thread serves every connection of the process: nothing may end it.
            catch (Exception)
#pragma warning restore CA1031
            {
                // Only a failing acceptFailed callback of Pause's gets here (HandOver guards its own).
            }
        }
    }
}
