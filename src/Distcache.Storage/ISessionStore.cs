namespace Distcache.Storage;

/// <summary>
/// Receives the bytes of a stored session while the store guarantees they are stable.
/// The span is valid only for the duration of the call: copy what you need.
/// </summary>
/// <remarks>
/// The in-memory store calls the reader while holding its lock, so a reader must be short (a copy)
/// and must not call back into the store.
/// </remarks>
/// <typeparam name="TState">Caller state passed through without allocation (for example the connection's output writer).</typeparam>
/// <param name="data">The session's data; only valid during the call.</param>
/// <param name="state">The state the caller passed to <see cref="ISessionStore.GetAsync{TState}"/>.</param>
public delegate void SessionDataReader<in TState>(ReadOnlySpan<byte> data, TState state);

/// <summary>Outcome of <see cref="ISessionStore.AddAsync"/>.</summary>
public enum AddResult
{
    /// <summary>The session was stored (possibly after evicting others to make room).</summary>
    Stored,

    /// <summary>A live session with this id already exists; it was kept unchanged (ADD never overwrites).</summary>
    AlreadyExists,

    /// <summary>The store could not take the session (for example its backend is unreachable).</summary>
    Failed,
}

/// <summary>
/// Session storage behind the server (1.5.1's <c>DC_CACHE_cb</c>). Ids and data arrive already
/// validated against the protocol limits (<see cref="SessionStoreLimits"/>); a store enforces its
/// own capacity bounds.
/// </summary>
/// <remarks>
/// <para>Every method returns a <see cref="ValueTask"/> so that a remote store can be asynchronous while
/// the in-memory store completes synchronously and allocates nothing.</para>
/// <para>Expiry: a session added at time t with timeout T is live while now &lt; t + T. From t + T on
/// (exactly) it is invisible to every operation, including the duplicate check of
/// <see cref="AddAsync"/>, and is not counted. A timeout of zero stores a session that is never visible.</para>
/// <para>Implementations are thread-safe. Ids or data outside <see cref="SessionStoreLimits"/>, or a
/// negative timeout, are a caller bug and raise <see cref="ArgumentException"/>.
/// All implementations must pass the contract test suite in <c>Distcache.Storage.Tests</c>.</para>
/// </remarks>
public interface ISessionStore : IDisposable
{
    /// <summary>Stores <paramref name="data"/> under <paramref name="id"/> for <paramref name="timeout"/>,
    /// unless a live session with that id exists.</summary>
    /// <param name="id">The session id, 1 to <see cref="SessionStoreLimits.MaxIdLength"/> bytes; copied.</param>
    /// <param name="data">The session data, 1 to <see cref="SessionStoreLimits.MaxDataLength"/> bytes; copied.</param>
    /// <param name="timeout">How long the session stays live; zero means never visible.</param>
    /// <param name="cancellationToken">Cancels a pending remote operation.</param>
    /// <returns><see cref="AddResult.Stored"/> if stored (a full store evicts rather than refusing),
    /// <see cref="AddResult.AlreadyExists"/> if a live session with the id was kept, or
    /// <see cref="AddResult.Failed"/> if the backend could not take it.</returns>
    ValueTask<AddResult> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default);

    /// <summary>Looks up a live session and, if found, hands its bytes to <paramref name="reader"/> before returning true.</summary>
    /// <typeparam name="TState">The type of <paramref name="state"/>.</typeparam>
    /// <param name="id">The session id.</param>
    /// <param name="reader">Called once with the data if the session is live; not called otherwise.</param>
    /// <param name="state">Passed to <paramref name="reader"/>.</param>
    /// <param name="cancellationToken">Cancels a pending remote operation.</param>
    /// <returns>True if a live session was found and read; false if there is none (or it has expired).</returns>
    ValueTask<bool> GetAsync<TState>(ReadOnlyMemory<byte> id, SessionDataReader<TState> reader, TState state, CancellationToken cancellationToken = default);

    /// <summary>Removes a live session.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="cancellationToken">Cancels a pending remote operation.</param>
    /// <returns>True if a live session was removed; false if there was none (an expired one counts as none).</returns>
    ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default);

    /// <summary>Tells whether a live session with this id exists, without reading its data.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="cancellationToken">Cancels a pending remote operation.</param>
    /// <returns>True if a live session exists.</returns>
    ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default);

    /// <summary>Counts the live sessions.</summary>
    /// <param name="cancellationToken">Cancels a pending remote operation.</param>
    /// <returns>The number of live (unexpired) sessions.</returns>
    ValueTask<long> CountAsync(CancellationToken cancellationToken = default);
}
