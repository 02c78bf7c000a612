using System.Globalization;
using Distcache.Protocol;

namespace Distcache.Compare;

internal enum Protocol
{
    Memcache,
    Redis,
    Distcache,
}

/// <summary>The load's shape, named and defaulted as dc_test -bench's options.</summary>
internal sealed class LoadOptions
{
    public Protocol Protocol { get; private set; } = Protocol.Memcache;
    public string Host { get; private set; } = "127.0.0.1";
    public int Port { get; private set; }
    public int Clients { get; private set; } = 50;
    public int Pipeline { get; private set; } = 1;
    public double Duration { get; private set; } = 10;
    public double Warmup { get; private set; } = 1;
    public int GetWeight { get; private set; } = 90;
    public int AddWeight { get; private set; } = 10;
    public int Keys { get; private set; } = 100_000;
    public int Prefill { get; private set; } = -1;
    public int DataSize { get; private set; } = 1000;
    public int IdSize { get; private set; } = 32;
    public int ServerPid { get; private set; }
    public string? Json { get; private set; }
    public bool PrefillOnly { get; private set; }

    /// <summary>Requests per second in all, paced over the connections (open loop) as dc_test -rate paces them;
    /// 0 means as fast as answers come (closed loop).</summary>
    public int Rate { get; private set; }

    public static LoadOptions Parse(ReadOnlySpan<string> args)
    {
        var o = new LoadOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i];
            if (name == "-prefillonly")
            {
                o.PrefillOnly = true;
                continue;
            }

            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"{name} requires an argument");
            }

            string v = args[++i];
            switch (name)
            {
                case "-proto": o.Protocol = ParseProtocol(v); break;
                case "-host": o.Host = v; break;
                case "-port": o.Port = Int(v); break;
                case "-clients": o.Clients = Int(v); break;
                case "-pipeline": o.Pipeline = Int(v); break;
                case "-duration": o.Duration = double.Parse(v, CultureInfo.InvariantCulture); break;
                case "-warmup": o.Warmup = double.Parse(v, CultureInfo.InvariantCulture); break;
                case "-keys": o.Keys = Int(v); break;
                case "-prefill": o.Prefill = Int(v); break;
                case "-datasize": o.DataSize = Int(v); break;
                case "-idsize": o.IdSize = Int(v); break;
                case "-serverpid": o.ServerPid = Int(v); break;
                case "-json": o.Json = v; break;
                case "-mix": o.ParseMix(v); break;
                case "-rate": o.Rate = Int(v); break;
                default: throw new ArgumentException($"\"{name}\" not recognised");
            }
        }

        if (o.Port <= 0 || o.Clients <= 0 || o.Pipeline <= 0 || o.Keys <= 0 || o.IdSize < KeyNames.Digits + 1 || o.GetWeight + o.AddWeight <= 0)
        {
            throw new ArgumentException("-port, -clients, -pipeline, -keys must be positive, -idsize at least 13, a mix weight non-zero");
        }

        if (o.Rate < 0)
        {
            throw new ArgumentException($"-rate: requests per second cannot be negative, not {o.Rate}");
        }

        if (o.Protocol == Protocol.Distcache)
        {
            // The writer would refuse a message over 32768 bytes mid-run; the id range is the server's, but every ADD
            // and GET answered with an error teaches nothing about throughput.
            if (o.IdSize > ProtocolConstants.MaxSessionIdLength)
            {
                throw new ArgumentException($"-idsize: distcache session ids are at most {ProtocolConstants.MaxSessionIdLength} bytes, not {o.IdSize}");
            }

            // A one-byte GET answer means "not found", so one byte of data could not be told from a miss.
            int most = ProtocolConstants.MaxMessagePayload - ProtocolConstants.AddRequestPrefixSize - o.IdSize;
            if (o.DataSize < 2 || o.DataSize > most)
            {
                throw new ArgumentException($"-datasize: with -proto distcache and -idsize {o.IdSize} the data must be 2..{most} bytes, not {o.DataSize}");
            }
        }

        if (o.Prefill < 0 || o.Prefill > o.Keys)
        {
            o.Prefill = o.Prefill < 0 ? o.Keys : o.Keys;
        }

        return o;
    }

    private static Protocol ParseProtocol(string v) => v switch
    {
        "memcache" => Protocol.Memcache,
        "redis" => Protocol.Redis,
        "distcache" => Protocol.Distcache,
        _ => throw new ArgumentException($"-proto: unknown protocol \"{v}\" (memcache, redis or distcache)"),
    };

    private void ParseMix(string text)
    {
        GetWeight = 0;
        AddWeight = 0;
        foreach (string part in text.Split(','))
        {
            string[] kv = part.Split('=');
            switch (kv[0])
            {
                case "get": GetWeight = Int(kv[1]); break;
                case "add": AddWeight = Int(kv[1]); break;
                default: throw new ArgumentException($"-mix: only get and add are supported, not {kv[0]}");
            }
        }
    }

    private static int Int(string v) => int.Parse(v, NumberStyles.Integer, CultureInfo.InvariantCulture);
}

/// <summary>Key i is a fixed prefix and i in 12 decimal digits, idsize bytes in all: exactly the names
/// redis-benchmark makes of <c>PREFIX__rand_int__</c> with <c>-r</c>, so both generators share one key space.</summary>
internal static class KeyNames
{
    public const int Digits = 12;

    public static string Prefix(int idSize) => "distcache-bench-key:".PadRight(idSize - Digits, '-')[..(idSize - Digits)];
}
