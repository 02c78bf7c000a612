namespace Distcache.Testing;

/// <summary>
/// The faults a <see cref="FaultProxy"/> applies to one direction of every connection it carries. Every property
/// may be changed while traffic flows; the change applies to the next bytes forwarded.
/// </summary>
public sealed class FaultSettings
{
    private long _delayTicks;
    private long _bytesPerSecond;
    private long _resetAfter = -1;
    private int _silent;

    /// <summary>Each chunk is delivered this long after it was read (added latency; throughput is unchanged).</summary>
    public TimeSpan Delay
    {
        get => TimeSpan.FromTicks(Volatile.Read(ref _delayTicks));
        set => Volatile.Write(ref _delayTicks, value.Ticks);
    }

    /// <summary>At most this many bytes a second are delivered; 0 = no cap.</summary>
    public long BytesPerSecond
    {
        get => Volatile.Read(ref _bytesPerSecond);
        set => Volatile.Write(ref _bytesPerSecond, value);
    }

    /// <summary>While true nothing is delivered: the bytes are held (as a stalled peer or a partitioned network
    /// would hold them) and flow again, in order, once it is false.</summary>
    public bool Silent
    {
        get => Volatile.Read(ref _silent) != 0;
        set => Volatile.Write(ref _silent, value ? 1 : 0);
    }

    /// <summary>
    /// Arms a reset: once <paramref name="bytes"/> more bytes have been delivered in this direction (over whichever
    /// connections carry them), the connection that carries the last of them is reset on both sides (RST, linger
    /// 0) right after them. One shot: the next connections are not affected unless armed again.
    /// </summary>
    public void ResetAfter(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Volatile.Write(ref _resetAfter, bytes);
    }

    /// <summary>True while a reset is armed and has not fired yet.</summary>
    public bool ResetArmed => Volatile.Read(ref _resetAfter) >= 0;

    /// <summary>Removes every fault.</summary>
    public void Clear()
    {
        Delay = TimeSpan.Zero;
        BytesPerSecond = 0;
        Silent = false;
        Volatile.Write(ref _resetAfter, -1);
    }

    /// <summary>
    /// How many of <paramref name="available"/> bytes may go before the armed reset fires, and whether it fires
    /// after them. Claims them from the arm, so concurrent connections never both deliver the same budget.
    /// </summary>
    internal (int Allowed, bool ResetAfterThem) Claim(int available)
    {
        while (true)
        {
            long left = Volatile.Read(ref _resetAfter);
            if (left < 0)
            {
                return (available, false);
            }

            if (left >= available && left > 0)
            {
                // A chunk that ends exactly on the budget is followed by the reset too.
                long rest = left - available;
                if (Interlocked.CompareExchange(ref _resetAfter, rest == 0 ? -1 : rest, left) == left)
                {
                    return (available, rest == 0);
                }

                continue;
            }

            if (Interlocked.CompareExchange(ref _resetAfter, -1, left) == left)
            {
                return ((int)left, true);
            }
        }
    }
}
