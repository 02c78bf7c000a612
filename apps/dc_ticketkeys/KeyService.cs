using System.Globalization;
using Distcache.Client;
using Distcache.Hosting;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// What dc_ticketkeys does on a host: passes over the cache (<see cref="KeySync"/>), saves what it learnt, writes the
/// servers' files and asks for a reload when they changed; as a service, again at every rotation, every
/// <see cref="KeyServiceSettings.Refresh"/> between them, and every <see cref="KeyServiceSettings.Retry"/> while
/// something is wrong.
/// </summary>
internal sealed class KeyService : IDisposable
{
    // The wake-up for a rotation comes this long after the period starts, so that the clock read on waking is surely
    // in the new period.
    private static readonly TimeSpan AfterBoundary = TimeSpan.FromMilliseconds(20);

    private readonly KeyServiceSettings _settings;
    private readonly KeySync _sync;
    private readonly ToolLog _log;
    private readonly KeyRing _ring;
    private readonly SemaphoreSlim _wake = new(0, 1);
    private bool _reloadPending;
    private TicketKey? _announced;
    private string? _lastUnreachable;

    public KeyService(KeyServiceSettings settings, DistcacheClient client, ToolLog log)
    {
        _settings = settings;
        _log = log;
        _sync = new KeySync(client, settings.Schedule, settings.ReadOnly);
        _ring = StateFile.Load(settings.StatePath, settings.Schedule, out string? problem);
        if (problem is not null)
        {
            log.Warning(problem);
        }

        // A reload that an earlier run owed the servers (it failed, or the run ended first) is still owed: with
        // -once every run is a new process, and the files it finds are already the new ones.
        _reloadPending = settings.Reload is not null && File.Exists(ReloadMarker);
    }

    /// <summary>Exists while the servers have not been reloaded since their files last changed.</summary>
    private string ReloadMarker => _settings.StatePath + ".reload-pending";

    public void Dispose() => _wake.Dispose();

    /// <summary>Ends the current wait: the next pass starts now (SIGHUP).</summary>
    public void WakeUp()
    {
        try
        {
            _wake.Release();
        }
        catch (SemaphoreFullException)
        {
            // A wake-up is already pending.
        }
    }

    /// <summary>One pass: cache, state file, servers' files, reload.</summary>
    /// <returns>True when the cache answered, nothing was wrong, the servers have this period's key and the reload (if
    /// any was needed) succeeded.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<bool> PassAsync(CancellationToken cancellationToken) => (await PassForPeriodAsync(cancellationToken).ConfigureAwait(false)).Complete;

    private async Task<(bool Complete, long Period)> PassForPeriodAsync(CancellationToken cancellationToken)
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        long period = _settings.Schedule.PeriodAt(now);
        SyncReport report = await _sync.RunAsync(_ring, now, cancellationToken).ConfigureAwait(false);
        foreach (string line in report.Events)
        {
            _log.Info(line);
        }

        foreach (string line in report.Problems)
        {
            _log.Warning(line);
        }

        if (report.Unreachable is { } why)
        {
            // Once per outage: a retry every few seconds would otherwise fill the log with the same line.
            if (_lastUnreachable is null)
            {
                _log.Warning($"cannot reach the cache at {_settings.Cache}: {why}; the servers keep the keys they have, retrying every {Seconds(_settings.Retry)}");
            }

            _lastUnreachable = why;
        }
        else if (_lastUnreachable is not null)
        {
            _log.Info($"the cache at {_settings.Cache} answers again");
            _lastUnreachable = null;
        }

        _ring.ForgetBefore(period - 1);
        try
        {
            StateFile.Save(_settings.StatePath, _settings.Schedule, _ring);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warning($"cannot save the keys in {_settings.StatePath}: {e.Message}");
        }

        ServedKeys? keys = _ring.Select(period);
        if (keys is null)
        {
            _log.Error($"no ticket key is known yet (the cache {(report.Unreachable is null ? "has none for this period" : "is out of reach")}, and none was saved); the servers' key files are left as they are");
            return (false, period);
        }

        if (keys.IsStale)
        {
            _log.Warning(string.Create(CultureInfo.InvariantCulture, $"no key for period {period} is known: the servers keep encrypting with the key of {keys.Current}"));
        }

        bool served = await WriteAndReloadAsync(keys, cancellationToken).ConfigureAwait(false);
        return (served && report.Complete && !keys.IsStale, period);
    }

    /// <summary>Passes until <paramref name="cancellationToken"/> is cancelled.</summary>
    /// <param name="ready">Called once, after the first pass.</param>
    public async Task RunAsync(Action ready, CancellationToken cancellationToken)
    {
        bool first = true;
        while (!cancellationToken.IsCancellationRequested)
        {
            bool complete;
            long period;
            try
            {
                (complete, period) = await PassForPeriodAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            if (first)
            {
                ready();
                first = false;
            }

            DateTimeOffset now = DateTimeOffset.UtcNow;
            if (_settings.Schedule.PeriodAt(now) != period)
            {
                // The pass began before a boundary and ended after it: the servers hold the old period's keys.
                continue;
            }

            TimeSpan untilRotation = _settings.Schedule.StartOf(_settings.Schedule.PeriodAt(now) + 1) - now + AfterBoundary;
            TimeSpan wait = complete ? _settings.Refresh : _settings.Retry;
            try
            {
                await _wake.WaitAsync(wait < untilRotation ? wait : untilRotation, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task<bool> WriteAndReloadAsync(ServedKeys keys, CancellationToken cancellationToken)
    {
        (List<string> written, List<string> failed) = _settings.Files.Write(keys);
        if (written.Count > 0)
        {
            _log.Info($"wrote {string.Join(", ", written)}");
            OweReload();
        }

        foreach (string unwritten in failed)
        {
            _log.Error($"cannot write {unwritten}; the servers keep that file's keys, retrying every {Seconds(_settings.Retry)}");
        }

        // Said when the files change to a new current key: a -once pass that changed nothing prints nothing.
        if (written.Count > 0 && !keys.Current.Equals(_announced))
        {
            TicketKey[] others = _settings.Files.CurrentKeyOnly ? [] : [.. new[] { keys.Previous, keys.Next }.Where(k => !k.Equals(keys.Current)).Distinct()];
            _log.Info(_settings.Files.CurrentKeyOnly
                ? $"servers encrypt and decrypt with the key of {keys.Current} alone (Apache's file holds one key)"
                : others.Length == 0
                ? $"servers encrypt with the key of {keys.Current}, the only one known"
                : $"servers encrypt with the key of {keys.Current} and also decrypt with the key{(others.Length > 1 ? "s" : string.Empty)} of {string.Join(" and ", others.Select(k => k.ToString()))}");
            _announced = keys.Current;
        }

        if (!_reloadPending || _settings.Reload is null)
        {
            return failed.Count == 0;
        }

        string? failure = await _settings.Reload.RunAsync(cancellationToken).ConfigureAwait(false);
        if (failure is not null)
        {
            _log.Error($"the reload command ({_settings.Reload.Command}) {failure}; the servers may still hold the old keys, trying again in {Seconds(_settings.Retry)}");
            return false;
        }

        _log.Info($"ran the reload command ({_settings.Reload.Command})");
        _reloadPending = false;
        try
        {
            File.Delete(ReloadMarker);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warning($"cannot remove {ReloadMarker}: {e.Message}; the next run reloads the servers once more");
        }

        return failed.Count == 0;
    }

    // Remembered on disk first, so that a reload that fails, or a run that ends before it, is owed by the next run.
    private void OweReload()
    {
        if (_settings.Reload is null || _reloadPending)
        {
            return;
        }

        _reloadPending = true;
        try
        {
            AtomicFile.WriteIfChanged(ReloadMarker, [], KeyFiles.Mode);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warning($"cannot write {ReloadMarker}: {e.Message}; if this reload fails, a later -once run will not know to retry it");
        }
    }

    private static string Seconds(TimeSpan span) => string.Create(CultureInfo.InvariantCulture, $"{span.TotalSeconds:0.###} s");
}

/// <summary>The settings of a <see cref="KeyService"/>, from the command line.</summary>
internal sealed class KeyServiceSettings
{
    public required KeySchedule Schedule { get; init; }

    /// <summary>The cache's address, for log lines.</summary>
    public required string Cache { get; init; }

    public required KeyFiles Files { get; init; }

    public required string StatePath { get; init; }

    public ReloadCommand? Reload { get; init; }

    public bool ReadOnly { get; init; }

    public TimeSpan Refresh { get; init; } = TimeSpan.FromMinutes(5);

    public TimeSpan Retry { get; init; } = TimeSpan.FromSeconds(30);
}
