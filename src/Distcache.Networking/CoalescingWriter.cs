using System.IO.Pipelines;

namespace Distcache.Networking;

/// <summary>What a <see cref="CoalescingWriter"/> tells the connection or link that owns it.</summary>
public interface ICoalescingWriterOwner
{
    /// <summary>A batch of <paramref name="bytes"/> bytes has been handed to the transport. Called outside the gate.</summary>
    /// <param name="bytes">The batch's size.</param>
    void OnWritten(int bytes);

    /// <summary>
    /// Writing failed: the transport was closed under the writer (<paramref name="exception"/> null) or threw. Called
    /// outside the gate; the owner closes the writer (<see cref="CoalescingWriter.Close"/>) and gives up the connection.
    /// </summary>
    /// <param name="exception">What was thrown, or null when the transport reported itself closed.</param>
    void OnWriteFailed(Exception? exception);

    /// <summary>The writer has stopped writing: nothing was staged, or it was closed. Called outside the gate.</summary>
    void OnWriterIdle();
}

/// <summary>
/// The single writer of one connection: producers on any thread stage bytes under the owner's lock, and whoever
/// finds no write under way sends everything staged, batch after batch, so that what many producers staged during
/// one write goes out in the next, in one system call.
/// </summary>
/// <remarks>
/// <para>
/// The first write runs on the thread that staged, as far as the transport takes it without waiting: an
/// uncontended message reaches the wire without waking another thread. After <see cref="MaxInlineBatches"/>
/// batches in a row the writer moves to the thread pool, so the producer that happened to start it is not kept
/// writing for everyone. On a writer that many producers share (a link that many connections or callers stage
/// into), when the last run found bytes staged during its own writes, the next run starts on the thread pool at
/// once: starting a little later, it finds more to send in one write, which under load is worth more than the
/// wake-up it costs. A writer with one producer (a proxy's local connection, answered by its links' readers)
/// always starts on the producer's thread: a hop there would only add latency. Bytes staged from a connection whose transport dispatches
/// events in batches (the native event loop; see <see cref="NetworkConnection.TryDeferToEndOfBatch"/>) are written
/// at the end of that batch instead, so everything those events stage shares one write without any other thread.
/// </para>
/// <para>
/// The gate is the owner's lock, so that staging can be one step with the owner's own bookkeeping (a link queues
/// a request in flight and stages its bytes together, which keeps the two in the same order). The writer takes
/// the gate only to swap buffers and to hand back its claim; it never holds it across I/O, and calls its owner
/// outside it.
/// </para>
/// </remarks>
public sealed class CoalescingWriter : IThreadPoolWorkItem
{
    /// <summary>How many batches one run sends on the thread that started it before moving to the thread pool.</summary>
    public const int MaxInlineBatches = 4;

    private readonly PipeWriter _output;
    private readonly Lock _gate;
    private readonly ICoalescingWriterOwner _owner;
    private readonly bool _shared;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PooledBuffer _staging = new();
    private PooledBuffer _writing = new();

    // Under the gate. _busy: a run is sending (claimed by whoever finds none, given back in the locked step that
    // finds nothing staged), so bytes staged meanwhile are its to send.
    private bool _busy;
    private bool _contended;
    private bool _closed;

    /// <summary>Creates the writer of <paramref name="output"/>.</summary>
    /// <param name="output">Where the bytes go.</param>
    /// <param name="gate">The owner's lock, which guards <see cref="Staging"/>.</param>
    /// <param name="owner">Told of each batch written, of failure and of the writer going idle.</param>
    /// <param name="shared">Whether many producers stage into it (see the remarks).</param>
    public CoalescingWriter(PipeWriter output, Lock gate, ICoalescingWriterOwner owner, bool shared)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(owner);
        _output = output;
        _gate = gate ?? throw new ArgumentNullException(nameof(gate));
        _owner = owner;
        _shared = shared;
    }

    /// <summary>Where producers append the bytes to send. Only under the gate.</summary>
    public PooledBuffer Staging => _staging;

    /// <summary>True while a run is sending. Only under the gate.</summary>
    public bool IsBusy => _busy;

    /// <summary>True once <see cref="Close"/> has been called. Only under the gate.</summary>
    public bool IsClosed => _closed;

    /// <summary>Completes once the writer is closed and no run is sending: nothing more will be written.</summary>
    public Task Stopped => _stopped.Task;

    /// <summary>
    /// Sends what is staged, unless a run is already under way (which then sends it too) or nothing is. Call it
    /// outside the gate, after staging.
    /// </summary>
    /// <param name="stagedFrom">
    /// The connection whose read the caller is handling, when the bytes come from one (a proxy's local connection
    /// staging requests into a server link): on a transport that dispatches events in batches, the write then waits
    /// for the end of the batch and takes what the batch's other events staged too.
    /// </param>
    public void Flush(NetworkConnection? stagedFrom = null)
    {
        bool idle;
        lock (_gate)
        {
            if (_busy)
            {
                return;
            }

            idle = _closed || _staging.Length == 0;
            if (!idle)
            {
                _busy = true;
                if (stagedFrom is not null && stagedFrom.TryDeferToEndOfBatch(this))
                {
                    return;
                }

                if (_contended)
                {
                    ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
                    return;
                }
            }
        }

        if (idle)
        {
            _owner.OnWriterIdle();
        }
        else
        {
            _ = RunAsync();
        }
    }

    /// <summary>
    /// Closes the writer: what is staged is dropped, and nothing is written after the batch under way. Call it
    /// under the gate; <see cref="Stopped"/> completes when the run under way, if any, has returned.
    /// </summary>
    public void Close()
    {
        _closed = true;
        _staging.Reset();
        if (!_busy)
        {
            _stopped.TrySetResult();
        }
    }

    /// <summary>Starts a run queued on the thread pool or at the end of an event loop's batch.</summary>
    void IThreadPoolWorkItem.Execute() => _ = RunAsync();

    private async Task RunAsync()
    {
        bool released = false;
        try
        {
            int batches = 0;
            while (true)
            {
                PooledBuffer batch;
                lock (_gate)
                {
                    if (_closed || _staging.Length == 0)
                    {
                        // More than one batch means bytes were staged while this run was writing.
                        _contended = _shared && batches > 1;
                        Release();
                        released = true;
                        break;
                    }

                    (_staging, _writing) = (_writing, _staging);
                    batch = _writing;
                }

                if (++batches % MaxInlineBatches == 0)
                {
                    await Task.Yield();
                }

                FlushResult flushed;
                int length = batch.Length;
                try
                {
                    flushed = await _output.WriteAsync(batch.WrittenMemory).ConfigureAwait(false);
                }
                finally
                {
                    batch.Reset();
                }

                _owner.OnWritten(length);
                if (flushed.IsCompleted || flushed.IsCanceled)
                {
                    _owner.OnWriteFailed(null);
                }
            }
        }
#pragma warning disable CA1031 // Whatever the transport throws costs this connection only; the owner classifies it.
        catch (Exception e)
#pragma warning restore CA1031
        {
            _owner.OnWriteFailed(e);
        }
        finally
        {
            if (!released)
            {
                lock (_gate)
                {
                    Release();
                }
            }
        }

        _owner.OnWriterIdle();
    }

    // Under the gate.
    private void Release()
    {
        _busy = false;
        if (_closed)
        {
            _stopped.TrySetResult();
        }
    }
}
