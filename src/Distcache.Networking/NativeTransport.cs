namespace Distcache.Networking;

/// <summary>What code running on the native transport's event loops can ask of them.</summary>
public static class NativeTransport
{
    /// <summary>
    /// When called on one of the native transport's event loop threads (from a read's or a flush's continuation),
    /// queues <paramref name="work"/> to run on that thread once the loop has dispatched every event of its current
    /// batch, before it waits for more, and returns true; elsewhere returns false and does nothing.
    /// </summary>
    /// <remarks>
    /// The loop's equivalent of Redis's "before sleep": work that many connections' events feed, such as one write on
    /// a connection shared by all of them, can be done once per batch instead of once per event, and without waking
    /// another thread to do it. <see cref="IThreadPoolWorkItem.Execute"/> must not block, and should catch and report
    /// its own failures: the loop only swallows them.
    /// </remarks>
    /// <param name="work">What to run.</param>
    /// <returns>True if queued; false if the caller is not on an event loop thread.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="work"/> is null.</exception>
    public static bool TryDeferToEndOfBatch(IThreadPoolWorkItem work)
    {
        ArgumentNullException.ThrowIfNull(work);
        return EventLoop.TryDefer(work);
    }
}
