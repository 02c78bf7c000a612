using Distcache.Networking;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Client;

/// <summary>The flags of 1.5.1's <c>DC_CTX_new</c>, with their C values.</summary>
[Flags]
public enum DcContextFlags
{
    /// <summary>A fresh connection per operation: connect, send one request, read one response, close. Safe
    /// against anything, costs a connect per operation; 1.5.1's recommended mode towards a local proxy.</summary>
    None = 0,

    /// <summary>Keep one connection for all operations (<c>DC_CTX_FLAG_PERSISTENT</c>). Creating the context
    /// connects, and fails if it cannot, unless <see cref="PersistentLate"/> is also given.</summary>
    Persistent = 0x1,

    /// <summary>Accepted and ignored (<c>DC_CTX_FLAG_PERSISTENT_PIDCHECK</c>). 1.5.1 used it to notice that it was
    /// running in a child after <c>fork()</c>, where sharing the parent's connection would interleave two processes'
    /// messages; a .NET process does not fork its managed state, so there is nothing to check.</summary>
    PersistentPidCheck = 0x2,

    /// <summary>With <see cref="Persistent"/>: when an operation fails on a network error (including a timeout),
    /// reconnect and try it once more (<c>DC_CTX_FLAG_PERSISTENT_RETRY</c>).</summary>
    PersistentRetry = 0x4,

    /// <summary>With <see cref="Persistent"/>: connect on the first operation instead of when the context is created
    /// (<c>DC_CTX_FLAG_PERSISTENT_LATE</c>).</summary>
    PersistentLate = 0x8,
}

/// <summary>
/// The blocking client API of 1.5.1's <c>libdistcache</c> (<c>DC_CTX</c>), for code ported from C: results are
/// return codes, not exceptions, and a context carries one operation at a time. New code that is called from
/// many threads should share a <see cref="DistcacheClient"/> instead.
/// </summary>
/// <remarks>
/// <para>Results follow 1.5.1: an operation that fails for any reason (invalid argument, network error, timeout,
/// a proxy without a server, a protocol violation) returns false or -1 and leaves the cause in
/// <see cref="LastError"/>. Invalid arguments are refused before anything is sent, including ADD timeouts of
/// 500 ms or less, which 1.5.1's client refuses (it asserts) although the server would take them.</para>
/// <para>Unlike 1.5.1, a persistent context heals: after its connection breaks, the next operation reconnects
/// (1.5.1 kept the broken connection, so without <see cref="DcContextFlags.PersistentRetry"/> every later
/// operation failed). And it never aborts the process on a bad response.</para>
/// <para>Not thread-safe, like <c>DC_CTX</c>: a second operation started while one is running throws
/// <see cref="InvalidOperationException"/>.</para>
/// </remarks>
public sealed class DcContext : IDisposable, IAsyncDisposable
{
    /// <summary>1.5.1's <c>DC_MIN_TIMEOUT</c>: ADD timeouts of this many milliseconds or fewer are refused.</summary>
    public const uint MinAddTimeoutMilliseconds = 500;

    /// <summary>The shortest GET response 1.5.1's client accepts as session data; anything shorter is a miss.</summary>
    public const int MinGetResponseLength = 5;

    // Reason recorded on a per-operation connection closed after its one response; never reaches a caller.
    private static readonly DistcacheConnectionException ClosedAfterUse = new("The per-operation connection was closed after its response.");

    private readonly DistcacheClientOptions _options;
    private readonly ConnectionOptions _connectionOptions;
    private readonly int _timeoutMilliseconds;
    private readonly ILogger _logger;
    private readonly PendingRequestPool _pool = new(2);
    private readonly byte[] _lastId = new byte[ProtocolConstants.MaxSessionIdLength];
    private byte[] _received = [];
    private int _receivedLength;
    private int _lastIdLength;
    private Link? _link;
    private int _busy;
    private bool _disposed;

    private DcContext(DistcacheClientOptions options, DcContextFlags flags)
    {
        _options = options.Snapshot(nameof(options));
        Address = _options.Address!;
        Flags = flags;
        _timeoutMilliseconds = (int)_options.OperationTimeout.TotalMilliseconds;
        _connectionOptions = _options.Connection ?? ConnectionOptions.Default;
        _logger = (ILogger?)_options.LoggerFactory?.CreateLogger<DcContext>() ?? NullLogger.Instance;
    }

    /// <summary>The address the context sends to.</summary>
    public Address Address { get; }

    /// <summary>The flags the context was created with.</summary>
    public DcContextFlags Flags { get; }

    /// <summary>Why the last operation failed (the exception that was not thrown), or null if it succeeded or
    /// only found no session. Like <c>errno</c>, it is reset by the next operation.</summary>
    public Exception? LastError { get; private set; }

    private bool IsPersistent => (Flags & DcContextFlags.Persistent) != 0;

    private int Attempts => IsPersistent && (Flags & DcContextFlags.PersistentRetry) != 0 ? 2 : 1;

    /// <summary><c>DC_CTX_new</c>: a context for <paramref name="target"/>. With <see cref="DcContextFlags.Persistent"/>
    /// and without <see cref="DcContextFlags.PersistentLate"/> it connects now and blocks until connected.</summary>
    /// <param name="target">An address (<c>UNIX:/tmp/scache</c>, <c>IP:host:port</c>), optionally followed by the
    /// <c>,timeout=</c> and <c>,connectTimeout=</c> keys of <see cref="DistcacheClientOptions"/>.</param>
    /// <param name="flags">How connections are used.</param>
    /// <returns>The context.</returns>
    /// <exception cref="ArgumentException">The target is invalid.</exception>
    /// <exception cref="DistcacheConnectionException">The context had to connect now and could not (1.5.1 returned NULL).</exception>
    public static DcContext Create(string target, DcContextFlags flags) => Create(DistcacheClientOptions.Parse(target), flags);

    /// <summary><c>DC_CTX_new</c> with full options (address, operation and connect timeouts, connection hook, logging).</summary>
    /// <param name="options">The settings; the context keeps a copy. The reconnect delays are not used.</param>
    /// <param name="flags">How connections are used.</param>
    /// <returns>The context.</returns>
    /// <inheritdoc cref="Create(string, DcContextFlags)" path="/exception"/>
    public static DcContext Create(DistcacheClientOptions options, DcContextFlags flags)
    {
        ArgumentNullException.ThrowIfNull(options);
        var context = new DcContext(options, flags);
        if (context.ConnectsAtCreation)
        {
            context._link = context.Connect();
        }

        return context;
    }

    /// <summary>Like <see cref="Create(DistcacheClientOptions, DcContextFlags)"/>, connecting (when the flags ask for it) without blocking.</summary>
    /// <param name="options">The settings.</param>
    /// <param name="flags">How connections are used.</param>
    /// <param name="cancellationToken">Abandons connecting.</param>
    /// <returns>The context.</returns>
    /// <inheritdoc cref="Create(string, DcContextFlags)" path="/exception"/>
    public static async Task<DcContext> CreateAsync(DistcacheClientOptions options, DcContextFlags flags, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var context = new DcContext(options, flags);
        if (context.ConnectsAtCreation)
        {
            context._link = await context.ConnectAsync(cancellationToken).ConfigureAwait(false);
        }

        return context;
    }

    /// <summary><c>DC_CTX_add_session</c>: sends an ADD and reports whether the server answered OK.</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="data">The session data, at least 1 byte, id + data at most 32760 bytes.</param>
    /// <param name="timeoutMilliseconds">How long the server keeps the session: more than 500 ms (1.5.1's client
    /// rule), at most 7 days.</param>
    /// <returns>True if stored (status OK). False for any other answer (the session exists, a proxy without a
    /// server, ...), a network error, or an argument refused before sending; <see cref="LastError"/> says which.</returns>
    /// <exception cref="InvalidOperationException">Another operation is running on this context.</exception>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    public bool Add(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMilliseconds)
    {
        Enter();
        try
        {
            _lastIdLength = 0;
            return CheckAdd(id, data, timeoutMilliseconds)
                && Transact(Operation.Add, id, data, timeoutMilliseconds, out Answer answer)
                && answer.IsStatus(StatusCode.Ok);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary><c>DC_CTX_get_session</c>: sends a GET and copies the session data into <paramref name="buffer"/>.</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="buffer">Receives the data; if it is too small, it receives the first <c>buffer.Length</c> bytes
    /// and <see cref="Reget(Span{byte})"/> can fetch the whole session later without touching the network. May be empty
    /// to ask for the length.</param>
    /// <returns>The full length of the session data (which may exceed <c>buffer.Length</c>), or -1 for a miss or a
    /// failure. As in 1.5.1, any response shorter than 5 bytes counts as a miss, so shorter session data cannot be
    /// read back through this API.</returns>
    /// <exception cref="InvalidOperationException">Another operation is running on this context.</exception>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    public int Get(ReadOnlySpan<byte> id, Span<byte> buffer)
    {
        Enter();
        try
        {
            _lastIdLength = 0;
            if (!CheckId(id) || !Transact(Operation.Get, id, default, 0, out Answer answer))
            {
                return -1;
            }

            return Remember(id, answer) ? CopyReceived(buffer) : -1;
        }
        finally
        {
            Exit();
        }
    }

    /// <summary><c>DC_CTX_reget_session</c> without the id check: copies the data of the last successful GET again,
    /// without touching the network (for when the buffer given to <see cref="Get"/> was too small).</summary>
    /// <param name="buffer">Receives up to <c>buffer.Length</c> bytes of the data.</param>
    /// <returns>The full length of the data, or -1 if the last operation on this context was not a successful GET.</returns>
    /// <exception cref="InvalidOperationException">Another operation is running on this context.</exception>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    public int Reget(Span<byte> buffer)
    {
        Enter();
        try
        {
            return _lastIdLength == 0 ? -1 : CopyReceived(buffer);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary><c>DC_CTX_reget_session</c>: like <see cref="Reget(Span{byte})"/>, but only if the last successful
    /// GET was for <paramref name="id"/>.</summary>
    /// <param name="id">The id the last GET must have asked for.</param>
    /// <param name="buffer">Receives up to <c>buffer.Length</c> bytes of the data.</param>
    /// <returns>The full length of the data, or -1 if the last operation was not a successful GET of this id.</returns>
    /// <exception cref="InvalidOperationException">Another operation is running on this context.</exception>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    public int Reget(ReadOnlySpan<byte> id, Span<byte> buffer)
    {
        Enter();
        try
        {
            return _lastIdLength == 0 || !id.SequenceEqual(_lastId.AsSpan(0, _lastIdLength)) ? -1 : CopyReceived(buffer);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary><c>DC_CTX_remove_session</c>: sends a REMOVE and reports whether the server answered OK.</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <returns>True if a session was removed (OK); false if there was none (NOTOK) or the operation failed
    /// (<see cref="LastError"/> is then set).</returns>
    /// <exception cref="InvalidOperationException">Another operation is running on this context.</exception>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    public bool Remove(ReadOnlySpan<byte> id)
    {
        Enter();
        try
        {
            _lastIdLength = 0;
            return CheckId(id) && Transact(Operation.Remove, id, default, 0, out Answer answer) && answer.IsStatus(StatusCode.Ok);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary><c>DC_CTX_has_session</c>: sends a HAVE.</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <returns>1 if the session exists (OK), 0 if not (NOTOK), -1 if the operation failed or the answer was
    /// anything else (a proxy without a server); <see cref="LastError"/> is set for failures.</returns>
    /// <exception cref="InvalidOperationException">Another operation is running on this context.</exception>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    public int Has(ReadOnlySpan<byte> id)
    {
        Enter();
        try
        {
            _lastIdLength = 0;
            return CheckId(id) && Transact(Operation.Have, id, default, 0, out Answer answer) ? ToHas(answer) : -1;
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>The async form of <see cref="Add"/>: same wire traffic and results, without blocking a thread.</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="data">The session data.</param>
    /// <param name="timeoutMilliseconds">More than 500 ms, at most 7 days.</param>
    /// <param name="cancellationToken">Abandons the operation (it then returns false).</param>
    /// <returns>True if stored.</returns>
    /// <inheritdoc cref="Add" path="/exception"/>
    public async ValueTask<bool> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, uint timeoutMilliseconds, CancellationToken cancellationToken = default)
    {
        Enter();
        try
        {
            _lastIdLength = 0;
            if (!CheckAdd(id.Span, data.Span, timeoutMilliseconds))
            {
                return false;
            }

            Answer? answer = await TransactAsync(Operation.Add, id, data, timeoutMilliseconds, cancellationToken).ConfigureAwait(false);
            return answer is { } a && a.IsStatus(StatusCode.Ok);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>The async form of <see cref="Get"/>.</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="buffer">Receives up to <c>buffer.Length</c> bytes of the data.</param>
    /// <param name="cancellationToken">Abandons the operation (it then returns -1).</param>
    /// <returns>The full length of the data, or -1 for a miss or a failure.</returns>
    /// <inheritdoc cref="Get" path="/exception"/>
    public async ValueTask<int> GetAsync(ReadOnlyMemory<byte> id, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Enter();
        try
        {
            _lastIdLength = 0;
            if (!CheckId(id.Span))
            {
                return -1;
            }

            Answer? answer = await TransactAsync(Operation.Get, id, default, 0, cancellationToken).ConfigureAwait(false);
            return answer is { } a && Remember(id.Span, a) ? CopyReceived(buffer.Span) : -1;
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>The async form of <see cref="Remove"/>.</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="cancellationToken">Abandons the operation (it then returns false).</param>
    /// <returns>True if a session was removed.</returns>
    /// <inheritdoc cref="Remove" path="/exception"/>
    public async ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        Enter();
        try
        {
            _lastIdLength = 0;
            if (!CheckId(id.Span))
            {
                return false;
            }

            Answer? answer = await TransactAsync(Operation.Remove, id, default, 0, cancellationToken).ConfigureAwait(false);
            return answer is { } a && a.IsStatus(StatusCode.Ok);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>The async form of <see cref="Has"/>.</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="cancellationToken">Abandons the operation (it then returns -1).</param>
    /// <returns>1 (exists), 0 (does not), -1 (failed).</returns>
    /// <inheritdoc cref="Has" path="/exception"/>
    public async ValueTask<int> HasAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        Enter();
        try
        {
            _lastIdLength = 0;
            if (!CheckId(id.Span))
            {
                return -1;
            }

            Answer? answer = await TransactAsync(Operation.Have, id, default, 0, cancellationToken).ConfigureAwait(false);
            return answer is { } a ? ToHas(a) : -1;
        }
        finally
        {
            Exit();
        }
    }

    /// <summary><c>DC_CTX_free</c>: closes the persistent connection, if any, in order. Does not wait for it to close.</summary>
    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        Interlocked.Exchange(ref _link, null)?.Close(new ObjectDisposedException(nameof(DcContext)), abort: false);
    }

    /// <summary>Closes the persistent connection, if any, in order, and waits until it is closed.</summary>
    /// <returns>A task that completes when the connection is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        Volatile.Write(ref _disposed, true);
        if (Interlocked.Exchange(ref _link, null) is { } link)
        {
            link.Close(new ObjectDisposedException(nameof(DcContext)), abort: false);
            await link.Terminated.ConfigureAwait(false);
        }
    }

    private static int ToHas(in Answer answer) => answer switch
    {
        { Kind: ResponseKind.Status, Status: (byte)StatusCode.Ok } => 1,
        { Kind: ResponseKind.Status, Status: (byte)StatusCode.NotOk } => 0,
        _ => -1,
    };

    private bool ConnectsAtCreation => IsPersistent && (Flags & DcContextFlags.PersistentLate) == 0;

    private void Enter()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
        if (Interlocked.Exchange(ref _busy, 1) != 0)
        {
            throw new InvalidOperationException(
                "A DcContext runs one operation at a time, like 1.5.1's DC_CTX; share a DistcacheClient between threads instead.");
        }

        LastError = null;
    }

    private void Exit() => Volatile.Write(ref _busy, 0);

    private bool CheckId(ReadOnlySpan<byte> id)
    {
        if (SessionLimits.IsValidId(id))
        {
            return true;
        }

        LastError = new ArgumentException($"A session id must be 1 to {ProtocolConstants.MaxSessionIdLength} bytes; this one is {id.Length}. Nothing was sent.", nameof(id));
        return false;
    }

    private bool CheckAdd(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMilliseconds)
    {
        if (!CheckId(id))
        {
            return false;
        }

        if (!SessionLimits.IsValidData(id, data))
        {
            LastError = new ArgumentException(
                $"Session data must be 1 byte or more, with id + data at most {SessionLimits.MaxAddIdAndData} bytes; this is {data.Length} bytes with a {id.Length}-byte id. Nothing was sent.",
                nameof(data));
            return false;
        }

        if (timeoutMilliseconds <= MinAddTimeoutMilliseconds || timeoutMilliseconds > ProtocolConstants.MaxTimeoutMilliseconds)
        {
            LastError = new ArgumentOutOfRangeException(
                nameof(timeoutMilliseconds),
                timeoutMilliseconds,
                $"1.5.1's client refuses ADD timeouts of {MinAddTimeoutMilliseconds} ms or less, and the protocol allows at most {ProtocolConstants.MaxTimeoutMilliseconds} ms. Nothing was sent.");
            return false;
        }

        return true;
    }

    /// <summary>Keeps a GET's data for <see cref="Reget(Span{byte})"/> if it counts as a hit by 1.5.1's rule.</summary>
    private bool Remember(ReadOnlySpan<byte> id, in Answer answer)
    {
        if (answer.Kind != ResponseKind.Data || _receivedLength < MinGetResponseLength)
        {
            if (answer.Kind == ResponseKind.Empty || answer.IsStatus(StatusCode.Disconnected))
            {
                LastError = new DistcacheProxyDisconnectedException(Address, $"The distcache proxy at {Address} has no link to its server.");
            }

            return false;
        }

        id.CopyTo(_lastId);
        _lastIdLength = id.Length;
        return true;
    }

    private int CopyReceived(Span<byte> buffer)
    {
        int count = Math.Min(buffer.Length, _receivedLength);
        _received.AsSpan(0, count).CopyTo(buffer);
        return _receivedLength;
    }

    /// <summary>One request and its response, with 1.5.1's connection handling and at most one retry.</summary>
    private bool Transact(Operation operation, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint sessionTimeout, out Answer answer)
    {
        for (int attempt = 1; ; attempt++)
        {
            Link? link = null;
            try
            {
                link = IsPersistent ? (_link is { IsClosed: false } current ? current : _link = Connect()) : Connect();
                PendingRequest request = Begin(link, operation, id, data, sessionTimeout, isSync: true);
                try
                {
                    request.Wait();
                    answer = Capture(request);

                    // A failed first attempt that the retry made good is no failure of the operation.
                    LastError = null;
                    return true;
                }
                finally
                {
                    request.EndCaller();
                }
            }
            catch (Exception e) when (e is DistcacheConnectionException or TimeoutException)
            {
                if (Failed(operation, link, attempt, e))
                {
                    answer = default;
                    return false;
                }
            }
            finally
            {
                if (!IsPersistent)
                {
                    link?.Close(ClosedAfterUse, abort: false);
                }
            }
        }
    }

    private async ValueTask<Answer?> TransactAsync(Operation operation, ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, uint sessionTimeout, CancellationToken cancellationToken)
    {
        for (int attempt = 1; ; attempt++)
        {
            Link? link = null;
            try
            {
                link = IsPersistent
                    ? (_link is { IsClosed: false } current ? current : _link = await ConnectAsync(cancellationToken).ConfigureAwait(false))
                    : await ConnectAsync(cancellationToken).ConfigureAwait(false);
                PendingRequest request = Begin(link, operation, id.Span, data.Span, sessionTimeout, isSync: false);
                try
                {
                    request.ArmAsync(_timeoutMilliseconds, cancellationToken);
                    await request.AsValueTask().ConfigureAwait(false);
                    LastError = null;
                    return Capture(request);
                }
                finally
                {
                    request.EndCaller();
                }
            }
            catch (Exception e) when (e is DistcacheConnectionException or TimeoutException or OperationCanceledException)
            {
                if (e is OperationCanceledException || Failed(operation, link, attempt, e))
                {
                    LastError = e;
                    return null;
                }
            }
            finally
            {
                if (!IsPersistent)
                {
                    link?.Close(ClosedAfterUse, abort: false);
                }
            }
        }
    }

    private PendingRequest Begin(Link link, Operation operation, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint sessionTimeout, bool isSync)
    {
        PendingRequest request = _pool.Rent();
        request.Begin(operation, isSync, Address, _timeoutMilliseconds);
        if (!link.TrySend(request, id, data, sessionTimeout, out Exception? reason))
        {
            request.Abandon();
            throw new DistcacheConnectionException(Address, reason.Message, reason);
        }

        return request;
    }

    /// <summary>Records a failed attempt and drops a persistent connection whose state is now unknown.</summary>
    /// <returns>True if the operation has no attempt left.</returns>
    private bool Failed(Operation operation, Link? link, int attempt, Exception error)
    {
        LastError = error;
        Log.ContextOperationFailed(_logger, operation, Address, attempt, error.Message);
        if (IsPersistent && link is not null)
        {
            link.Close(error, abort: true);
            Interlocked.CompareExchange(ref _link, null, link);
        }

        return attempt >= Attempts;
    }

    private Answer Capture(PendingRequest request)
    {
        if (request.Kind == ResponseKind.Data)
        {
            if (_received.Length < request.Length)
            {
                _received = new byte[Math.Max(request.Length, Math.Min(2 * _received.Length, ProtocolConstants.MaxMessagePayload))];
            }

            request.Buffer.AsSpan(0, request.Length).CopyTo(_received);
            _receivedLength = request.Length;
        }
        else
        {
            _receivedLength = 0;
        }

        return new Answer(request.Kind, request.Status);
    }

    private Link Connect()
    {
        // Networking connects asynchronously only; the connect runs on the pool and this thread waits on a box
        // for its outcome, bounded even if a stream wrapper ignores its cancellation token.
        var box = new ConnectBox();
        _ = box.RunAsync(ConnectAsync(CancellationToken.None));
        return box.Wait(_options.ConnectTimeout + TimeSpan.FromSeconds(1), Address);
    }

    private Task<Link> ConnectAsync(CancellationToken cancellationToken) =>
        Link.ConnectAsync(Address, _connectionOptions, _options.ConnectTimeout, null, _logger, cancellationToken);

    /// <summary>A response as the DC_CTX calls read it; GET data is in <see cref="_received"/>.</summary>
    private readonly record struct Answer(ResponseKind Kind, byte Status)
    {
        public bool IsStatus(StatusCode status) => Kind == ResponseKind.Status && Status == (byte)status;
    }

    /// <summary>The outcome of one asynchronous connect, waited for synchronously.</summary>
    private sealed class ConnectBox
    {
        private readonly object _gate = new();
        private Link? _link;
        private Exception? _error;
        private bool _done;
        private bool _abandoned;

        public async Task RunAsync(Task<Link> connecting)
        {
            Link? link = null;
            Exception? error = null;
            try
            {
                link = await connecting.ConfigureAwait(false);
            }
            catch (Exception e)
            {
                error = e;
            }

            bool abandoned;
            lock (_gate)
            {
                _link = link;
                _error = error;
                _done = true;
                abandoned = _abandoned;
                Monitor.PulseAll(_gate);
            }

            if (abandoned)
            {
                // Nobody waits for this connection any more.
                link?.Close(ClosedAfterUse, abort: true);
            }
        }

        public Link Wait(TimeSpan limit, Address address)
        {
            long deadline = Environment.TickCount64 + (long)limit.TotalMilliseconds;
            lock (_gate)
            {
                while (!_done)
                {
                    long remaining = deadline - Environment.TickCount64;
                    if (remaining <= 0)
                    {
                        _abandoned = true;
                        throw new DistcacheConnectionException(
                            address,
                            $"Connecting to distcache at {address} did not finish within {(long)limit.TotalMilliseconds} ms.",
                            null);
                    }

                    Monitor.Wait(_gate, (int)remaining);
                }

                return _link ?? throw (_error as DistcacheConnectionException
                    ?? new DistcacheConnectionException(address, $"Cannot connect to distcache at {address}: {_error?.Message}", _error));
            }
        }
    }
}
