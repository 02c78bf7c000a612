using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using Distcache.Hosting;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Apps.Test.Load;

/// <summary>
/// One benchmark connection: keeps <c>-pipeline</c> requests in flight with a single loop that reads whatever
/// responses have arrived, records them, writes as many new requests as were answered, and flushes once. Requests
/// are encoded straight into the connection's output pipe and responses decoded straight from its input pipe;
/// the in-flight requests live in fixed ring arrays, so the steady state allocates nothing.
/// </summary>
internal sealed class LoadConnection : IAsyncDisposable
{
    // Stopwatch ticks are nanoseconds on Linux; elsewhere they are scaled once per sample.
    private static readonly double NanosecondsPerTick = 1e9 / Stopwatch.Frequency;
    private static readonly bool TicksAreNanoseconds = Stopwatch.Frequency == 1_000_000_000;

    // Responses are read in large chunks, with no zero-byte read first: NetworkConnection's own pipe suits a server
    // holding thousands of mostly idle connections, but a benchmark connection is never idle, and every system call
    // saved here is CPU left for the server being measured (see docs/tools.md for the figures).
    // On Linux the persistent connections go on the native transport instead (one recv per read that finds data, no
    // recv that finds none, and none of the runtime's socket queue), unless DISTCACHE_NATIVE_TRANSPORT=0. -short
    // connections do not: they are timed from before their connect, as a short-lived client of any kind would be,
    // and the runtime's connect is the quicker of the two there (fewer system calls per connection: 480-570 against
    // 510-650 us at the median through loopback TCP in alternating rounds).
    private static readonly StreamPipeReaderOptions ReaderOptions = new(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true);
    private static readonly StreamPipeWriterOptions WriterOptions = new(minimumBufferSize: 16 * 1024, leaveOpen: true);
    private static readonly ConnectionOptions ConnectOptions = new() { NativeTransport = OperatingSystem.IsLinux() && SocketEngine.NativeTransportWanted() };

    private readonly LoadSettings _settings;
    private NetworkConnection _connection;
    private PipeReader _input;
    private PipeWriter _output;
    private readonly KeySpace _keys;
    private readonly OperationMix _mix;
    private readonly LoadControl _control;
    private readonly uint _sessionTimeout;
    private readonly MessageDecoder _decoder = new(MessageDirection.Responses);
    private readonly Operation[] _operations;
    private readonly int[] _keysInFlight;
    private readonly long[] _sentAt;
    private readonly bool[] _measured;
    private readonly long _interval;
    private FastRandom _random;
    private long _nextSlot;
    private int _head;
    private int _inFlight;
    private uint _nextUid = 1;

    private LoadConnection(NetworkConnection connection, LoadSettings settings, KeySpace keys, LoadControl control, ulong seed)
    {
        _settings = settings;
        (_connection, _input, _output) = Open(connection, ConnectOptions.NativeTransport);
        _keys = keys;
        _mix = settings.Mix;
        _control = control;
        _sessionTimeout = settings.SessionTimeoutMilliseconds;
        _operations = new Operation[settings.Pipeline];
        _keysInFlight = new int[settings.Pipeline];
        _sentAt = new long[settings.Pipeline];
        _measured = new bool[settings.Pipeline];
        _random = new FastRandom(seed);

        // With -rate each connection sends one request every clients/rate seconds: an open loop, so a slow answer
        // does not slow the offered load (up to -pipeline requests may wait for answers).
        _interval = settings.Rate is int rate ? Math.Max(1, (long)(Stopwatch.Frequency * (double)settings.Clients / rate)) : 0;
    }

    public LoadStatistics Statistics { get; } = new();

    public static async Task<LoadConnection> ConnectAsync(LoadSettings settings, KeySpace keys, LoadControl control, ulong seed, CancellationToken cancellationToken)
    {
        NetworkConnection connection = await NetworkConnection.ConnectAsync(settings.Target, ConnectOptions, cancellationToken).ConfigureAwait(false);
        return new LoadConnection(connection, settings, keys, control, seed);
    }

    /// <summary>Runs until no more requests may be sent and every one sent has been answered.</summary>
    /// <param name="prefill">Send ADDs of the keys <see cref="LoadControl.NextPrefillKey"/> hands out, instead of the mix.</param>
    /// <returns>False if the connection failed (the reason has been reported).</returns>
    public async Task<bool> RunAsync(bool prefill)
    {
        try
        {
            if (!prefill && _settings.ShortConnections)
            {
                return await RunShortAsync().ConfigureAwait(false);
            }

            PipeReader input = _input;
            PipeWriter output = _output;
            bool paced = _interval > 0 && !prefill;
            if (paced)
            {
                StartPacing();
            }

            if (Issue(output, prefill, Stopwatch.GetTimestamp()))
            {
                await output.FlushAsync().ConfigureAwait(false);
            }

            while (_inFlight > 0 || (paced && !_control.StopSending))
            {
                if (_inFlight == 0)
                {
                    // Nothing to read until the next request falls due. Timers tick in milliseconds, so a few due
                    // requests may go out together; each is timed from when it is sent.
                    await WaitForSlotAsync().ConfigureAwait(false);
                    if (Issue(output, prefill, Stopwatch.GetTimestamp()))
                    {
                        await output.FlushAsync().ConfigureAwait(false);
                    }

                    continue;
                }

                ReadResult read = await input.ReadAsync().ConfigureAwait(false);
                long now = Stopwatch.GetTimestamp();
                ReadOnlySequence<byte> buffer = read.Buffer;
                SequencePosition consumed = Receive(buffer, prefill, now, out string? failure);
                input.AdvanceTo(consumed, buffer.End);
                if (failure is not null)
                {
                    return Fail(failure);
                }

                if (Issue(output, prefill, now))
                {
                    await output.FlushAsync().ConfigureAwait(false);
                }

                if (read.IsCompleted && _inFlight > 0)
                {
                    return Fail($"the server closed the connection with {_inFlight} requests unanswered");
                }

                if (read.IsCanceled)
                {
                    return false;
                }
            }

            return true;
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            return Fail($"connection lost: {e.Message}");
        }
    }

    /// <summary>The measured phase of -short: for each request, connect, send, read the answer, close.</summary>
    private async Task<bool> RunShortAsync()
    {
        if (_interval > 0)
        {
            StartPacing();
        }

        while (!_control.StopSending)
        {
            if (_interval > 0)
            {
                await WaitForSlotAsync().ConfigureAwait(false);
            }

            // The clock starts before the connect: a short-lived client pays for it on every request.
            long start = Stopwatch.GetTimestamp();
            await CloseAsync().ConfigureAwait(false);
            (_connection, _input, _output) = Open(await NetworkConnection.ConnectAsync(_settings.Target).ConfigureAwait(false), native: false);
            _nextUid = 1;
            if (!Issue(_output, prefill: false, start))
            {
                break;
            }

            await _output.FlushAsync().ConfigureAwait(false);
            while (_inFlight > 0)
            {
                ReadResult read = await _input.ReadAsync().ConfigureAwait(false);
                SequencePosition consumed = Receive(read.Buffer, prefill: false, Stopwatch.GetTimestamp(), out string? failure);
                _input.AdvanceTo(consumed, read.Buffer.End);
                if (failure is not null)
                {
                    return Fail(failure);
                }

                if (read.IsCompleted && _inFlight > 0)
                {
                    return Fail("the server closed the connection before answering");
                }
            }
        }

        return true;
    }

    private static (NetworkConnection Connection, PipeReader Input, PipeWriter Output) Open(NetworkConnection connection, bool native) =>
        native
            ? (connection, connection.Input, connection.Output)
            : (connection, PipeReader.Create(connection.Stream, ReaderOptions), PipeWriter.Create(connection.Stream, WriterOptions));

    // Staggered starts, so the connections' requests do not all fall due together.
    private void StartPacing() => _nextSlot = Stopwatch.GetTimestamp() + _random.Next((int)Math.Min(_interval, int.MaxValue));

    /// <summary>Waits until the next request falls due under -rate.</summary>
    private async ValueTask WaitForSlotAsync()
    {
        // Rounded up to whole milliseconds: a delay that rounds to zero would spin, taking the CPU the server being
        // measured needs. A timer may still fire up to a millisecond early (it counts whole milliseconds), hence the loop.
        long wait;
        while ((wait = _nextSlot - Stopwatch.GetTimestamp()) > 0)
        {
            await Task.Delay((int)Math.Ceiling(wait * 1000.0 / Stopwatch.Frequency)).ConfigureAwait(false);
        }
    }

    private async ValueTask CloseAsync()
    {
        await _input.CompleteAsync().ConfigureAwait(false);
        await _output.CompleteAsync().ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
    }

    public ValueTask DisposeAsync() => CloseAsync();

    private bool Fail(string reason)
    {
        Statistics.ConnectionErrors++;
        _control.ReportError(reason);
        _connection.Abort();
        return false;
    }

    /// <summary>Writes requests until the pipeline is full or sending must stop; true if any were written.</summary>
    private bool Issue(PipeWriter output, bool prefill, long now)
    {
        bool wrote = false;
        int capacity = _operations.Length;
        while (_inFlight < capacity)
        {
            int key;
            Operation operation;
            bool measured = false;
            if (prefill)
            {
                key = _control.StopSending ? -1 : _control.NextPrefillKey();
                if (key < 0)
                {
                    break;
                }

                operation = Operation.Add;
            }
            else
            {
                if (_interval > 0 && now < _nextSlot)
                {
                    break;
                }

                if (!_control.TryTake(now, out measured))
                {
                    break;
                }

                _nextSlot += _interval;

                operation = _mix.Pick(_random.Next(_mix.Total));
                key = _random.Next(_keys.Count);
            }

            if (operation == Operation.Add)
            {
                Requests.WriteAdd(output, _nextUid, _sessionTimeout, _keys.Id(key), _keys.Data(key));
            }
            else
            {
                Requests.WriteIdRequest(output, _nextUid, operation, _keys.Id(key));
            }

            int slot = (_head + _inFlight) % capacity;
            _operations[slot] = operation;
            _keysInFlight[slot] = key;
            _sentAt[slot] = now;
            _measured[slot] = measured;
            _inFlight++;
            _nextUid++;
            wrote = true;
        }

        return wrote;
    }

    /// <summary>Decodes and records every complete response in <paramref name="buffer"/>.</summary>
    private SequencePosition Receive(ReadOnlySequence<byte> buffer, bool prefill, long now, out string? failure)
    {
        failure = null;
        var reader = new SequenceReader<byte>(buffer);
        long measureEnd = _control.MeasureEnd;
        LoadStatistics stats = Statistics;
        while (true)
        {
            DecodeStatus status = _decoder.TryDecode(ref reader, out Message response, out ProtocolViolation violation);
            if (status == DecodeStatus.NeedMoreData)
            {
                return reader.Position;
            }

            if (status == DecodeStatus.Violation)
            {
                failure = "protocol violation from the server: " + violation.Describe();
                return reader.Position;
            }

            if (_inFlight == 0)
            {
                failure = "protocol violation from the server: " + ProtocolViolationKind.UnsolicitedResponse.Describe();
                return reader.Position;
            }

            // Responses come in request order, so the oldest request in flight is the one answered.
            int slot = _head;
            Operation operation = _operations[slot];
            uint expectedUid = _nextUid - (uint)_inFlight;
            if (response.RequestUid != expectedUid || response.Operation != operation)
            {
                failure = $"protocol violation from the server: response uid {response.RequestUid} {response.Operation.ToWireName()} answers uid {expectedUid} {operation.ToWireName()}";
                return reader.Position;
            }

            _head = slot + 1 == _operations.Length ? 0 : slot + 1;
            _inFlight--;
            stats.Completed++;

            Outcome outcome = Classify(operation, response.Payload.Span, _keysInFlight[slot]);
            if (outcome == Outcome.Error)
            {
                stats.Errors[(int)operation]++;
                _control.ReportError(DescribeError(operation, response.Payload.Span));
            }

            long sent = _sentAt[slot];
            if (prefill || !_measured[slot] || now > measureEnd)
            {
                continue;
            }

            long elapsed = now - sent;
            stats.Latency.Record(TicksAreNanoseconds ? elapsed : (long)(elapsed * NanosecondsPerTick));
            stats.Count[(int)operation]++;
            if (outcome == Outcome.Hit)
            {
                stats.Hits[(int)operation]++;
            }
            else if (outcome == Outcome.Miss)
            {
                stats.Misses[(int)operation]++;
            }
        }
    }

    private Outcome Classify(Operation operation, ReadOnlySpan<byte> payload, int key)
    {
        if (payload.Length == 1)
        {
            var status = (StatusCode)payload[0];
            return (operation, status) switch
            {
                (_, StatusCode.Ok) when operation != Operation.Get => Outcome.Hit,
                (Operation.Add, StatusCode.AddErrMatchingSession) => Outcome.Miss,
                (Operation.Get or Operation.Remove or Operation.Have, StatusCode.NotOk) => Outcome.Miss,
                _ => Outcome.Error,
            };
        }

        // Every copy of a key carries the same data, so a GET hit of another length is a wrong answer.
        return operation == Operation.Get && payload.Length == _keys.DataLength(key) ? Outcome.Hit : Outcome.Error;
    }

    private static string DescribeError(Operation operation, ReadOnlySpan<byte> payload) => payload.Length switch
    {
        0 => $"{operation.ToWireName()} answered with an empty response (a proxy without its server?)",
        1 => $"{operation.ToWireName()} answered with status {((StatusCode)payload[0]).ToWireName()}",
        _ => $"{operation.ToWireName()} answered with {payload.Length} bytes of data{(operation == Operation.Get ? " of the wrong length" : string.Empty)}",
    };

    private enum Outcome
    {
        Hit,
        Miss,
        Error,
    }
}
