using System.Threading.Tasks.Sources;

namespace Distcache.Networking;

/// <summary>
/// The one operation a half of <see cref="SocketPipes"/> can have waiting (a read, or a flush): the task source its
/// caller awaits, the registration of the caller's cancellation token, and whether it still waits. It shares its
/// owner's lock, under which the owner decides whether to wait at all and with what result a wait ends.
/// </summary>
/// <typeparam name="TResult">What the wait ends with.</typeparam>
/// <param name="gate">The owner's lock.</param>
internal sealed class PendingWait<TResult>(Lock gate) : IValueTaskSource<TResult>
{
    private ManualResetValueTaskSourceCore<TResult> _source;
    private CancellationTokenRegistration _cancellation;

    /// <summary>Under the lock: true from <see cref="Begin"/> until <see cref="TryEnd"/> or the token ends the wait.</summary>
    public bool IsWaiting { get; private set; }

    /// <summary>Under the lock: starts a wait. Returns its version, for <see cref="Await"/>.</summary>
    public short Begin()
    {
        _source.Reset();
        IsWaiting = true;
        return _source.Version;
    }

    /// <summary>
    /// Out of the lock, right after <see cref="Begin"/>: the task the caller awaits. A token that can fire ends the
    /// wait with <see cref="OperationCanceledException"/> when it does.
    /// </summary>
    public ValueTask<TResult> Await(short version, CancellationToken cancellationToken)
    {
        if (cancellationToken.CanBeCanceled)
        {
            // Registered out of the lock, because a token cancelled meanwhile runs the callback at once, and kept
            // only if this wait is still the current one: the event loop may have ended it in between, and a
            // registration left behind would cancel some later wait.
            CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(
                static (state, token) => ((PendingWait<TResult>)state!).Cancel(token), this);
            bool kept;
            lock (gate)
            {
                kept = IsWaiting && _source.Version == version;
                if (kept)
                {
                    _cancellation = registration;
                }
            }

            if (!kept)
            {
                registration.Unregister();
            }
        }

        return new ValueTask<TResult>(this, version);
    }

    /// <summary>
    /// Under the lock: ends the wait, if there is one. When this returns true the caller must call
    /// <see cref="Complete"/>, out of the lock.
    /// </summary>
    public bool TryEnd()
    {
        if (!IsWaiting)
        {
            return false;
        }

        IsWaiting = false;
        return true;
    }

    /// <summary>Out of the lock, after <see cref="TryEnd"/>: hands the waiting caller its result, or the failure.</summary>
    /// <remarks>The caller's continuation may run inline, on this thread, before this returns.</remarks>
    public void Complete(TResult result, Exception? failure)
    {
        CancellationTokenRegistration registration;
        lock (gate)
        {
            registration = _cancellation;
            _cancellation = default;
        }

        registration.Unregister();
        if (failure is null)
        {
            _source.SetResult(result);
        }
        else
        {
            _source.SetException(failure);
        }
    }

    TResult IValueTaskSource<TResult>.GetResult(short token) => _source.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<TResult>.GetStatus(short token) => _source.GetStatus(token);

    void IValueTaskSource<TResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _source.OnCompleted(continuation, state, token, flags);

    private void Cancel(CancellationToken token)
    {
        lock (gate)
        {
            if (!TryEnd())
            {
                return;
            }

            // This registration is the one running; there is nothing left to unregister.
            _cancellation = default;
        }

        _source.SetException(new OperationCanceledException(token));
    }
}
