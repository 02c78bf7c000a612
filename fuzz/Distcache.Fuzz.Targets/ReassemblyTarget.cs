using Distcache.Protocol;

namespace Distcache.Fuzz;

/// <summary>
/// Target "reassembly": <see cref="MessageDecoder.TryDecode"/> over a stream whose split into reads the fuzzer
/// also chooses (the <see cref="SplitInput"/> format; the selector picks the direction, 3 and up meaning Any).
/// </summary>
/// <remarks>
/// The stream is decoded twice: all at once from one buffer, and piece by piece as a growing multi-segment
/// sequence, the way a pipe reader presents a connection's reads. Both must give the same messages, stop the same
/// way at the same byte, and every message must satisfy the framing rules and re-encode to its own bytes.
/// </remarks>
public static class ReassemblyTarget
{
    public static void Run(ReadOnlySpan<byte> input)
    {
        var split = SplitInput.Parse(input);
        var direction = (MessageDirection)Math.Min(split.Selector & 3, 2);
        StreamOutcome whole = StreamDecoding.DecodeWhole(direction, split.Data);
        StreamOutcome pieces = StreamDecoding.DecodeInPieces(direction, split.Segments);
        whole.MustEqual(pieces, "decoded in pieces");
    }
}
