using System.Buffers;
using System.Buffers.Text;
using System.Text;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Distcache.Storage.Redis;

/// <summary>
/// Sessions kept in Redis (or Valkey), a single server or a Redis Cluster, so that several dc_server processes
/// serve one shared set of sessions and a restarted server loses none.
/// </summary>
/// <remarks>
/// <para>Each session is one string key, <see cref="RedisSessionStoreOptions.KeyPrefix"/> followed by the id's
/// bytes. Its value is the session's deadline (16 ASCII digits, Unix milliseconds by the adding server's clock)
/// followed by the data. Every operation is one atomic Redis command: ADD is <c>SET NX PX</c>, GET is
/// <c>GET</c>, HAVE is <c>GETRANGE</c> of the deadline, REMOVE a script that deletes and says whether the
/// session was still live. Only an ADD that meets a key whose deadline has passed but whose Redis TTL has not
/// (the <see cref="RedisSessionStoreOptions.ExpiryGrace"/>) takes a second command, a script that replaces it.</para>
/// <para>Capacity is Redis's: the store enforces no session count or byte bound; configure <c>maxmemory</c> with
/// <c>maxmemory-policy volatile-ttl</c>, which, like the in-memory store, evicts the sessions expiring soonest.
/// A write Redis refuses (out of memory) is a failed ADD.</para>
/// <para>When Redis is unreachable or slow every operation ends within
/// <see cref="RedisSessionStoreOptions.OperationTimeout"/> as a failure: a failed ADD, or a miss for GET, HAVE and
/// REMOVE. Commands are not queued while disconnected, and the connection is re-established in the background.</para>
/// </remarks>
public sealed class RedisSessionStore : ISessionStore
{
    /// <summary>Bytes of the deadline stored before each session's data.</summary>
    internal const int HeaderLength = 16;

    // The largest deadline the header holds; "never" in practice. Lua compares deadlines as doubles, which are exact
    // far beyond any real Unix millisecond value.
    private const long MaxDeadline = 9_999_999_999_999_999;

    // Redis refuses a TTL that overflows its clock; a century is "forever" for a TLS session.
    private const long MaxTtlMilliseconds = 100L * 365 * 24 * 3600 * 1000;

    // Runs only when SET NX found a key: replaces it if its deadline has passed (by the caller's clock), atomically.
    private const string ReplaceExpiredScript = """
        local h = redis.call('GETRANGE', KEYS[1], 0, 15)
        if h ~= '' and tonumber(h) ~= nil and tonumber(h) > tonumber(ARGV[3]) then return 0 end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return 1
        """;

    // Deletes the key and tells whether it was live, in one step, so that two removers cannot both succeed.
    private const string RemoveScript = """
        local h = redis.call('GETRANGE', KEYS[1], 0, 15)
        if h == '' then return 0 end
        redis.call('DEL', KEYS[1])
        if tonumber(h) ~= nil and tonumber(h) > tonumber(ARGV[1]) then return 1 end
        return 0
        """;

    private readonly IConnectionMultiplexer _connection;
    private readonly bool _ownsConnection;
    private readonly IDatabase _database;
    private readonly int _databaseNumber;
    private readonly byte[] _prefix;
    private readonly RedisValue _pattern;
    private readonly TimeProvider _clock;
    private readonly long _graceMilliseconds;
    private readonly TimeSpan _countRefresh;
    private readonly ILogger? _logger;
    private readonly SemaphoreSlim _counting = new(1, 1);
    private long _failures;
    private long _lastFailureLoggedAt;
    private long _countedAt;
    private long _count = -1;

    /// <summary>Connects to the Redis servers of <paramref name="options"/>. Returns at once even if none is
    /// reachable yet: the store then answers as a failure until the connection is made.</summary>
    /// <param name="options">Where Redis is and how to use it.</param>
    /// <exception cref="ArgumentException">The options are invalid (no endpoint, a negative timeout, ...).</exception>
    public RedisSessionStore(RedisSessionStoreOptions options)
        : this(Connect(options), options, ownsConnection: true)
    {
    }

    /// <summary>A store on an existing connection, which it does not dispose (several stores, for example with
    /// different key prefixes, can share one connection).</summary>
    /// <param name="connection">The connection to Redis.</param>
    /// <param name="options">The key prefix, database, clock and logger to use; the endpoints are ignored.</param>
    public RedisSessionStore(IConnectionMultiplexer connection, RedisSessionStoreOptions options)
        : this(connection, options, ownsConnection: false)
    {
    }

    private RedisSessionStore(IConnectionMultiplexer connection, RedisSessionStoreOptions options, bool ownsConnection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(options);
        _connection = connection;
        _ownsConnection = ownsConnection;
        _databaseNumber = options.Database;
        _database = connection.GetDatabase(options.Database);
        _prefix = Encoding.UTF8.GetBytes(options.KeyPrefix ?? string.Empty);
        _pattern = EscapeGlob(options.KeyPrefix ?? string.Empty) + "*";
        _clock = options.TimeProvider ?? TimeProvider.System;
        _graceMilliseconds = (long)options.ExpiryGrace.TotalMilliseconds;
        _countRefresh = options.CountRefreshInterval;
        _logger = options.Logger;
        if (_logger is not null)
        {
            connection.ConnectionFailed += OnConnectionFailed;
            connection.ConnectionRestored += OnConnectionRestored;
        }
    }

    /// <summary>Builds the client configuration for <paramref name="options"/>: the one place where the store's
    /// connection behaviour (fail fast, short timeouts, reconnect in the background) is decided.</summary>
    /// <param name="options">The store's options.</param>
    /// <returns>The configuration to connect with.</returns>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public static ConfigurationOptions CreateConfiguration(RedisSessionStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Validate(options);
        var configuration = new ConfigurationOptions
        {
            // Never fail the constructor for an unreachable Redis: the server starts and answers misses until it is back.
            AbortOnConnectFail = false,
            // Commands issued while disconnected fail at once instead of waiting in a backlog: a TLS handshake
            // behind a cache lookup prefers a quick miss to a late hit.
            BacklogPolicy = BacklogPolicy.FailFast,
            ConnectTimeout = (int)options.ConnectTimeout.TotalMilliseconds,
            SyncTimeout = (int)options.OperationTimeout.TotalMilliseconds,
            AsyncTimeout = (int)options.OperationTimeout.TotalMilliseconds,
            ConnectRetry = 1,
            ReconnectRetryPolicy = new ExponentialRetry(250, 5000),
            KeepAlive = 5,
            DefaultDatabase = options.Database,
            User = options.User,
            Password = options.Password,
            Ssl = options.UseTls,
            ClientName = "distcache",
        };
        foreach (string endpoint in options.Endpoints)
        {
            configuration.EndPoints.Add(endpoint);
        }

        if (options.TlsCertificateAuthorityFile is { } authority)
        {
            configuration.TrustIssuer(authority);
        }

        return configuration;
    }

    private static ConnectionMultiplexer Connect(RedisSessionStoreOptions options) =>
        ConnectionMultiplexer.Connect(CreateConfiguration(options));

    private static void Validate(RedisSessionStoreOptions options)
    {
        if (options.Endpoints.Count == 0)
        {
            throw new ArgumentException("At least one Redis endpoint is required.", nameof(options));
        }

        if (options.Database < 0)
        {
            throw new ArgumentException("The database number must not be negative.", nameof(options));
        }

        if (options.TlsCertificateAuthorityFile is not null && !options.UseTls)
        {
            throw new ArgumentException("TlsCertificateAuthorityFile requires UseTls.", nameof(options));
        }

        CheckMilliseconds(options.ConnectTimeout, "ConnectTimeout");
        CheckMilliseconds(options.OperationTimeout, "OperationTimeout");
        if (options.ExpiryGrace < TimeSpan.Zero || options.CountRefreshInterval < TimeSpan.Zero)
        {
            throw new ArgumentException("ExpiryGrace and CountRefreshInterval must not be negative.", nameof(options));
        }
    }

    private static void CheckMilliseconds(TimeSpan value, string name)
    {
        if (value < TimeSpan.FromMilliseconds(1) || value > TimeSpan.FromMilliseconds(int.MaxValue))
        {
            throw new ArgumentException($"{name} must be between 1 ms and {int.MaxValue} ms.", nameof(value));
        }
    }

    /// <summary>Whether at least one Redis server is connected now.</summary>
    public bool IsConnected => _connection.IsConnected;

    /// <summary>Failed Redis operations since the store was created (each answered as a miss or a failed ADD).</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <inheritdoc />
    public async ValueTask<AddResult> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        SessionStoreLimits.ValidateId(id.Span);
        SessionStoreLimits.ValidateData(data.Span);
        SessionStoreLimits.ValidateTimeout(timeout);
        cancellationToken.ThrowIfCancellationRequested();
        RedisKey key = Key(id.Span);
        try
        {
            long now = NowMilliseconds();
            if (timeout == TimeSpan.Zero)
            {
                // Stored and at once expired: nothing to write, but a live session still answers "exists".
                return await IsLiveAsync(key, now, cancellationToken).ConfigureAwait(false) ? AddResult.AlreadyExists : AddResult.Stored;
            }

            // Sub-millisecond timeouts round up: the protocol speaks whole milliseconds, and zero was handled above.
            long timeoutMs = Math.Clamp((timeout.Ticks / TimeSpan.TicksPerMillisecond) + (timeout.Ticks % TimeSpan.TicksPerMillisecond == 0 ? 0 : 1), 1, MaxDeadline);
            long deadline = now > MaxDeadline - timeoutMs ? MaxDeadline : now + timeoutMs;
            long ttl = Math.Min(timeoutMs, MaxTtlMilliseconds - _graceMilliseconds) + _graceMilliseconds;
            byte[] value = new byte[HeaderLength + data.Length];
            WriteDeadline(value, deadline);
            data.Span.CopyTo(value.AsSpan(HeaderLength));

            bool stored = await WithCancellation(_database.StringSetAsync(key, value, TimeSpan.FromMilliseconds(ttl), When.NotExists), cancellationToken).ConfigureAwait(false);
            if (!stored)
            {
                RedisResult replaced = await WithCancellation(
                    _database.ScriptEvaluateAsync(ReplaceExpiredScript, [key], [value, ttl, now]), cancellationToken).ConfigureAwait(false);
                stored = (long)replaced == 1;
            }

            Succeeded();
            return stored ? AddResult.Stored : AddResult.AlreadyExists;
        }
        catch (Exception e) when (IsRedisFailure(e))
        {
            Failed(e);
            return AddResult.Failed;
        }
    }

    /// <inheritdoc />
    public async ValueTask<bool> GetAsync<TState>(ReadOnlyMemory<byte> id, SessionDataReader<TState> reader, TState state, CancellationToken cancellationToken = default)
    {
        SessionStoreLimits.ValidateId(id.Span);
        ArgumentNullException.ThrowIfNull(reader);
        cancellationToken.ThrowIfCancellationRequested();
        RedisKey key = Key(id.Span);
        Lease<byte>? lease;
        try
        {
            lease = await WithCancellation(_database.StringGetLeaseAsync(key), cancellationToken).ConfigureAwait(false);
            Succeeded();
        }
        catch (Exception e) when (IsRedisFailure(e))
        {
            Failed(e);
            return false;
        }

        using (lease)
        {
            if (lease is null || lease.Length <= HeaderLength || !TryReadDeadline(lease.Span, out long deadline) || deadline <= NowMilliseconds())
            {
                return false;
            }

            reader(lease.Span[HeaderLength..], state);
            return true;
        }
    }

    /// <inheritdoc />
    public async ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        SessionStoreLimits.ValidateId(id.Span);
        cancellationToken.ThrowIfCancellationRequested();
        RedisKey key = Key(id.Span);
        try
        {
            RedisResult removed = await WithCancellation(_database.ScriptEvaluateAsync(RemoveScript, [key], [NowMilliseconds()]), cancellationToken).ConfigureAwait(false);
            Succeeded();
            return (long)removed == 1;
        }
        catch (Exception e) when (IsRedisFailure(e))
        {
            Failed(e);
            return false;
        }
    }

    /// <inheritdoc />
    public async ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        SessionStoreLimits.ValidateId(id.Span);
        cancellationToken.ThrowIfCancellationRequested();
        try
        {
            bool live = await IsLiveAsync(Key(id.Span), NowMilliseconds(), cancellationToken).ConfigureAwait(false);
            Succeeded();
            return live;
        }
        catch (Exception e) when (IsRedisFailure(e))
        {
            Failed(e);
            return false;
        }
    }

    /// <inheritdoc />
    /// <remarks>Scans every key under the prefix on every primary (SCAN, then the deadline of each), so the result
    /// is reused for <see cref="RedisSessionStoreOptions.CountRefreshInterval"/>. While Redis is unreachable the
    /// last count is returned (0 if there was none); a primary that is down is left out.</remarks>
    public async ValueTask<long> CountAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        await _counting.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            long last = Interlocked.Read(ref _count);
            if (last >= 0 && _countRefresh > TimeSpan.Zero && _clock.GetElapsedTime(_countedAt) < _countRefresh)
            {
                return last;
            }

            long counted = await WithCancellation(ScanCountAsync(), cancellationToken).ConfigureAwait(false);
            Succeeded();
            Interlocked.Exchange(ref _count, counted);
            _countedAt = _clock.GetTimestamp();
            return counted;
        }
        catch (Exception e) when (IsRedisFailure(e))
        {
            Failed(e);
            return Math.Max(Interlocked.Read(ref _count), 0);
        }
        finally
        {
            _counting.Release();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_logger is not null)
        {
            _connection.ConnectionFailed -= OnConnectionFailed;
            _connection.ConnectionRestored -= OnConnectionRestored;
        }

        _counting.Dispose();
        if (_ownsConnection)
        {
            _connection.Dispose();
        }
    }

    private async Task<long> ScanCountAsync()
    {
        long live = 0;
        foreach (IServer server in Primaries())
        {
            var batch = new List<RedisKey>(1000);
            await foreach (RedisKey key in server.KeysAsync(_databaseNumber, _pattern, 1000).ConfigureAwait(false))
            {
                batch.Add(key);
                if (batch.Count == 1000)
                {
                    live += await CountLiveAsync(batch).ConfigureAwait(false);
                }
            }

            live += await CountLiveAsync(batch).ConfigureAwait(false);
        }

        return live;
    }

    private async Task<long> CountLiveAsync(List<RedisKey> keys)
    {
        if (keys.Count == 0)
        {
            return 0;
        }

        // Pipelined: the client sends the whole batch before the first answer arrives.
        RedisValue[] headers = await Task.WhenAll(keys.Select(k => _database.StringGetRangeAsync(k, 0, HeaderLength - 1))).ConfigureAwait(false);
        keys.Clear();
        long now = NowMilliseconds();
        long live = 0;
        foreach (RedisValue header in headers)
        {
            if (header.HasValue && TryReadDeadline((byte[])header!, out long deadline) && deadline > now)
            {
                live++;
            }
        }

        return live;
    }

    private IEnumerable<IServer> Primaries() =>
        _connection.GetServers().Where(s => s.IsConnected && !s.IsReplica);

    private async Task<bool> IsLiveAsync(RedisKey key, long now, CancellationToken cancellationToken)
    {
        RedisValue header = await WithCancellation(_database.StringGetRangeAsync(key, 0, HeaderLength - 1), cancellationToken).ConfigureAwait(false);
        return header.HasValue && TryReadDeadline((byte[])header!, out long deadline) && deadline > now;
    }

    private RedisKey Key(ReadOnlySpan<byte> id)
    {
        byte[] key = new byte[_prefix.Length + id.Length];
        _prefix.CopyTo(key, 0);
        id.CopyTo(key.AsSpan(_prefix.Length));
        return key;
    }

    private long NowMilliseconds() => _clock.GetUtcNow().ToUnixTimeMilliseconds();

    internal static void WriteDeadline(Span<byte> destination, long deadline)
    {
        // Fixed width, so the data always starts at the same offset and Lua can read it with one GETRANGE.
        bool written = Utf8Formatter.TryFormat(deadline, destination[..HeaderLength], out int length, new StandardFormat('D', HeaderLength));
        System.Diagnostics.Debug.Assert(written && length == HeaderLength);
    }

    internal static bool TryReadDeadline(ReadOnlySpan<byte> value, out long deadline)
    {
        deadline = 0;
        return value.Length >= HeaderLength
            && Utf8Parser.TryParse(value[..HeaderLength], out deadline, out int consumed)
            && consumed == HeaderLength;
    }

    private static string EscapeGlob(string text)
    {
        var escaped = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            if (c is '*' or '?' or '[' or ']' or '\\')
            {
                escaped.Append('\\');
            }

            escaped.Append(c);
        }

        return escaped.ToString();
    }

    private static Task<T> WithCancellation<T>(Task<T> task, CancellationToken cancellationToken) =>
        cancellationToken.CanBeCanceled ? task.WaitAsync(cancellationToken) : task;

    // Connection loss, timeouts and refusals by Redis (out of memory, wrong type, no such script after a restart
    // is retried by the client itself) all become a failure answer; anything else is a bug and propagates.
    private static bool IsRedisFailure(Exception e) => e is RedisException or TimeoutException;

    private void Succeeded()
    {
        if (Volatile.Read(ref _lastFailureLoggedAt) != 0 && _logger is not null)
        {
            Interlocked.Exchange(ref _lastFailureLoggedAt, 0);
            Log.Recovered(_logger);
        }
    }

    private void Failed(Exception e)
    {
        long failures = Interlocked.Increment(ref _failures);
        if (_logger is null)
        {
            return;
        }

        // At most one line every ten seconds, however many requests fail meanwhile.
        long now = Environment.TickCount64;
        long last = Volatile.Read(ref _lastFailureLoggedAt);
        if ((last == 0 || now - last >= 10_000) && Interlocked.CompareExchange(ref _lastFailureLoggedAt, now, last) == last)
        {
            Log.OperationFailed(_logger, failures, e.Message);
        }
    }

    private void OnConnectionFailed(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType == ConnectionType.Interactive && _logger!.IsEnabled(LogLevel.Warning))
        {
            Log.ConnectionFailed(_logger!, e.EndPoint, e.FailureType);
        }
    }

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType == ConnectionType.Interactive && _logger!.IsEnabled(LogLevel.Information))
        {
            Log.ConnectionRestored(_logger!, e.EndPoint);
        }
    }
}
