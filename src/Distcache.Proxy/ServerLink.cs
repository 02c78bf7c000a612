using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Proxy;

/// <summary>A request forwarded on a server link and not yet answered.</summary>
/// <param name="Client">The local connection that sent it.</param>
/// <param name="ClientUid">The uid the local connection used, which its answer must carry.</param>
/// <param name="Operation">The operation, which the server's answer must carry too.</param>
/// <param name="SentAt">When it was queued for the server (<see cref="System.Diagnostics.Stopwatch"/> ticks).</param>
internal readonly record struct InFlightRequest(LocalConnection Client, uint ClientUid, Operation Operation, long SentAt);

/// <summary>
/// One connection to the server, from connect to loss. Everything but <see cref="Connection"/>,
/// <see cref="Writing"/> and the two completion sources is guarded by the proxy's lock.
/// </summary>
/// <remarks>
/// A link is never reused: each reconnection makes a new one, so a reader or writer still running for a lost
/// link can recognise that (<see cref="Failed"/>) and touch nothing.
/// </remarks>
internal sealed class ServerLink(NetworkConnection connection, Action<ServerLink> startWriter) : IThreadPoolWorkItem
{
    /// <summary>The connection to the server.</summary>
    public NetworkConnection Connection { get; } = connection;

    /// <summary>
    /// The requests forwarded and not yet answered, oldest first. The uids on one link are consecutive (each is
    /// assigned and queued in the same locked step), so entry i has uid <see cref="FirstUid"/> + i, and a
    /// response is matched without a lookup table.
    /// </summary>
    public Queue<InFlightRequest> InFlight { get; } = new();

    /// <summary>The uid of the oldest request in <see cref="InFlight"/> (meaningless while it is empty).</summary>
    public uint FirstUid { get; set; }

    /// <summary>Requests relabelled for the server and not yet handed to the writer.</summary>
    public OutputBuffer Staging { get; set; } = new();

    /// <summary>The batch the writer is sending; only the writer touches it.</summary>
    public OutputBuffer Writing { get; set; } = new();

    /// <summary>
    /// True while a writer is sending on the link: requests staged meanwhile go out with its next write. Claimed by
    /// whoever stages requests and finds no writer, given back in the locked step that finds nothing staged.
    /// </summary>
    public bool WriterBusy { get; set; }

    /// <summary>
    /// True when the last writer found requests staged while it wrote: the link is busy, and the next writer is
    /// started on the thread pool rather than on the staging thread, so that it gathers more requests per write.
    /// (Not consulted on a native event loop, where the writer starts at the end of the loop's batch of events.)
    /// </summary>
    public bool Contended { get; set; }

    /// <summary>Completes once the link has failed and no writer is sending on it: nothing more will be written.</summary>
    public TaskCompletionSource WriterStopped { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>True once the link has been given up; set once, under the proxy's lock.</summary>
    public bool Failed { get; set; }

    /// <summary>Completes when the link has been given up.</summary>
    public TaskCompletionSource Closed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>When the link was established (<see cref="System.Diagnostics.Stopwatch"/> ticks).</summary>
    public long ConnectedAt { get; init; }

    /// <summary>
    /// Starts the link's writer: the link itself is the work item queued for that (on the thread pool, or at the end
    /// of an event loop's batch), so that starting a writer allocates nothing.
    /// </summary>
    public void Execute() => startWriter(this);
}
