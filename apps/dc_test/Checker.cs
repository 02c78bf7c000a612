using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Distcache.Apps.Test.Load;
using Distcache.Client;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Apps.Test;

/// <summary>What <c>dc_test -check</c> was asked to do.</summary>
internal sealed record CheckSettings
{
    public required Address Target { get; init; }

    public int Clients { get; init; } = 4;

    public int Pipeline { get; init; } = 8;

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    public required OperationMix Mix { get; init; }

    public int Keys { get; init; } = 500;

    public int IdSize { get; init; } = 32;

    public int DataMin { get; init; } = 50;

    public int DataMax { get; init; } = 2100;

    public uint SessionTimeoutMilliseconds { get; init; } = 60_000;

    public TimeSpan Slack { get; init; } = TimeSpan.FromSeconds(1);

    public ulong Progress { get; init; }

    public ulong Seed { get; init; }
}

/// <summary>
/// The long-run checker: random operations for a while, every answer recorded against a model of what the cache
/// may hold, failing at the first answer that is a lie. A cache may miss (a session evicted, a server restarted
/// empty, a proxy without its server); it must never return bytes that are not the session's, a session after an
/// acknowledged REMOVE, or a session after its expiry (beyond a clock slack).
/// </summary>
/// <remarks>
/// Every ADD stores a new version of its key, and the data encodes it: four bytes of version, then bytes derived
/// from the id and the version, so any hit names the ADD it came from and wrong bytes cannot pass. Each key
/// belongs to one worker, which has at most one request on it at a time, so its answers are in a known order.
/// An ADD whose outcome is unknown (the proxy answered DISCONNECTED, the link failed, no answer in time) may have
/// been stored, even after later operations on the key (its request may still sit in a dying connection's
/// buffers). Its version stays possible: a REMOVE or a successful ADD retires it only if sent more than
/// <see cref="UnknownWindow"/> after the failure, and it expires at the failure plus that window plus the timeout.
/// The window assumes no request is acted on more than that long after its client gave up on it.
/// </remarks>
internal static class Checker
{
    private const int VersionBytes = 4;

    /// <summary>How long after its client gave up an ADD of unknown outcome may still be acted on.</summary>
    internal static readonly TimeSpan UnknownWindow = TimeSpan.FromSeconds(10);

    // Records of versions that can no longer be live are pruned beyond this many per key (a hit of a pruned version
    // is still a lie, reported with less detail); a long run would otherwise keep one record per ADD.
    private const int MaxVersionRecords = 64;
    private const int KeptRecentRecords = 8;

    public static async Task<int> RunAsync(CheckSettings settings, CancellationToken cancellationToken)
    {
        var clients = new DistcacheClient[settings.Clients];
        var run = new Run(settings);
        try
        {
            for (int i = 0; i < clients.Length; i++)
            {
                // Connecting lazily: a proxy or server that is down at the start is one more outage to ride out.
                clients[i] = DistcacheClient.Connect(new DistcacheClientOptions { Address = settings.Target });
            }

            int workers = settings.Clients * settings.Pipeline;
            var keys = new KeyState[settings.Keys];
            for (int k = 0; k < keys.Length; k++)
            {
                keys[k] = new KeyState(MakeId(settings.Seed, k, settings.IdSize));
            }

            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            stop.CancelAfter(settings.Duration);
            var tasks = new Task[workers];
            for (int w = 0; w < workers; w++)
            {
                // Worker w owns keys w, w + workers, ...: no two requests on one key are ever in flight together.
                KeyState[] own = [.. keys.Where((_, k) => k % workers == w)];
                DistcacheClient client = clients[w % clients.Length];
                var random = new FastRandom(settings.Seed ^ (0x9E3779B97F4A7C15UL * (ulong)(w + 1)));
                tasks[w] = own.Length == 0 ? Task.CompletedTask : Task.Run(() => run.WorkAsync(client, own, random, stop), CancellationToken.None);
            }

            await Task.WhenAll(tasks).ConfigureAwait(false);
        }
        finally
        {
            foreach (DistcacheClient? client in clients)
            {
                if (client is not null)
                {
                    await client.DisposeAsync().ConfigureAwait(false);
                }
            }
        }

        return run.Finish(cancellationToken.IsCancellationRequested);
    }

    /// <summary>A key's id: the seed and the key number, so a run with the same -seed uses the same ids.</summary>
    private static byte[] MakeId(ulong seed, int key, int size)
    {
        Span<byte> input = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(input, seed);
        BinaryPrimitives.WriteInt32BigEndian(input[8..], key);
        byte[] hash = SHA256.HashData(input);
        var id = new byte[size];
        for (int i = 0; i < size; i++)
        {
            id[i] = hash[i % hash.Length];
        }

        // The key number in clear at the start keeps ids distinct even where hashes would collide in a short id.
        BinaryPrimitives.WriteInt32BigEndian(id, key);
        return id;
    }

    /// <summary>The data of one version of a key: the version, then SHA-256 blocks of (id, version, counter).</summary>
    internal static byte[] MakeData(ReadOnlySpan<byte> id, uint version, int length)
    {
        var data = new byte[length];
        BinaryPrimitives.WriteUInt32BigEndian(data, version);
        Span<byte> input = stackalloc byte[id.Length + 8];
        id.CopyTo(input);
        BinaryPrimitives.WriteUInt32BigEndian(input[id.Length..], version);
        Span<byte> block = stackalloc byte[32];
        for (int offset = VersionBytes, counter = 0; offset < length; offset += 32, counter++)
        {
            BinaryPrimitives.WriteInt32BigEndian(input[(id.Length + 4)..], counter);
            SHA256.HashData(input, block);
            block[..Math.Min(32, length - offset)].CopyTo(data.AsSpan(offset));
        }

        return data;
    }

    /// <summary>What the checker knows about one version of a key.</summary>
    private sealed class Version(uint number, int length)
    {
        public uint Number { get; } = number;

        public int Length { get; } = length;

        /// <summary>Acknowledged stored.</summary>
        public bool Confirmed { get; set; }

        /// <summary>Acknowledged not stored (the ADD was answered with an error status), with that status.</summary>
        public AddOutcome? Refused { get; set; }

        /// <summary>Stopwatch ticks when its outcome became unknown (0 if it did not).</summary>
        public long UnknownSince { get; set; }

        /// <summary>Neither confirmed nor refused.</summary>
        public bool Unknown => !Confirmed && Refused is null;

        /// <summary>Stopwatch ticks by which the server has certainly let it expire (its ADD's answer plus the timeout).</summary>
        public long ExpiresBy { get; set; }

        /// <summary>Why it can no longer be live, once that is known ("removed by REMOVE acknowledged at ...").</summary>
        public string? Gone { get; set; }
    }

    private sealed class KeyState(byte[] id)
    {
        public byte[] Id { get; } = id;

        public uint NextVersion { get; set; } = 1;

        /// <summary>Every version ever sent in an ADD, by number.</summary>
        public Dictionary<uint, Version> Versions { get; } = [];

        public string Hex => Convert.ToHexStringLower(Id);
    }

    private sealed class Run(CheckSettings settings)
    {
        private readonly long _slackTicks = (long)(settings.Slack.TotalSeconds * Stopwatch.Frequency);
        private readonly long _timeoutTicks = (long)(settings.SessionTimeoutMilliseconds / 1000.0 * Stopwatch.Frequency);
        private readonly long _unknownWindowTicks = (long)(UnknownWindow.TotalSeconds * Stopwatch.Frequency);
        private readonly long _start = Stopwatch.GetTimestamp();
        private readonly Lock _lock = new();
        private string? _lie;
        private long _operations;
        private long _hits;
        private long _misses;
        private long _stored;
        private long _exists;
        private long _removed;
        private long _unknown;
        private long _unconfirmedHits;
        private long _nextProgress = settings.Progress > 0 ? (long)settings.Progress : long.MaxValue;

        public async Task WorkAsync(DistcacheClient client, KeyState[] keys, FastRandom random, CancellationTokenSource stop)
        {
            while (!stop.IsCancellationRequested && Volatile.Read(ref _lie) is null)
            {
                KeyState key = keys[random.Next(keys.Length)];
                Operation operation = settings.Mix.Pick(random.Next(settings.Mix.Total));
                int length = random.Next(Math.Max(settings.DataMin, VersionBytes + 1), Math.Max(settings.DataMax, VersionBytes + 1));
                string? lie;
                try
                {
                    lie = await OneAsync(client, key, operation, length).ConfigureAwait(false);
                }
                catch (ObjectDisposedException)
                {
                    return;
                }

                if (lie is not null)
                {
                    Interlocked.CompareExchange(ref _lie, lie, null);
                    stop.Cancel();
                    return;
                }

                long done = Interlocked.Increment(ref _operations);
                if (done >= Volatile.Read(ref _nextProgress))
                {
                    lock (_lock)
                    {
                        if (done >= _nextProgress)
                        {
                            _nextProgress += (long)settings.Progress;
                            Console.WriteLine(Summary("Info, progress"));
                        }
                    }
                }
            }
        }

        public int Finish(bool interrupted)
        {
            if (_lie is { } lie)
            {
                Console.Error.WriteLine("Error, the cache lied: " + lie);
                Console.Error.WriteLine(Summary($"Info, before that (-seed {settings.Seed})"));
                return 1;
            }

            if (Interlocked.Read(ref _hits) + Interlocked.Read(ref _misses) + Interlocked.Read(ref _stored) + Interlocked.Read(ref _exists) + Interlocked.Read(ref _removed) == 0)
            {
                Console.Error.WriteLine(Summary("Error, no operation got an answer from the cache"));
                return 1;
            }

            Console.WriteLine(Summary(interrupted ? "Info, check interrupted, no lies" : "Info, check complete, no lies"));
            return 0;
        }

        private string Summary(string prefix) => string.Create(CultureInfo.InvariantCulture,
            $"{prefix}: {Interlocked.Read(ref _operations)} operations in {Stopwatch.GetElapsedTime(_start).TotalSeconds:0.0} s; GET hits {Interlocked.Read(ref _hits)} (checked; {Interlocked.Read(ref _unconfirmedHits)} of unconfirmed ADDs), misses {Interlocked.Read(ref _misses)}; ADD stored {Interlocked.Read(ref _stored)}, exists {Interlocked.Read(ref _exists)}; REMOVE/HAVE answered {Interlocked.Read(ref _removed)}; unknown outcomes (DISCONNECTED, failures, timeouts) {Interlocked.Read(ref _unknown)}");

        private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

        private double At(long timestamp) => (timestamp - _start) / (double)Stopwatch.Frequency;

        private async Task<string?> OneAsync(DistcacheClient client, KeyState key, Operation operation, int length)
        {
            long sent = Stopwatch.GetTimestamp();
            try
            {
                switch (operation)
                {
                    case Operation.Add:
                    {
                        uint number = key.NextVersion++;
                        var version = new Version(number, length);
                        key.Versions[number] = version;
                        AddOutcome outcome;
                        try
                        {
                            outcome = await client.AddAsync(key.Id, MakeData(key.Id, number, length), TimeSpan.FromMilliseconds(settings.SessionTimeoutMilliseconds)).ConfigureAwait(false);
                        }
                        catch (Exception e) when (e is DistcacheConnectionException or TimeoutException)
                        {
                            version.UnknownSince = Stopwatch.GetTimestamp();
                            Interlocked.Increment(ref _unknown);
                            return null;
                        }

                        long answered = Stopwatch.GetTimestamp();
                        switch (outcome)
                        {
                            case AddOutcome.Stored:
                                // Nothing else was live when it was stored: every version before it is gone.
                                Retire(key, sent, string.Create(CultureInfo.InvariantCulture, $"replaced by version {number}, whose ADD succeeded at {At(answered):0.000} s"), version);
                                version.Confirmed = true;
                                version.ExpiresBy = answered + _timeoutTicks;
                                Interlocked.Increment(ref _stored);
                                Prune(key);
                                break;
                            case AddOutcome.Disconnected:
                                version.UnknownSince = answered;
                                Interlocked.Increment(ref _unknown);
                                break;
                            default:
                                // Refused (exists, or could not store): this version was not stored.
                                version.Refused = outcome;
                                Interlocked.Increment(ref _exists);
                                break;
                        }

                        return null;
                    }

                    case Operation.Get:
                    {
                        byte[]? data = await client.GetAsync(key.Id).ConfigureAwait(false);
                        if (data is null)
                        {
                            Interlocked.Increment(ref _misses);
                            return null;
                        }

                        Interlocked.Increment(ref _hits);
                        return JudgeHit(key, data, sent);
                    }

                    default:
                    {
                        bool found = operation == Operation.Remove
                            ? await client.RemoveAsync(key.Id).ConfigureAwait(false)
                            : await client.ContainsAsync(key.Id).ConfigureAwait(false);
                        Interlocked.Increment(ref _removed);
                        if (operation == Operation.Remove)
                        {
                            // Answered either way, the server has looked: whatever was stored before is gone now.
                            long answered = Stopwatch.GetTimestamp();
                            Retire(key, sent, string.Create(CultureInfo.InvariantCulture, $"removed by a REMOVE acknowledged ({(found ? "OK" : "NOTOK")}) at {At(answered):0.000} s"), except: null);
                        }

                        return null;
                    }
                }
            }
            catch (Exception e) when (e is DistcacheConnectionException or TimeoutException)
            {
                Interlocked.Increment(ref _unknown);
                return null;
            }
        }

        /// <summary>Marks every version that cannot have survived an operation sent at <paramref name="sent"/> as gone:
        /// the confirmed ones, and those of unknown outcome whose window had passed by then.</summary>
        private void Retire(KeyState key, long sent, string reason, Version? except)
        {
            foreach (Version v in key.Versions.Values)
            {
                if (v == except || v.Gone is not null || v.Refused is not null)
                {
                    continue;
                }

                if (v.Confirmed || (v.UnknownSince != 0 && sent - v.UnknownSince > _unknownWindowTicks))
                {
                    v.Gone = reason;
                }
            }
        }

        private static void Prune(KeyState key)
        {
            if (key.Versions.Count <= MaxVersionRecords)
            {
                return;
            }

            uint keepFrom = key.NextVersion > KeptRecentRecords ? key.NextVersion - KeptRecentRecords : 0;
            foreach (Version v in key.Versions.Values.Where(v => (v.Gone is not null || v.Refused is not null) && v.Number < keepFrom).ToList())
            {
                key.Versions.Remove(v.Number);
            }
        }

        private string? JudgeHit(KeyState key, byte[] data, long sent)
        {
            string what = string.Create(CultureInfo.InvariantCulture, $"GET sent at {At(sent):0.000} s for id {key.Hex} returned {data.Length} bytes");
            if (data.Length <= VersionBytes)
            {
                return $"{what}, too short to be any session this test stored";
            }

            uint number = BinaryPrimitives.ReadUInt32BigEndian(data);
            if (!key.Versions.TryGetValue(number, out Version? version))
            {
                return number != 0 && number < key.NextVersion
                    ? string.Create(CultureInfo.InvariantCulture, $"{what} claiming to be version {number}, an old version that was refused, removed or replaced long before (a session that cannot be live)")
                    : string.Create(CultureInfo.InvariantCulture, $"{what} claiming to be version {number}, which was never added (wrong bytes)");
            }

            if (data.Length != version.Length || !data.AsSpan().SequenceEqual(MakeData(key.Id, number, version.Length)))
            {
                int differ = data.Length != version.Length ? -1 : data.AsSpan().CommonPrefixLength(MakeData(key.Id, number, version.Length));
                return string.Create(CultureInfo.InvariantCulture,
                    $"{what}, wrong bytes for version {number} ({version.Length} bytes stored; {(differ < 0 ? "length differs" : $"first difference at byte {differ}")})");
            }

            if (version.Refused is { } refused)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{what}: version {number}, which was never stored (its ADD was answered {refused})");
            }

            if (version.Gone is { } gone)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{what}: version {number}, which was {gone} (hit after an acknowledged REMOVE or replacement)");
            }

            if (version.Unknown)
            {
                // Its ADD's outcome is unknown: it may have been stored late (see the class remarks).
                long latest = version.UnknownSince + _unknownWindowTicks + _timeoutTicks;
                if (version.UnknownSince != 0 && sent - latest > _slackTicks)
                {
                    return string.Create(CultureInfo.InvariantCulture,
                        $"{what}: version {number}, whose ADD had an unknown outcome at {At(version.UnknownSince):0.000} s and which expired by {At(latest):0.000} s at the latest; the GET was {Ms(sent - latest):0} ms later, beyond the {settings.Slack.TotalMilliseconds:0} ms slack (hit after expiry)");
                }

                Interlocked.Increment(ref _unconfirmedHits);
                return null;
            }

            long late = sent - version.ExpiresBy;
            if (late > _slackTicks)
            {
                return string.Create(CultureInfo.InvariantCulture,
                    $"{what}: version {number}, which expired by {At(version.ExpiresBy):0.000} s ({settings.SessionTimeoutMilliseconds} ms after its ADD was answered); the GET was {Ms(late):0} ms later, beyond the {settings.Slack.TotalMilliseconds:0} ms slack (hit after expiry)");
            }

            return null;
        }
    }
}
