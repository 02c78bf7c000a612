using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Distcache.Networking;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Client;

/// <summary>
/// A thread-safe distcache client that any number of callers share: their requests are pipelined over one
/// persistent connection (TCP, unix socket, or anything an <see cref="Networking.Address"/> can connect to) and
/// each caller gets the response to its own request, matched by <c>request_uid</c>. Every operation comes as a
/// sync and an async method over the same request object.
/// </summary>
/// <remarks>
/// <para><b>Connecting.</b> <see cref="Connect(string)"/> returns at once and connects in the background;
/// <see cref="ConnectAsync(string, CancellationToken)"/> waits for the first connection and throws if it fails.
/// Requests made while that first attempt is under way wait for it (within their timeout).</para>
/// <para><b>Losing the link.</b> When the connection drops, is reset, or the server breaks the protocol, every
/// request in flight on it fails at once with <see cref="DistcacheConnectionException"/>, and the client
/// reconnects in the background: at once, then with exponential backoff from
/// <see cref="DistcacheClientOptions.ReconnectMinDelay"/> to <see cref="DistcacheClientOptions.ReconnectMaxDelay"/>.
/// While it is disconnected, new requests fail fast with <see cref="DistcacheConnectionException"/> rather than
/// queueing, as 1.5.1 does: a TLS handshake that consults the cache should carry on without it, not wait for it.
/// A link on which the server stays silent for a whole <see cref="DistcacheClientOptions.OperationTimeout"/>
/// while a request waits is presumed dead and dropped too.</para>
/// <para><b>Timeouts and cancellation.</b> A request that times out or is canceled completes at once for its
/// caller (with <see cref="TimeoutException"/> or <see cref="OperationCanceledException"/>). Whether the server
/// applied it is then unknown; its response is discarded when it arrives.</para>
/// <para><b>Validation.</b> Ids (1 to 64 bytes), data (at least 1 byte, and id + data at most 32760 bytes) and
/// timeouts (0 to 7 days) are checked before anything is sent; a bad argument throws
/// <see cref="ArgumentException"/> naming the limit.</para>
/// <para><b>Sync calls</b> block the calling thread on the request's own result box (never on a task). Their
/// responses are delivered by the connection's reader, which runs on the thread pool, so an application that
/// blocks very many pool threads in sync calls should raise the pool's minimum thread count.</para>
/// </remarks>
public sealed class DistcacheClient : IAsyncDisposable, IDisposable
{
    // Enough pooled requests for the concurrency of a busy web server; beyond it, extra ones are simply collected.
    private const int PoolCapacity = 256;

    // Jitter of +-20% around each backoff delay.
    private const double JitterFraction = 0.2;

    private readonly DistcacheClientOptions _options;
    private readonly ConnectionOptions _connectionOptions;
    private readonly int _timeoutMilliseconds;
    private readonly ILogger _logger;
    private readonly PendingRequestPool _pool = new(PoolCapacity);
    private readonly CancellationTokenSource _lifetime = new();
    private readonly LinkObserver _observer;

    // Guards the fields below; Monitor rather than Lock because sync callers wait on it for the first connection.
    private readonly object _stateGate = new();
    private readonly TaskCompletionSource _firstAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Link? _link;
    private bool _firstAttemptPending = true;
    private bool _connecting = true;
    private int _backoffLevel;
    private int _failedAttempts;
    private Exception? _lastError;
    private bool _disposed;
    private Task _connectLoop;

    private DistcacheClient(DistcacheClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Snapshot(nameof(options));
        Address = _options.Address!;
        _timeoutMilliseconds = (int)_options.OperationTimeout.TotalMilliseconds;
        _connectionOptions = _options.Connection ?? ConnectionOptions.Default;
        _logger = (ILogger?)_options.LoggerFactory?.CreateLogger<DistcacheClient>() ?? NullLogger.Instance;
        _observer = new LinkObserver(this);
        _connectLoop = ConnectLoopAsync();
    }

    /// <summary>The address of the cache this client talks to.</summary>
    public Address Address { get; }

    /// <summary>True while the client has a working connection. A request made when this is false fails fast
    /// (unless the very first connection attempt is still under way).</summary>
    public bool IsConnected => Volatile.Read(ref _link) is { IsClosed: false };

    /// <summary>Creates a client from a connection string such as <c>UNIX:/tmp/scache</c> or
    /// <c>IP:cache1:9001,timeout=2000</c> (keys: see <see cref="DistcacheClientOptions"/>) and starts connecting
    /// in the background. Returns at once; nothing is sent until the first request.</summary>
    /// <param name="configuration">An address, optionally followed by <c>,key=value</c> pairs.</param>
    /// <returns>The client; dispose it to close the connection.</returns>
    /// <exception cref="ArgumentException">The connection string is invalid.</exception>
    public static DistcacheClient Connect(string configuration) => new(DistcacheClientOptions.Parse(configuration));

    /// <summary>Creates a client with <paramref name="options"/> and starts connecting in the background. Returns at
    /// once; nothing is sent until the first request.</summary>
    /// <param name="options">The settings; the client keeps a copy.</param>
    /// <returns>The client; dispose it to close the connection.</returns>
    /// <exception cref="ArgumentException">An option is missing or out of range.</exception>
    public static DistcacheClient Connect(DistcacheClientOptions options) => new(options);

    /// <summary>Creates a client from a connection string and waits until its first connection is up.</summary>
    /// <param name="configuration">An address, optionally followed by <c>,key=value</c> pairs.</param>
    /// <param name="cancellationToken">Abandons the wait (and disposes the client).</param>
    /// <returns>The connected client.</returns>
    /// <exception cref="ArgumentException">The connection string is invalid.</exception>
    /// <exception cref="DistcacheConnectionException">The first connection attempt failed; the message names the address and the cause.</exception>
    public static Task<DistcacheClient> ConnectAsync(string configuration, CancellationToken cancellationToken = default) =>
        ConnectAsync(DistcacheClientOptions.Parse(configuration), cancellationToken);

    /// <summary>Creates a client with <paramref name="options"/> and waits until its first connection is up.</summary>
    /// <param name="options">The settings; the client keeps a copy.</param>
    /// <param name="cancellationToken">Abandons the wait (and disposes the client).</param>
    /// <returns>The connected client.</returns>
    /// <exception cref="ArgumentException">An option is missing or out of range.</exception>
    /// <exception cref="DistcacheConnectionException">The first connection attempt failed; the message names the address and the cause.</exception>
    public static Task<DistcacheClient> ConnectAsync(DistcacheClientOptions options, CancellationToken cancellationToken = default) =>
        WaitUntilConnectedAsync(new DistcacheClient(options), cancellationToken);

    /// <summary>Sends an ADD: stores <paramref name="data"/> under <paramref name="id"/> for
    /// <paramref name="timeout"/>, unless a live session with that id exists (ADD never overwrites).</summary>
    /// <param name="id">The session id, 1 to 64 bytes; copied before the call returns.</param>
    /// <param name="data">The session data, at least 1 byte, with id + data at most 32760 bytes; copied before the call returns.</param>
    /// <param name="timeout">How long the server keeps the session, 0 to 7 days; sent in whole milliseconds.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>The server's status byte by name: <see cref="AddOutcome.Stored"/>, <see cref="AddOutcome.AlreadyExists"/>,
    /// a limit the server enforced, or <see cref="AddOutcome.Disconnected"/> from a proxy without a server.</returns>
    /// <exception cref="ArgumentException">An argument is out of range; nothing was sent.</exception>
    /// <exception cref="DistcacheConnectionException">Not connected, or the link failed before the response came.</exception>
    /// <exception cref="TimeoutException">No response within the operation timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    /// <exception cref="ObjectDisposedException">The client was disposed.</exception>
    public ValueTask<AddOutcome> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        uint milliseconds = SessionLimits.ValidateAdd(id.Span, data.Span, timeout);
        return AddCoreAsync(id, data, milliseconds, cancellationToken);
    }

    /// <summary>Sends an ADD and blocks until its response (see <see cref="AddAsync"/>).</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="data">The session data, at least 1 byte, with id + data at most 32760 bytes.</param>
    /// <param name="timeout">How long the server keeps the session, 0 to 7 days.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>The server's answer by name.</returns>
    /// <inheritdoc cref="AddAsync" path="/exception"/>
    public AddOutcome Add(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        uint milliseconds = SessionLimits.ValidateAdd(id, data, timeout);
        PendingRequest request = Execute(Operation.Add, id, data, milliseconds, cancellationToken);
        try
        {
            return Answers.ToAddOutcome(request);
        }
        finally
        {
            request.EndCaller();
        }
    }

    /// <summary>Sends a GET for <paramref name="id"/> and returns the session data in a new array.</summary>
    /// <param name="id">The session id, 1 to 64 bytes; copied before the call returns.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>The data (two or more bytes), or null when the server answered with a single byte other than
    /// DISCONNECTED (NOTOK: no such session). Session data of exactly one byte therefore reads back as null.</returns>
    /// <exception cref="ArgumentException">The id is out of range; nothing was sent.</exception>
    /// <exception cref="DistcacheProxyDisconnectedException">A proxy answered that it has no link to its server.</exception>
    /// <exception cref="DistcacheConnectionException">Not connected, or the link failed before the response came.</exception>
    /// <exception cref="TimeoutException">No response within the operation timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    /// <exception cref="ObjectDisposedException">The client was disposed.</exception>
    public ValueTask<byte[]?> GetAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        SessionLimits.ValidateId(id.Span);
        return GetArrayCoreAsync(id, cancellationToken);
    }

    /// <summary>Sends a GET and blocks until its response (see <see cref="GetAsync(ReadOnlyMemory{byte}, CancellationToken)"/>).</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>The data, or null when there is no such session.</returns>
    /// <inheritdoc cref="GetAsync(ReadOnlyMemory{byte}, CancellationToken)" path="/exception"/>
    public byte[]? Get(ReadOnlySpan<byte> id, CancellationToken cancellationToken = default)
    {
        SessionLimits.ValidateId(id);
        PendingRequest request = Execute(Operation.Get, id, default, 0, cancellationToken);
        try
        {
            return Answers.ToArray(request);
        }
        finally
        {
            request.EndCaller();
        }
    }

    /// <summary>Sends a GET for <paramref name="id"/> and appends the session data, if any, to
    /// <paramref name="destination"/>. Unlike the other GET overloads it reports a proxy's DISCONNECTED answer as a
    /// result instead of throwing.</summary>
    /// <param name="id">The session id, 1 to 64 bytes; copied before the call returns.</param>
    /// <param name="destination">Receives the data on <see cref="GetOutcome.Found"/>; untouched otherwise, and never
    /// written after the call has returned (the data is buffered until the caller takes it).</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns><see cref="GetOutcome.Found"/> (two or more bytes of data), <see cref="GetOutcome.NotFound"/> (a single
    /// byte other than DISCONNECTED), or <see cref="GetOutcome.Disconnected"/> (DISCONNECTED, or 1.5.1's empty answer).</returns>
    /// <exception cref="ArgumentException">The id is out of range; nothing was sent.</exception>
    /// <exception cref="DistcacheConnectionException">Not connected, or the link failed before the response came.</exception>
    /// <exception cref="TimeoutException">No response within the operation timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    /// <exception cref="ObjectDisposedException">The client was disposed.</exception>
    public ValueTask<GetOutcome> GetAsync(ReadOnlyMemory<byte> id, System.Buffers.IBufferWriter<byte> destination, CancellationToken cancellationToken = default)
    {
        SessionLimits.ValidateId(id.Span);
        ArgumentNullException.ThrowIfNull(destination);
        return GetIntoCoreAsync(id, destination, cancellationToken);
    }

    /// <summary>Sends a GET and blocks until its response (see <see cref="GetAsync(ReadOnlyMemory{byte}, System.Buffers.IBufferWriter{byte}, CancellationToken)"/>).</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="destination">Receives the data on <see cref="GetOutcome.Found"/>.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>Found, NotFound or Disconnected.</returns>
    /// <inheritdoc cref="GetAsync(ReadOnlyMemory{byte}, System.Buffers.IBufferWriter{byte}, CancellationToken)" path="/exception"/>
    public GetOutcome Get(ReadOnlySpan<byte> id, System.Buffers.IBufferWriter<byte> destination, CancellationToken cancellationToken = default)
    {
        SessionLimits.ValidateId(id);
        ArgumentNullException.ThrowIfNull(destination);
        PendingRequest request = Execute(Operation.Get, id, default, 0, cancellationToken);
        try
        {
            return Answers.CopyTo(request, destination);
        }
        finally
        {
            request.EndCaller();
        }
    }

    /// <summary>Sends a GET for <paramref name="id"/> and hands back the session data in pooled memory, without
    /// copying it again: dispose the owner to return the memory to the pool.</summary>
    /// <param name="id">The session id, 1 to 64 bytes; copied before the call returns.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>An owner whose <see cref="System.Buffers.IMemoryOwner{T}.Memory"/> is exactly the data, or null when
    /// there is no such session.</returns>
    /// <inheritdoc cref="GetAsync(ReadOnlyMemory{byte}, CancellationToken)" path="/exception"/>
    public ValueTask<System.Buffers.IMemoryOwner<byte>?> GetLeaseAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        SessionLimits.ValidateId(id.Span);
        return GetLeaseCoreAsync(id, cancellationToken);
    }

    /// <summary>Sends a GET and blocks until its response (see <see cref="GetLeaseAsync"/>).</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>An owner of the data, or null when there is no such session.</returns>
    /// <inheritdoc cref="GetAsync(ReadOnlyMemory{byte}, CancellationToken)" path="/exception"/>
    public System.Buffers.IMemoryOwner<byte>? GetLease(ReadOnlySpan<byte> id, CancellationToken cancellationToken = default)
    {
        SessionLimits.ValidateId(id);
        PendingRequest request = Execute(Operation.Get, id, default, 0, cancellationToken);
        try
        {
            return Answers.ToLease(request);
        }
        finally
        {
            request.EndCaller();
        }
    }

    /// <summary>Sends a REMOVE for <paramref name="id"/>.</summary>
    /// <param name="id">The session id, 1 to 64 bytes; copied before the call returns.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>True when the server answered OK (a live session was removed), false for NOTOK (there was none).</returns>
    /// <exception cref="ArgumentException">The id is out of range; nothing was sent.</exception>
    /// <exception cref="DistcacheProxyDisconnectedException">A proxy answered that it has no link to its server.</exception>
    /// <exception cref="DistcacheConnectionException">Not connected, or the link failed before the response came.</exception>
    /// <exception cref="TimeoutException">No response within the operation timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    /// <exception cref="ObjectDisposedException">The client was disposed.</exception>
    public ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        SessionLimits.ValidateId(id.Span);
        return StatusCoreAsync(Operation.Remove, id, cancellationToken);
    }

    /// <summary>Sends a REMOVE and blocks until its response (see <see cref="RemoveAsync"/>).</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>True if a live session was removed, false if there was none.</returns>
    /// <inheritdoc cref="RemoveAsync" path="/exception"/>
    public bool Remove(ReadOnlySpan<byte> id, CancellationToken cancellationToken = default) =>
        Status(Operation.Remove, id, cancellationToken);

    /// <summary>Sends a HAVE for <paramref name="id"/>: asks whether a live session exists, without fetching its data.</summary>
    /// <param name="id">The session id, 1 to 64 bytes; copied before the call returns.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>True when the server answered OK (yes), false for NOTOK (no).</returns>
    /// <inheritdoc cref="RemoveAsync" path="/exception"/>
    public ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        SessionLimits.ValidateId(id.Span);
        return StatusCoreAsync(Operation.Have, id, cancellationToken);
    }

    /// <summary>Sends a HAVE and blocks until its response (see <see cref="ContainsAsync"/>).</summary>
    /// <param name="id">The session id, 1 to 64 bytes.</param>
    /// <param name="cancellationToken">Abandons the wait for the response.</param>
    /// <returns>True if a live session exists.</returns>
    /// <inheritdoc cref="RemoveAsync" path="/exception"/>
    public bool Contains(ReadOnlySpan<byte> id, CancellationToken cancellationToken = default) =>
        Status(Operation.Have, id, cancellationToken);

    /// <summary>Closes the client: every request still waiting fails with <see cref="ObjectDisposedException"/>, the
    /// reconnect loop stops, and the connection is closed in order (FIN, not reset). Completes when the
    /// connection is closed. Later calls throw <see cref="ObjectDisposedException"/>.</summary>
    /// <returns>A task that completes when the connection is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        Link? link = BeginDispose(out Task connectLoop, out bool first);
        if (!first)
        {
            return;
        }

        if (link is not null)
        {
            await link.Terminated.ConfigureAwait(false);
        }

        await connectLoop.ConfigureAwait(false);
        _lifetime.Dispose();
    }

    /// <summary>Closes the client like <see cref="DisposeAsync"/>, without waiting: requests still waiting fail with
    /// <see cref="ObjectDisposedException"/> at once, and the connection finishes closing in the background.</summary>
    public void Dispose() => BeginDispose(out _, out _);

    /// <summary>The link requests currently go to, for tests.</summary>
    internal Link? CurrentLink => Volatile.Read(ref _link);

    /// <summary>Completes when the first connection attempt has ended, whether it connected or failed.</summary>
    internal Task FirstConnectAttempt => _firstAttempt.Task;

    /// <inheritdoc/>
    public override string ToString() => $"DistcacheClient({Address}, {(IsConnected ? "connected" : "not connected")})";

    private static async Task<DistcacheClient> WaitUntilConnectedAsync(DistcacheClient client, CancellationToken cancellationToken)
    {
        try
        {
            await client._firstAttempt.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            Exception? error;
            lock (client._stateGate)
            {
                if (client._link is { IsClosed: false })
                {
                    return client;
                }

                error = client._lastError;
            }

            throw new DistcacheConnectionException(
                client.Address,
                error?.Message ?? $"Cannot connect to distcache at {client.Address}.",
                error?.InnerException ?? error);
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<AddOutcome> AddCoreAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, uint milliseconds, CancellationToken cancellationToken)
    {
        PendingRequest request = await ExecuteAsync(Operation.Add, id, data, milliseconds, cancellationToken).ConfigureAwait(false);
        try
        {
            return Answers.ToAddOutcome(request);
        }
        finally
        {
            request.EndCaller();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<byte[]?> GetArrayCoreAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken)
    {
        PendingRequest request = await ExecuteAsync(Operation.Get, id, default, 0, cancellationToken).ConfigureAwait(false);
        try
        {
            return Answers.ToArray(request);
        }
        finally
        {
            request.EndCaller();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<GetOutcome> GetIntoCoreAsync(ReadOnlyMemory<byte> id, System.Buffers.IBufferWriter<byte> destination, CancellationToken cancellationToken)
    {
        PendingRequest request = await ExecuteAsync(Operation.Get, id, default, 0, cancellationToken).ConfigureAwait(false);
        try
        {
            return Answers.CopyTo(request, destination);
        }
        finally
        {
            request.EndCaller();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<System.Buffers.IMemoryOwner<byte>?> GetLeaseCoreAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken)
    {
        PendingRequest request = await ExecuteAsync(Operation.Get, id, default, 0, cancellationToken).ConfigureAwait(false);
        try
        {
            return Answers.ToLease(request);
        }
        finally
        {
            request.EndCaller();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> StatusCoreAsync(Operation operation, ReadOnlyMemory<byte> id, CancellationToken cancellationToken)
    {
        PendingRequest request = await ExecuteAsync(operation, id, default, 0, cancellationToken).ConfigureAwait(false);
        try
        {
            return Answers.ToBoolean(request);
        }
        finally
        {
            request.EndCaller();
        }
    }

    private bool Status(Operation operation, ReadOnlySpan<byte> id, CancellationToken cancellationToken)
    {
        SessionLimits.ValidateId(id);
        PendingRequest request = Execute(operation, id, default, 0, cancellationToken);
        try
        {
            return Answers.ToBoolean(request);
        }
        finally
        {
            request.EndCaller();
        }
    }

    /// <summary>Sends a request and waits on its result box on this thread. On return the request holds a response;
    /// the caller reads it and then calls <see cref="PendingRequest.EndCaller"/>.</summary>
    private PendingRequest Execute(Operation operation, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint sessionTimeout, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        cancellationToken.ThrowIfCancellationRequested();
        PendingRequest request;
        try
        {
            Link link = Volatile.Read(ref _link) is { IsClosed: false } current ? current : WaitForLink(start, cancellationToken);
            request = Send(link, operation, id, data, sessionTimeout, isSync: true, RemainingMilliseconds(start));
        }
        catch (Exception e) when (e is not ObjectDisposedException)
        {
            // Counted here, after the client's lock is released (a filter would run inside it, and so would every
            // meter listener's callback).
            ClientMetrics.Failed(operation, e, Address);
            throw;
        }

        request.Watch(cancellationToken);
        try
        {
            request.Wait();
        }
        catch
        {
            request.EndCaller();
            throw;
        }

        return request;
    }

    /// <summary>Sends a request and awaits its result box. On return the request holds a response; the caller reads
    /// it and then calls <see cref="PendingRequest.EndCaller"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<PendingRequest> ExecuteAsync(Operation operation, ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, uint sessionTimeout, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        cancellationToken.ThrowIfCancellationRequested();
        int remaining;
        PendingRequest request;
        try
        {
            Link link = Volatile.Read(ref _link) is { IsClosed: false } current ? current : await WaitForLinkAsync(start, cancellationToken).ConfigureAwait(false);
            remaining = RemainingMilliseconds(start);
            request = Send(link, operation, id.Span, data.Span, sessionTimeout, isSync: false, remaining);
        }
        catch (Exception e) when (e is not ObjectDisposedException)
        {
            // Counted here, after the client's lock is released (a filter would run inside it, and so would every
            // meter listener's callback).
            ClientMetrics.Failed(operation, e, Address);
            throw;
        }

        request.ArmAsync(remaining, cancellationToken);
        try
        {
            await request.AsValueTask().ConfigureAwait(false);
        }
        catch
        {
            request.EndCaller();
            throw;
        }

        return request;
    }

    private PendingRequest Send(Link link, Operation operation, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint sessionTimeout, bool isSync, int timeoutMilliseconds)
    {
        PendingRequest request = _pool.Rent();
        request.Begin(operation, isSync, Address, timeoutMilliseconds);
        if (!link.TrySend(request, id, data, sessionTimeout, out Exception? reason))
        {
            request.Abandon();
            if (reason is ObjectDisposedException)
            {
                throw new ObjectDisposedException(nameof(DistcacheClient), $"The DistcacheClient for {Address} has been disposed.");
            }

            throw NotConnected(reason);
        }

        return request;
    }

    private int RemainingMilliseconds(long start)
    {
        // At least 1 ms, so that a request that used up its time waiting for the connection still gets a deadline.
        long remaining = _timeoutMilliseconds - (long)Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return (int)Math.Max(1, remaining);
    }

    private Link WaitForLink(long start, CancellationToken cancellationToken)
    {
        CancellationTokenRegistration registration = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static state => ((DistcacheClient)state!).WakeWaiters(), this)
            : default;

        // The registration is disposed outside the lock: disposing waits for a running callback, which takes the lock.
        using (registration)
        {
            lock (_stateGate)
            {
                while (true)
                {
                    if (TryGetLinkLocked(out Link? link))
                    {
                        return link;
                    }

                    cancellationToken.ThrowIfCancellationRequested();
                    long remaining = _timeoutMilliseconds - (long)Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                    if (remaining <= 0)
                    {
                        throw StillConnecting();
                    }

                    Monitor.Wait(_stateGate, (int)remaining);
                }
            }
        }
    }

    private async ValueTask<Link> WaitForLinkAsync(long start, CancellationToken cancellationToken)
    {
        // Bounded: once the first attempt has finished, TryGetLinkLocked returns a link or throws.
        while (true)
        {
            Task firstAttempt;
            lock (_stateGate)
            {
                if (TryGetLinkLocked(out Link? link))
                {
                    return link;
                }

                firstAttempt = _firstAttempt.Task;
            }

            long remaining = _timeoutMilliseconds - (long)Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (remaining <= 0)
            {
                throw StillConnecting();
            }

            try
            {
                await firstAttempt.WaitAsync(TimeSpan.FromMilliseconds(remaining), cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                throw StillConnecting();
            }
        }
    }

    /// <summary>The current link; false while the first connection attempt is still running (the caller waits);
    /// throws when the client is disposed or disconnected (requests fail fast).</summary>
    private bool TryGetLinkLocked([NotNullWhen(true)] out Link? link)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        link = _link;
        if (link is { IsClosed: false })
        {
            return true;
        }

        if (!_firstAttemptPending)
        {
            throw NotConnected(_lastError);
        }

        return false;
    }

    private void WakeWaiters()
    {
        lock (_stateGate)
        {
            Monitor.PulseAll(_stateGate);
        }
    }

    private DistcacheConnectionException NotConnected(Exception? cause) => new(
        Address,
        $"Not connected to distcache at {Address}: {cause?.Message ?? "the connection is being re-established"} Requests fail until the client has reconnected, which it does in the background.",
        cause);

    private TimeoutException StillConnecting() =>
        new($"The first connection to distcache at {Address} was not up within the operation timeout of {_timeoutMilliseconds} ms.");

    /// <summary>Connects until a link is up (or the client is disposed), backing off between failed attempts.</summary>
    private async Task ConnectLoopAsync()
    {
        // Off the caller's stack: this starts from the constructor or from whichever thread saw the link fail.
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        CancellationToken lifetime = _lifetime.Token;
        while (true)
        {
            TimeSpan delay;
            lock (_stateGate)
            {
                if (_disposed)
                {
                    _connecting = false;
                    return;
                }

                delay = NextDelayLocked();
            }

            if (delay > TimeSpan.Zero)
            {
                Log.ReconnectScheduled(_logger, Address, (long)delay.TotalMilliseconds);
                await Task.Delay(delay, lifetime).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                lock (_stateGate)
                {
                    if (_disposed)
                    {
                        _connecting = false;
                        return;
                    }
                }
            }

            Link? link = null;
            Exception? error = null;
            try
            {
                link = await Link.ConnectAsync(Address, _connectionOptions, _options.ConnectTimeout, _observer, _logger, lifetime).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (lifetime.IsCancellationRequested)
            {
                // Disposed while connecting; the top of the loop ends it.
            }
            catch (Exception e)
            {
                error = e;
            }

            bool done;
            bool orphan;
            bool wasFirst;
            int failures;
            lock (_stateGate)
            {
                _backoffLevel++;
                wasFirst = _firstAttemptPending;
                _firstAttemptPending = false;
                orphan = link is not null && _disposed;
                if (link is { IsClosed: true } && !_disposed)
                {
                    // The peer dropped the link before it could be published. Its OnLinkClosed found this loop
                    // still running and left the reconnecting to it, so it must not stop here with a dead link.
                    error = _lastError ?? new DistcacheConnectionException(Address, $"distcache at {Address} closed the connection at once.", null);
                    link = null;
                }

                if (link is not null && !_disposed)
                {
                    // Checked open under the lock that OnLinkClosed takes: if it closes from now on, OnLinkClosed
                    // sees it as the current link with no loop running, and starts one.
                    _link = link;
                    _lastError = null;
                    _failedAttempts = 0;
                }
                else if (error is not null)
                {
                    _lastError = error;
                    _failedAttempts++;
                }

                failures = _failedAttempts;
                done = link is not null || _disposed;
                if (done)
                {
                    _connecting = false;
                }

                Monitor.PulseAll(_stateGate);
            }

            if (orphan)
            {
                link!.Close(new ObjectDisposedException(nameof(DistcacheClient)), abort: false);
            }
            else if (link is not null)
            {
                ClientMetrics.Connected(Address);
                Log.Connected(_logger, Address);
            }
            else if (error is not null)
            {
                Log.ConnectFailed(_logger, Address, failures, error.Message);
            }

            if (wasFirst)
            {
                _firstAttempt.TrySetResult();
            }

            if (done)
            {
                return;
            }
        }
    }

    /// <summary>No wait after a link that served requests; then ReconnectMinDelay, doubling up to ReconnectMaxDelay.</summary>
    private TimeSpan NextDelayLocked()
    {
        if (_backoffLevel == 0)
        {
            return TimeSpan.Zero;
        }

        double min = _options.ReconnectMinDelay.TotalMilliseconds;
        double max = _options.ReconnectMaxDelay.TotalMilliseconds;
        double delay = Math.Min(max, min * Math.Pow(2, Math.Min(_backoffLevel - 1, 30)));
#pragma warning disable CA5394 // Jitter only spreads reconnects of many clients over time; it needs no cryptographic randomness.
        double jitter = 1 + (JitterFraction * ((2 * Random.Shared.NextDouble()) - 1));
#pragma warning restore CA5394
        return TimeSpan.FromMilliseconds(Math.Min(max, delay * jitter));
    }

    private void OnLinkClosed(Link link, Exception reason)
    {
        lock (_stateGate)
        {
            if (_link == link)
            {
                _link = null;
            }

            if (_disposed)
            {
                return;
            }

            _lastError = reason;
            if (!_connecting)
            {
                _connecting = true;
                _connectLoop = ConnectLoopAsync();
            }
        }

        ClientMetrics.Lost(Address);
        Log.LinkLost(_logger, Address, reason.Message);
    }

    private void OnFirstResponse()
    {
        lock (_stateGate)
        {
            // The server at the other end works: if this link drops, reconnect at once rather than backing off.
            _backoffLevel = 0;
        }
    }

    private Link? BeginDispose(out Task connectLoop, out bool first)
    {
        Link? link;
        lock (_stateGate)
        {
            connectLoop = _connectLoop;
            first = !_disposed;
            if (!first)
            {
                return null;
            }

            _disposed = true;
            link = _link;
            _link = null;
            _firstAttemptPending = false;
            Monitor.PulseAll(_stateGate);
        }

        _lifetime.Cancel();
        _firstAttempt.TrySetResult();
        link?.Close(
            new ObjectDisposedException(nameof(DistcacheClient), $"The DistcacheClient for {Address} was disposed while the request was in flight."),
            abort: false);
        return link;
    }

    /// <summary>Receives the link's notifications without making them part of the client's public surface.</summary>
    private sealed class LinkObserver(DistcacheClient client) : ILinkObserver
    {
        public void OnLinkClosed(Link link, Exception reason) => client.OnLinkClosed(link, reason);

        public void OnFirstResponse(Link link) => client.OnFirstResponse();
    }
}
