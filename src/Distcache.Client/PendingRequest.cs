using System.Buffers;
using System.Diagnostics;
using System.Threading.Tasks.Sources;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Client;

/// <summary>
/// One request from the moment a caller sends it until that caller has read its answer: the result box that a
/// sync caller waits on and an async caller awaits (it is the <see cref="IValueTaskSource"/> behind the
/// <see cref="ValueTask"/>). Instances are pooled, so steady-state requests allocate nothing.
/// </summary>
/// <remarks>
/// <para><b>Who completes it.</b> Exactly one of these wins, by claiming the completed bit of <see cref="_state"/>:
/// the link's reader (a response), the link's shutdown (the connection dropped), the operation timeout, or the
/// caller's cancellation token. The winner writes the result fields and then publishes; losers do nothing. A
/// response that arrives after the caller gave up is therefore dropped here, and its uid stays reserved in the
/// link's in-flight table until then.</para>
/// <para><b>When it is recycled.</b> Two references are held from <see cref="Begin"/>: the caller's (dropped once it
/// has read the result) and the link's (dropped once the uid has left the in-flight table, when the response
/// arrived or the link closed). The object returns to the pool only when both are gone, so a late response can
/// never land in a recycled request.</para>
/// <para><b>Stale timers.</b> A pooled timer can fire late, for a use that has already ended. <see cref="_state"/>
/// carries a generation number next to the completed bit, and the timer claims only the generation it read, so a
/// stale firing cannot complete the next use.</para>
/// </remarks>
internal sealed class PendingRequest : IValueTaskSource
{
    private readonly PendingRequestPool _pool;

    // Sync callers wait with Monitor.Wait, which System.Threading.Lock does not offer.
    private readonly object _gate = new();

    private ManualResetValueTaskSourceCore<bool> _core;

    // (generation << 1) | completed.
    private long _state;
    private int _references;
    private bool _isSync;
    private bool _signaled;
    private Timer? _timer;
    private long _deadline = long.MaxValue;
    private CancellationTokenRegistration _cancellation;
    private int _timeoutMilliseconds;

    public PendingRequest(PendingRequestPool pool)
    {
        _pool = pool;

        // The reader loop completes requests; their continuations must not run on it and stall every other response.
        _core.RunContinuationsAsynchronously = true;
    }

    /// <summary>The operation sent.</summary>
    public Operation Operation { get; private set; }

    /// <summary>The uid the link gave the request; valid once sent.</summary>
    public uint Uid { get; private set; }

    /// <summary>Where the request went, for messages.</summary>
    public Address? Address { get; private set; }

    /// <summary>The link that carries the request; null until sent.</summary>
    public Link? Link { get; private set; }

    /// <summary>When the request was handed to the link (<see cref="Stopwatch"/> ticks).</summary>
    public long SentTimestamp { get; private set; }

    /// <summary>How the response payload read: empty, a status byte, or data.</summary>
    public ResponseKind Kind { get; private set; }

    /// <summary>The status byte, when <see cref="Kind"/> is <see cref="ResponseKind.Status"/>.</summary>
    public byte Status { get; private set; }

    /// <summary>The length of the data in <see cref="Buffer"/>.</summary>
    public int Length { get; private set; }

    /// <summary>A pooled copy of the data, when <see cref="Kind"/> is <see cref="ResponseKind.Data"/>; returned to the
    /// pool when the caller ends unless it took it with <see cref="TakeBuffer"/>.</summary>
    public byte[]? Buffer { get; private set; }

    /// <summary>Why the request failed; null if it got a response.</summary>
    public Exception? Error { get; private set; }

    /// <summary>Readies a pooled request for one use.</summary>
    public void Begin(Operation operation, bool isSync, Address address, int timeoutMilliseconds)
    {
        _core.Reset();
        Operation = operation;
        Address = address;
        Uid = 0;
        Link = null;
        SentTimestamp = 0;
        Kind = default;
        Status = 0;
        Length = 0;
        Buffer = null;
        Error = null;
        _isSync = isSync;
        _signaled = false;
        _timeoutMilliseconds = timeoutMilliseconds;
        Volatile.Write(ref _deadline, long.MaxValue);
        _references = 2;

        // Last: a stale timer reads the state first, so it sees either the old (completed) generation or this one
        // with every field above already in place.
        Volatile.Write(ref _state, ((Volatile.Read(ref _state) >> 1) + 1) << 1);
    }

    /// <summary>Called by the link, under its in-flight lock, when it has given the request a uid.</summary>
    public void OnSent(Link link, uint uid, long timestamp)
    {
        Link = link;
        Uid = uid;
        SentTimestamp = timestamp;
    }

    /// <summary>The awaitable for an async caller.</summary>
    public ValueTask AsValueTask() => new(this, _core.Version);

    /// <summary>Starts the operation timeout and watches the caller's token (async callers).</summary>
    public void ArmAsync(int timeoutMilliseconds, CancellationToken cancellationToken)
    {
        long deadline = Stopwatch.GetTimestamp() + (timeoutMilliseconds * Stopwatch.Frequency / 1000);
        Volatile.Write(ref _deadline, deadline);
        (_timer ??= CreateTimer()).Change(timeoutMilliseconds, Timeout.Infinite);
        Watch(cancellationToken);
    }

    /// <summary>Watches the caller's token (sync callers time out in <see cref="Wait"/> itself).</summary>
    public void Watch(CancellationToken cancellationToken)
    {
        if (cancellationToken.CanBeCanceled)
        {
            // Unsafe: the callback needs no ExecutionContext, and capturing one would cost an allocation per call.
            _cancellation = cancellationToken.UnsafeRegister(static (state, token) => ((PendingRequest)state!).OnCanceled(token), this);
        }
    }

    /// <summary>Completes the request with a response payload, unless it was already completed. The link calls it
    /// holding its reference.</summary>
    /// <returns>False if the caller had already given up (the payload is dropped).</returns>
    public bool TryComplete(ReadOnlySpan<byte> payload)
    {
        if (!TryClaim())
        {
            return false;
        }

        switch (payload.Length)
        {
            case 0:
                Kind = ResponseKind.Empty;
                break;
            case 1:
                Kind = ResponseKind.Status;
                Status = payload[0];
                break;
            default:
                Kind = ResponseKind.Data;
                byte[] buffer = ArrayPool<byte>.Shared.Rent(payload.Length);
                payload.CopyTo(buffer);
                Buffer = buffer;
                Length = payload.Length;
                break;
        }

        ClientMetrics.Answered(Operation, payload, SentTimestamp, Address);
        Publish();
        return true;
    }

    /// <summary>Fails the request, unless it was already completed.</summary>
    public bool TryFail(Exception error)
    {
        if (!TryClaim())
        {
            return false;
        }

        Error = error;
        ClientMetrics.Failed(Operation, error, Address);
        Publish();
        return true;
    }

    /// <summary>Waits for the result on the calling thread, for up to the operation timeout given to
    /// <see cref="Begin"/>, and throws the request's error if it failed.</summary>
    public void Wait()
    {
        long start = Stopwatch.GetTimestamp();
        lock (_gate)
        {
            while (!_signaled)
            {
                long remaining = _timeoutMilliseconds - (long)Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                if (remaining <= 0)
                {
                    break;
                }

                Monitor.Wait(_gate, (int)remaining);
            }
        }

        if (!Volatile.Read(ref _signaled))
        {
            TimeOut(Volatile.Read(ref _state));

            // Whoever claimed the request (this thread or a racing response) publishes right after claiming, with
            // nothing in between that can block, so this wait is short.
            lock (_gate)
            {
                while (!_signaled)
                {
                    Monitor.Wait(_gate);
                }
            }
        }

        if (Error is { } error)
        {
            throw error;
        }
    }

    /// <summary>Hands the data buffer to the caller, who must return it to <see cref="ArrayPool{T}.Shared"/>.</summary>
    public byte[]? TakeBuffer()
    {
        byte[]? buffer = Buffer;
        Buffer = null;
        return buffer;
    }

    /// <summary>The caller is done: stops the timer and the token watch, and drops the caller's reference.</summary>
    public void EndCaller()
    {
        _timer?.Change(Timeout.Infinite, Timeout.Infinite);

        // Waits for a cancellation callback running on another thread, so none runs once the request is recycled.
        _cancellation.Dispose();
        _cancellation = default;
        if (TakeBuffer() is { } buffer)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        Release();
    }

    /// <summary>The link is done with the request (its uid has left the in-flight table).</summary>
    public void ReleaseLink() => Release();

    /// <summary>For a request that was never sent: drops both references.</summary>
    public void Abandon()
    {
        _ = TryClaim();
        Release();
        Release();
    }

    /// <summary>Discards a pooled timer (the pool is full or the owner is closing).</summary>
    public void DisposeTimer() => _timer?.Dispose();

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    private bool TryClaim()
    {
        long state = Volatile.Read(ref _state);
        return TryClaim(state);
    }

    private bool TryClaim(long state) =>
        (state & 1) == 0 && Interlocked.CompareExchange(ref _state, state | 1, state) == state;

    private void Publish()
    {
        if (_isSync)
        {
            lock (_gate)
            {
                _signaled = true;
                Monitor.PulseAll(_gate);
            }
        }
        else if (Error is { } error)
        {
            _core.SetException(error);
        }
        else
        {
            _core.SetResult(true);
        }
    }

    private void OnCanceled(CancellationToken token)
    {
        // The caller cannot have recycled the request: EndCaller disposes this registration first, which waits
        // for a running callback.
        _ = TryFail(new OperationCanceledException($"The distcache {Operation.ToWireName()} request to {Address} was canceled.", null, token));
    }

    private void OnTimer()
    {
        long state = Volatile.Read(ref _state);
        if ((state & 1) != 0)
        {
            return;
        }

        long remaining = Volatile.Read(ref _deadline) - Stopwatch.GetTimestamp();
        if (remaining > 0)
        {
            // Either a stale firing for an earlier use, or the timer woke a little early by the Stopwatch clock:
            // aim again at the deadline of the current use so that its timeout is never lost.
            if (Volatile.Read(ref _deadline) != long.MaxValue)
            {
                _timer?.Change((remaining * 1000 / Stopwatch.Frequency) + 1, Timeout.Infinite);
            }

            return;
        }

        TimeOut(state);
    }

    private void TimeOut(long state)
    {
        if (!TryClaim(state))
        {
            return;
        }

        // Read before publishing: once published, the caller may recycle the request at any moment.
        Link? link = Link;
        long sent = SentTimestamp;
        Error = new TimeoutException(
            $"The distcache {Operation.ToWireName()} request to {Address} got no response within {_timeoutMilliseconds} ms.");
        ClientMetrics.Failed(Operation, Error, Address);
        Publish();
        link?.OnRequestTimedOut(sent, _timeoutMilliseconds);
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            Link = null;
            Error = null;
            if (TakeBuffer() is { } buffer)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            _pool.Return(this);
        }
    }

    private Timer CreateTimer()
    {
        // The timer lives as long as this pooled object; without suppressing the flow it would keep the first
        // caller's ExecutionContext (and everything its AsyncLocals reference) alive for good.
        if (ExecutionContext.IsFlowSuppressed())
        {
            return new Timer(static s => ((PendingRequest)s!).OnTimer(), this, Timeout.Infinite, Timeout.Infinite);
        }

        using (ExecutionContext.SuppressFlow())
        {
            return new Timer(static s => ((PendingRequest)s!).OnTimer(), this, Timeout.Infinite, Timeout.Infinite);
        }
    }
}

/// <summary>A small bounded pool of <see cref="PendingRequest"/>s; beyond its capacity, extra ones are dropped.</summary>
internal sealed class PendingRequestPool
{
    private readonly Lock _lock = new();
    private readonly PendingRequest[] _items;
    private int _count;

    public PendingRequestPool(int capacity) => _items = new PendingRequest[capacity];

    public PendingRequest Rent()
    {
        lock (_lock)
        {
            if (_count > 0)
            {
                PendingRequest request = _items[--_count];
                _items[_count] = null!;
                return request;
            }
        }

        return new PendingRequest(this);
    }

    public void Return(PendingRequest request)
    {
        lock (_lock)
        {
            if (_count < _items.Length)
            {
                _items[_count++] = request;
                return;
            }
        }

        request.DisposeTimer();
    }
}
