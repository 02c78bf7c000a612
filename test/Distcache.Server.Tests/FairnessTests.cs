using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using Distcache.Protocol;
using Distcache.Storage;

namespace Distcache.Server.Tests;

/// <summary>One busy connection must not keep the others waiting.</summary>
public sealed class FairnessTests
{
    /// <summary>
    /// Regression: a client that keeps its socket full (pipelined 1 KB ADDs) had every read complete at once,
    /// so its connection answered batch after batch on one thread while the other connections' requests sat
    /// unread. Under 50 x 16 ADD load that gave p50 100 us but p99 85-125 ms and p99.9 260-370 ms. The loop now
    /// gives up its thread after a few batches that needed no waiting.
    /// </summary>
    [Fact]
    public async Task A_connection_whose_reads_never_wait_gives_way_to_the_others()
    {
        const int BusyRequests = 2000;
        var server = new DistcacheServer(new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 0 }));

        var busyRequests = new ArrayBufferWriter<byte>();
        for (uint uid = 1; uid <= BusyRequests; uid++)
        {
            Requests.WriteIdRequest(busyRequests, uid, Operation.Have, "busy"u8);
        }

        // Each read of the busy connection hands over one more request, at once: like a socket the client
        // refills as fast as it is drained. Its answers go to a pipe that never pushes back.
        var busyInput = new AlwaysReadyReader(busyRequests.WrittenMemory, ProtocolConstants.FrameHeaderSize + 4);
        var busyOutput = new Pipe(new PipeOptions(pauseWriterThreshold: 0, readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false));

        var quietInput = new Pipe(new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false));
        var quietOutput = new Pipe(new PipeOptions(pauseWriterThreshold: 0, readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false));
        Requests.WriteIdRequest(quietInput.Writer, 1, Operation.Have, "quiet"u8);
        await quietInput.Writer.FlushAsync();
        quietInput.Writer.Complete();

        // Both connections run on one thread, the busy one queued first: the quiet one is served only when the
        // busy one gives the thread up.
        using var thread = new SingleThreadScheduler();
        int busyReadsWhenQuietWasServed = -1;
        Task<Task<ProtocolViolation?>> busy = Task.Factory.StartNew(
            () => server.ServeAsync(new Duplex(busyInput, busyOutput.Writer), "busy"), CancellationToken.None, TaskCreationOptions.None, thread);
        Task<Task> quiet = Task.Factory.StartNew(
            async () =>
            {
                await server.ServeAsync(new Duplex(quietInput.Reader, quietOutput.Writer), "quiet");
                busyReadsWhenQuietWasServed = busyInput.Reads; // still on the one thread
            },
            CancellationToken.None,
            TaskCreationOptions.None,
            thread);

        await (await busy).WaitAsync(TimeSpan.FromSeconds(30));
        await (await quiet).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(BusyRequests + 1, busyInput.Reads); // every request, then the end of the stream
        Assert.InRange(busyReadsWhenQuietWasServed, 0, 50); // a few batches, not all 2000
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>A reader whose every read completes at once with <c>step</c> more bytes, until the end.</summary>
    private sealed class AlwaysReadyReader(ReadOnlyMemory<byte> data, int step) : PipeReader
    {
        private int _consumed;
        private int _available;
        private ReadOnlySequence<byte> _last;

        public int Reads { get; private set; }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) =>
            _consumed += (int)_last.Slice(0, consumed).Length;

        public override void CancelPendingRead()
        {
        }

        public override void Complete(Exception? exception = null)
        {
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            TryRead(out ReadResult result);
            return new ValueTask<ReadResult>(result);
        }

        public override bool TryRead(out ReadResult result)
        {
            Reads++;
            _available = Math.Min(_available + step, data.Length);
            _last = new ReadOnlySequence<byte>(data[_consumed.._available]);
            result = new ReadResult(_last, isCanceled: false, isCompleted: Reads > data.Length / step);
            return true;
        }
    }

    /// <summary>Runs tasks one at a time, in order, on one dedicated thread.</summary>
    private sealed class SingleThreadScheduler : TaskScheduler, IDisposable
    {
        private readonly BlockingCollection<Task> _queue = [];
        private readonly Thread _thread;

        public SingleThreadScheduler()
        {
            _thread = new Thread(() =>
            {
                foreach (Task task in _queue.GetConsumingEnumerable())
                {
                    TryExecuteTask(task);
                }
            })
            { IsBackground = true, Name = "single-thread scheduler" };
            _thread.Start();
        }

        public void Dispose()
        {
            _queue.CompleteAdding();
            _thread.Join(TimeSpan.FromSeconds(10));
            _queue.Dispose();
        }

        protected override void QueueTask(Task task) => _queue.Add(task);

        protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) => false;

        protected override IEnumerable<Task> GetScheduledTasks() => _queue.ToArray();
    }
}
