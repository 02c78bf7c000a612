using System.Buffers;
using Distcache.Fuzz;
using Distcache.Protocol;
using SharpFuzz;

// Usage:
//   Distcache.Fuzz <target>                 run under afl-fuzz (the input arrives through AFL's shared memory)
//   Distcache.Fuzz <target> <file>...       run files once each, without the fuzzer, and say which fail
//   Distcache.Fuzz seed <vectors> <corpus>  write seed inputs for every target from the traffic captures
if (args.Length == 0)
{
    Console.Error.WriteLine($"usage: Distcache.Fuzz <{string.Join('|', FuzzTargets.Names)}> [file...] | seed <vectors dir> <corpus dir>");
    return 2;
}

if (args[0] == "seed")
{
    if (args.Length != 3)
    {
        Console.Error.WriteLine("usage: Distcache.Fuzz seed <vectors dir> <corpus dir>");
        return 2;
    }

    foreach ((string target, string name, byte[] bytes) in Seeds.FromVectors(args[1]))
    {
        string directory = Path.Combine(args[2], target);
        Directory.CreateDirectory(directory);
        File.WriteAllBytes(Path.Combine(directory, name), bytes);
    }

    return 0;
}

FuzzTarget run = FuzzTargets.Get(args[0]);
if (args.Length > 1)
{
    int failed = 0;
    foreach (string file in args.Skip(1))
    {
        try
        {
            run(File.ReadAllBytes(file));
        }
#pragma warning disable CA1031 // Every failure of one input is reported, and the rest still run.
        catch (Exception e)
#pragma warning restore CA1031
        {
            failed++;
            Console.WriteLine($"{file}: {e.GetType().Name}: {e.Message}");
        }
    }

    Console.WriteLine($"{args.Length - 1 - failed} passed, {failed} failed");
    return failed == 0 ? 0 : 1;
}

var input = new byte[FuzzTargets.MaxInputLength];
Fuzzer.Run(stream =>
{
    int length = 0;
    int read;
    while (length < input.Length && (read = stream.Read(input, length, input.Length - length)) > 0)
    {
        length += read;
    }

    run(input.AsSpan(0, length));
});
return 0;

/// <summary>Seed inputs made from the 1.5.1 traffic captures, so the fuzzer starts from real messages.</summary>
internal static class Seeds
{
    public static IEnumerable<(string Target, string Name, byte[] Bytes)> FromVectors(string vectors)
    {
        var seen = new HashSet<string>();
        foreach (string file in Directory.EnumerateFiles(vectors, "*.*2*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            bool responses = file.EndsWith(".s2c", StringComparison.Ordinal);
            byte[] stream = File.ReadAllBytes(file);
            string source = Path.GetRelativePath(vectors, file).Replace('/', '-');
            List<(Message Message, byte[] Raw)> messages = Decode(stream, responses);
            int index = 0;
            foreach ((Message message, byte[] raw) in messages)
            {
                string shape = $"{message.Operation}-{message.IsResponse}-{message.FrameCount}-{Math.Min(message.Payload.Length, 2)}";
                if (!seen.Add(shape))
                {
                    continue;
                }

                string name = $"seed-{source}-{index++}";
                int direction = responses ? 1 : 0;
                yield return ("frame", name, [(byte)direction, .. raw.AsSpan(0, Math.Min(raw.Length, ProtocolConstants.FrameHeaderSize + ProtocolConstants.MaxFrameData))]);
                if (message.FrameCount > 1)
                {
                    // The second frame, checked as the continuation of the first.
                    byte[] continuation = [(byte)(direction | 4), .. raw.AsSpan(5, 4), (byte)message.Operation, .. raw.AsSpan(ProtocolConstants.FrameHeaderSize + ProtocolConstants.MaxFrameData)];
                    yield return ("frame", name + "-continuation", continuation);
                }

                if (!responses)
                {
                    yield return ("payload", name, [(byte)message.Operation, .. message.Payload.Span]);
                }

                // Whole, and cut inside the first header and just after it.
                yield return ("reassembly", name, SplitInput.Encode(direction, [5, 9], raw));
                if (responses)
                {
                    yield return ("response", name, SplitInput.Encode(0, [5, 9], raw));
                }
            }

            // A few messages back to back, as a connection carries them.
            if (messages.Count > 1 && seen.Add("stream-" + responses))
            {
                byte[] run = [.. messages.Take(4).SelectMany(m => m.Raw)];
                yield return ("reassembly", $"seed-{source}-stream", SplitInput.Encode(responses ? 1 : 0, [20, 1], run));
                if (responses)
                {
                    yield return ("response", $"seed-{source}-stream", SplitInput.Encode(1, [20, 1], run));
                }
            }
        }
    }

    private static List<(Message, byte[])> Decode(byte[] stream, bool responses)
    {
        var decoder = new MessageDecoder(responses ? MessageDirection.Responses : MessageDirection.Requests);
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(stream));
        var messages = new List<(Message, byte[])>();
        while (true)
        {
            long start = reader.Consumed;
            if (decoder.TryDecode(ref reader, out Message message, out _) != DecodeStatus.Complete)
            {
                return messages;
            }

            // The payload borrows the decoder's buffer: keep a copy.
            var copy = message with { Payload = message.Payload.ToArray() };
            messages.Add((copy, stream.AsSpan((int)start, (int)(reader.Consumed - start)).ToArray()));
        }
    }
}
