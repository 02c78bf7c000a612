using Distcache.Networking;

namespace Distcache.Apps.Test.Load;

/// <summary>Everything <c>dc_test -bench</c> was asked to do.</summary>
internal sealed record LoadSettings
{
    public required Address Target { get; init; }

    public int Clients { get; init; } = 4;

    public int Pipeline { get; init; } = 8;

    /// <summary>How long to measure; ignored when <see cref="Requests"/> is set.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How many requests to measure, instead of a duration.</summary>
    public long? Requests { get; init; }

    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(1);

    public required OperationMix Mix { get; init; }

    public int Keys { get; init; } = 500;

    public int Prefill { get; init; } = 500;

    public int DataMin { get; init; } = 50;

    public int DataMax { get; init; } = 2100;

    public int IdSize { get; init; } = 32;

    public uint SessionTimeoutMilliseconds { get; init; } = 3_600_000;

    public ulong Seed { get; init; }

    /// <summary>Where the JSON result goes: a file path, "-" for stdout, or null for nowhere.</summary>
    public string? JsonPath { get; init; }

    /// <summary>A new connection for every measured request (closed after its answer), as applications of
    /// dc_client make them; each request's latency then includes the connect.</summary>
    public bool ShortConnections { get; init; }

    /// <summary>Requests per second across all connections (open loop), or null to send as fast as answers come.</summary>
    public int? Rate { get; init; }

    /// <summary>A server process whose CPU time is measured over the same window, to compare with ours.</summary>
    public int? ServerPid { get; init; }
}

/// <summary>
/// The key space, generated once before the run: every id and every session's data are slices of two arrays, so
/// issuing a request copies bytes into the output pipe and allocates nothing.
/// </summary>
internal sealed class KeySpace
{
    private readonly byte[] _ids;
    private readonly byte[] _data;
    private readonly int[] _dataLengths;

    public KeySpace(LoadSettings settings)
    {
        Count = settings.Keys;
        IdSize = settings.IdSize;
        var random = new FastRandom(settings.Seed ^ 0x5EED_0F_1D5UL);
        _ids = new byte[Count * IdSize];
        random.Fill(_ids);
        for (int key = 0; key < Count; key++)
        {
            // The key number in the last four bytes makes every id distinct; the random rest keeps ids from
            // different runs (other seeds) apart, so leftovers of an earlier run do not turn misses into hits.
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(_ids.AsSpan((key * IdSize) + IdSize - 4, 4), key);
        }

        _data = new byte[settings.DataMax];
        random.Fill(_data);
        _dataLengths = new int[Count];
        for (int key = 0; key < Count; key++)
        {
            _dataLengths[key] = random.Next(settings.DataMin, settings.DataMax);
        }
    }

    public int Count { get; }

    public int IdSize { get; }

    public ReadOnlySpan<byte> Id(int key) => _ids.AsSpan(key * IdSize, IdSize);

    // A key's data is always the same bytes, whichever connection adds it, so a GET hit can be checked by length.
    public ReadOnlySpan<byte> Data(int key) => _data.AsSpan(0, _dataLengths[key]);

    public int DataLength(int key) => _dataLengths[key];
}
