using System.Buffers;
using System.Text;
using Distcache.Client;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// One pass over the cache for the keys a host needs now (the previous, current and next periods'): each is read;
/// one that is missing is added, from this host's saved copy if it has one (the cache lost it), else made new. ADD
/// never overwrites, so when hosts race to add a key exactly one wins and the others read the winner's.
/// </summary>
internal sealed class KeySync
{
    private const string ProxyWithoutServer = "the proxy has no link to its cache server (DISCONNECTED)";

    private readonly DistcacheClient _client;
    private readonly KeySchedule _schedule;
    private readonly bool _readOnly;

    public KeySync(DistcacheClient client, KeySchedule schedule, bool readOnly)
    {
        _client = client;
        _schedule = schedule;
        _readOnly = readOnly;
    }

    /// <summary>Brings <paramref name="ring"/> up to date with the cache for the period of <paramref name="now"/>.</summary>
    /// <returns>What happened, for the log.</returns>
    public async Task<SyncReport> RunAsync(KeyRing ring, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var report = new SyncReport();
        long period = _schedule.PeriodAt(now);
        try
        {
            for (long q = period - 1; q <= period + 1; q++)
            {
                if (!await SyncOneAsync(ring, q, period, now, report, cancellationToken).ConfigureAwait(false))
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is DistcacheConnectionException or TimeoutException)
        {
            report.Unreachable = e.Message;
        }

        return report;
    }

    // False when the cache cannot be reached, which ends the pass.
    private async Task<bool> SyncOneAsync(KeyRing ring, long q, long period, DateTimeOffset now, SyncReport report, CancellationToken cancellationToken)
    {
        byte[] id = _schedule.CacheId(q);
        string idText = $"'{Encoding.ASCII.GetString(id)}'";
        (GetOutcome outcome, byte[]? record) = await GetAsync(id, cancellationToken).ConfigureAwait(false);
        if (outcome == GetOutcome.Disconnected)
        {
            report.Unreachable = ProxyWithoutServer;
            return false;
        }

        TicketKey? saved = ring.Find(q);
        if (outcome == GetOutcome.Found)
        {
            Take(ring, q, record!, idText, saved, report);
            return true;
        }

        // Not in the cache. The previous period's key is only worth putting back if this host has it.
        if (q < period && saved is null)
        {
            return true;
        }

        if (_readOnly)
        {
            // The next period's key is needed only when that period starts, and a writer that makes keys every few
            // minutes (a timer) makes it some minutes into this one: missing, it is a problem only from half-way.
            bool early = q > period && now < _schedule.StartOf(period) + (_schedule.Period / 2);
            if (saved is null && !early)
            {
                report.Problems.Add($"the cache has no key for period {q} ({idText}) yet, and this host only reads keys: is the host that makes them running?");
            }

            return true;
        }

        TicketKey candidate = saved ?? TicketKey.Create(q, _schedule.PeriodSeconds);
        AddOutcome added = await _client.AddAsync(id, candidate.ToRecord(), _schedule.CacheLifetime(q, now), cancellationToken).ConfigureAwait(false);
        switch (added)
        {
            case AddOutcome.Stored:
                ring.Set(candidate);
                report.Events.Add(saved is null
                    ? $"made the key of {candidate} and stored it in the cache as {idText}"
                    : $"the cache had lost the key of {candidate}: stored this host's saved copy again as {idText}");
                return true;

            case AddOutcome.AlreadyExists:
                // Another host added it between the GET and the ADD: take its key.
                (outcome, record) = await GetAsync(id, cancellationToken).ConfigureAwait(false);
                if (outcome == GetOutcome.Found)
                {
                    Take(ring, q, record!, idText, saved, report);
                }
                else if (outcome == GetOutcome.Disconnected)
                {
                    report.Unreachable = ProxyWithoutServer;
                    return false;
                }
                else
                {
                    report.Problems.Add($"the cache said a key for period {q} ({idText}) exists, then had none");
                }

                return true;

            case AddOutcome.Disconnected:
                report.Unreachable = ProxyWithoutServer;
                return false;

            default:
                report.Problems.Add($"the cache refused to store the key for period {q} ({idText}): {Describe(added)}");
                return true;
        }
    }

    private void Take(KeyRing ring, long q, byte[] record, string idText, TicketKey? saved, SyncReport report)
    {
        if (!TicketKey.TryParse(record, q, _schedule.PeriodSeconds, out TicketKey? key, out string? reason))
        {
            // Never written out: a server given it would fail every ticket of the farm's other hosts, or worse.
            // The cache never overwrites it, so it stays until it expires or an operator removes it.
            report.Problems.Add($"the cache holds a malformed key for period {q} ({idText}), which is not used: {reason}");
            return;
        }

        if (saved is not null && !saved.Equals(key))
        {
            report.Problems.Add($"the cache's key for period {q} ({key.Label}) differs from the one this host saved ({saved.Label}): taking the cache's");
        }

        if (ring.Set(key) && saved is null)
        {
            report.Events.Add($"took the key of {key} from the cache");
        }
    }

    private async Task<(GetOutcome Outcome, byte[]? Record)> GetAsync(byte[] id, CancellationToken cancellationToken)
    {
        var buffer = new ArrayBufferWriter<byte>(TicketKey.RecordSize);
        GetOutcome outcome = await _client.GetAsync(id, buffer, cancellationToken).ConfigureAwait(false);
        return (outcome, outcome == GetOutcome.Found ? buffer.WrittenSpan.ToArray() : null);
    }


    private static string Describe(AddOutcome outcome) => outcome switch
    {
        AddOutcome.Rejected => "NOTOK; an identity that may only read (a read-only partition) gets this answer: give -readonly on such hosts",
        AddOutcome.TimeoutOutOfRange => "the lifetime is out of range for that server",
        AddOutcome.IdOutOfRange => "the id is too long for that server",
        AddOutcome.DataOutOfRange => "the key record is too large for that server",
        _ => outcome.ToString(),
    };
}

/// <summary>What one pass over the cache did and found.</summary>
internal sealed class SyncReport
{
    /// <summary>Why the cache could not be reached, or null when every request was answered.</summary>
    public string? Unreachable { get; set; }

    /// <summary>Keys made, taken or restored.</summary>
    public List<string> Events { get; } = [];

    /// <summary>What is wrong in the cache or with this host's permissions; each worth a warning.</summary>
    public List<string> Problems { get; } = [];

    /// <summary>True when the cache answered everything and nothing was wrong.</summary>
    public bool Complete => Unreachable is null && Problems.Count == 0;
}
