namespace Distcache.Apps.TicketKeys;

/// <summary>
/// The keys a host knows, by period: what the cache gave it, and what it kept on disk from before. It chooses the
/// three a server is given, and forgets keys no server needs any more.
/// </summary>
internal sealed class KeyRing
{
    private readonly SortedDictionary<long, TicketKey> _keys = [];

    public int Count => _keys.Count;

    public IEnumerable<TicketKey> Keys => _keys.Values;

    public TicketKey? Find(long period) => _keys.GetValueOrDefault(period);

    /// <summary>Adds or replaces the key of its period.</summary>
    /// <returns>True when the ring changed.</returns>
    public bool Set(TicketKey key)
    {
        if (_keys.TryGetValue(key.Period, out TicketKey? known) && known.Equals(key))
        {
            return false;
        }

        _keys[key.Period] = key;
        return true;
    }

    /// <summary>Forgets keys of periods before <paramref name="period"/>: no server may decrypt with them any more.</summary>
    /// <returns>True when a key was forgotten.</returns>
    public bool ForgetBefore(long period)
    {
        long[] old = [.. _keys.Keys.Where(p => p < period)];
        foreach (long p in old)
        {
            _keys.Remove(p);
        }

        return old.Length > 0;
    }

    /// <summary>
    /// The keys servers get during <paramref name="period"/>. The current key is that period's, or while it is
    /// unknown (the cache was out of reach at the rotation, and no key for it came before) the newest older one, so
    /// that servers keep encrypting with a key the others still hold. A slot whose key is unknown repeats the
    /// current key, since the servers' configurations name a fixed number of keys.
    /// </summary>
    /// <returns>Null when no key at all is known.</returns>
    public ServedKeys? Select(long period)
    {
        TicketKey? current = Find(period) ?? _keys.Values.LastOrDefault(k => k.Period < period);
        if (current is null)
        {
            return null;
        }

        return new ServedKeys(Find(period - 1) ?? current, current, Find(period + 1) ?? current, IsStale: current.Period != period);
    }
}

/// <summary>The three keys servers hold: the previous period's and the next period's decrypt only, the current encrypts.</summary>
/// <param name="Previous">The previous period's key (or the current one, when it is unknown).</param>
/// <param name="Current">The key that encrypts new tickets.</param>
/// <param name="Next">The next period's key (or the current one, when it is unknown).</param>
/// <param name="IsStale">True when the current key is an older period's, because this period's is unknown.</param>
internal sealed record ServedKeys(TicketKey Previous, TicketKey Current, TicketKey Next, bool IsStale);
