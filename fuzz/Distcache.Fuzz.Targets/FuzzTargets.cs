namespace Distcache.Fuzz;

/// <summary>One fuzz target: runs one input, throws on a failure.</summary>
public delegate void FuzzTarget(ReadOnlySpan<byte> input);

/// <summary>The targets by name, as the fuzzer host and the replay tests call them. Not thread-safe: some targets
/// keep state between inputs (a session store, output buffers), so run one input at a time.</summary>
public static class FuzzTargets
{
    /// <summary>Inputs are cut to this length: two maximum-size messages and a split header, enough to reach every
    /// rule, while keeping one execution well under the fuzzer's time limit.</summary>
    public const int MaxInputLength = (2 * Distcache.Protocol.ProtocolConstants.MaxEncodedMessage) + 64;

    public static IReadOnlyList<string> Names { get; } = ["frame", "reassembly", "payload", "response"];

    /// <summary>The target called <paramref name="name"/>, with over-long inputs cut to <see cref="MaxInputLength"/>.</summary>
    /// <exception cref="ArgumentException">No target has that name.</exception>
    public static FuzzTarget Get(string name)
    {
        FuzzTarget target = name switch
        {
            "frame" => FrameTarget.Run,
            "reassembly" => ReassemblyTarget.Run,
            "payload" => PayloadTarget.Run,
            "response" => ResponseTarget.Run,
            _ => throw new ArgumentException($"unknown fuzz target '{name}'; the targets are {string.Join(", ", Names)}", nameof(name)),
        };
        return input => target(input.Length > MaxInputLength ? input[..MaxInputLength] : input);
    }
}
