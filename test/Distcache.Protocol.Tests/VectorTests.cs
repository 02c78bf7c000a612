using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Distcache.Protocol;
using Distcache.Protocol.Tests.Support;

namespace Distcache.Protocol.Tests;

/// <summary>
/// The 1.5.1 traffic in <c>test/vectors</c>: every frame decodes to the line <c>index.txt</c> has for it, every
/// message re-encodes to the identical bytes, every response is the one a 1.5.1 cache gives to the requests
/// before it, and the files are the ones captured (SHA-256 manifest).
/// </summary>
public sealed class VectorTests
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "vectors");

    /// <summary>All capture files by relative path ("persistent/conn001.c2s"), in ordinal order as in the index.</summary>
    internal static SortedDictionary<string, byte[]> LoadCaptures()
    {
        var files = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var path in Directory.EnumerateFiles(Root, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(Root, path).Replace('\\', '/');
            if (relative.EndsWith(".c2s", StringComparison.Ordinal) || relative.EndsWith(".s2c", StringComparison.Ordinal))
            {
                files[relative] = File.ReadAllBytes(path);
            }
        }

        return files;
    }

    private static string[] IndexLines() =>
        File.ReadAllLines(Path.Combine(Root, "index.txt")).Where(l => l.Length > 0 && !l.StartsWith('#')).ToArray();

    /// <summary>One index line per frame, in the index's format.</summary>
    internal static List<string> FrameLines(string name, byte[] bytes, List<string> problems)
    {
        var lines = new List<string>();
        bool fromServer = name.EndsWith(".s2c", StringComparison.Ordinal);
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(bytes));
        var fresh = new FrameRules(fromServer ? MessageDirection.Responses : MessageDirection.Requests);
        var rules = fresh;
        while (!reader.End)
        {
            long offset = reader.Consumed;
            var status = FrameReader.TryRead(ref reader, rules, out var h, out var data, out var violation);
            if (status != DecodeStatus.Complete)
            {
                problems.Add($"{name}: {status} at {offset} {violation.Describe()}");
                break;
            }

            var line = new StringBuilder(string.Create(CultureInfo.InvariantCulture,
                $"{name} off={offset} level=0x{h.ProtoLevel:x8} resp={(h.IsResponse ? 1 : 0)} uid={h.RequestUid} op={h.Operation.ToWireName()} complete={(h.Complete ? 1 : 0)} len={h.DataLength}"));
            if (h.IsResponse && h.DataLength == 1)
            {
                line.Append(CultureInfo.InvariantCulture, $" byte={data.FirstSpan[0]}");
            }

            lines.Add(line.ToString());
            rules = h.Complete ? fresh : fresh.Continuing(h);
        }

        return lines;
    }

    /// <summary>Every check on a set of captures; returns the problems found (none for the real captures).</summary>
    internal static List<string> Check(IReadOnlyDictionary<string, byte[]> files, bool includeManifest)
    {
        var problems = new List<string>();

        // 1. Frame by frame against the index.
        var expected = IndexLines();
        var actual = files.SelectMany(f => FrameLines(f.Key, f.Value, problems)).ToList();
        if (!expected.SequenceEqual(actual))
        {
            int i = 0;
            while (i < Math.Min(expected.Length, actual.Count) && expected[i] == actual[i])
            {
                i++;
            }

            problems.Add($"index differs at line {i}: expected '{expected.ElementAtOrDefault(i)}', got '{actual.ElementAtOrDefault(i)}'");
        }

        // 2. Message by message: decode, re-encode, compare bytes.
        var decoded = new Dictionary<string, List<DecodedMessage>>();
        foreach (var (name, bytes) in files)
        {
            var direction = name.EndsWith(".s2c", StringComparison.Ordinal) ? MessageDirection.Responses : MessageDirection.Requests;
            var result = Decode.All(bytes, direction);
            if (result.Violation is not null || result.LeftOver != 0)
            {
                problems.Add($"{name}: does not decode ({result.Violation?.Describe()}, {result.LeftOver} bytes left)");
                continue;
            }

            decoded[name] = result.Messages;
            var reencoded = Frames.Encode(w =>
            {
                foreach (var m in result.Messages)
                {
                    var writer = new MessageWriter(w, m.IsResponse, m.Uid, m.Operation, m.Payload.Length, m.ProtoLevel);
                    writer.Write(m.Payload);
                    writer.Complete();
                }
            });
            if (!reencoded.AsSpan().SequenceEqual(bytes))
            {
                problems.Add($"{name}: re-encoding differs from the capture");
            }
        }

        // 3. The responses are what a 1.5.1 cache answers, replayed per capture group on one fresh cache.
        foreach (var group in files.Keys.Select(k => k[..k.LastIndexOf('/')]).Distinct())
        {
            var cache = new Dictionary<string, byte[]>();
            foreach (var c2s in files.Keys.Where(k => k.StartsWith(group + "/", StringComparison.Ordinal) && k.EndsWith(".c2s", StringComparison.Ordinal)))
            {
                var s2c = c2s[..^4] + ".s2c";
                if (!decoded.TryGetValue(c2s, out var requests) || !decoded.TryGetValue(s2c, out var responses))
                {
                    continue;
                }

                if (requests.Count != responses.Count)
                {
                    problems.Add($"{c2s}: {requests.Count} requests but {responses.Count} responses");
                    continue;
                }

                for (int i = 0; i < requests.Count; i++)
                {
                    var error = CheckAnswer(cache, requests[i], responses[i]);
                    if (error is not null)
                    {
                        problems.Add($"{c2s} message {i}: {error}");
                    }
                }
            }
        }

        // 4. The bytes are the captured ones.
        if (includeManifest)
        {
            foreach (var line in File.ReadAllLines(Path.Combine(Root, "SHA256SUMS")))
            {
                var hash = line[..64];
                var name = line[66..].TrimStart('.', '/');
                if (files.TryGetValue(name, out var bytes) && !string.Equals(Convert.ToHexStringLower(SHA256.HashData(bytes)), hash, StringComparison.Ordinal))
                {
                    problems.Add($"{name}: SHA-256 differs from the manifest");
                }
            }
        }

        return problems;
    }

    private static string? CheckAnswer(Dictionary<string, byte[]> cache, DecodedMessage request, DecodedMessage response)
    {
        if (response.Uid != request.Uid || response.Operation != request.Operation)
        {
            return $"response uid/op {response.Uid}/{response.Operation} for request {request.Uid}/{request.Operation}";
        }

        // The proxy captures end with a request made while the server was down: 1.5.1 answers with an empty payload.
        if (response.Payload.Length == 0)
        {
            return null;
        }

        byte[] expected;
        switch (request.Operation)
        {
            case Operation.Add:
                AddRequest.TryParse(request.Payload, out var add);
                var key = Convert.ToHexString(add.Id.Span);
                expected = [(byte)(cache.ContainsKey(key) ? StatusCode.AddErrMatchingSession : StatusCode.Ok)];
                cache.TryAdd(key, add.Data.ToArray());
                break;
            case Operation.Get:
                expected = cache.TryGetValue(Convert.ToHexString(request.Payload), out var data) ? data : [(byte)StatusCode.NotOk];
                break;
            case Operation.Remove:
                expected = [(byte)(cache.Remove(Convert.ToHexString(request.Payload)) ? StatusCode.Ok : StatusCode.NotOk)];
                break;
            default:
                expected = [(byte)(cache.ContainsKey(Convert.ToHexString(request.Payload)) ? StatusCode.Ok : StatusCode.NotOk)];
                break;
        }

        return expected.AsSpan().SequenceEqual(response.Payload) ? null : $"{request.Operation} answered {response.Payload.Length} bytes, a 1.5.1 cache gives {expected.Length}";
    }

    [Fact]
    public void Every_capture_decodes_to_the_index_reencodes_identically_and_answers_like_a_cache()
    {
        var files = LoadCaptures();
        Assert.Equal(62, files.Count);
        Assert.Empty(Check(files, includeManifest: true));
    }

    [Fact]
    public void Every_frame_of_every_capture_appears_in_the_index_line_for_line()
    {
        var problems = new List<string>();
        var actual = LoadCaptures().SelectMany(f => FrameLines(f.Key, f.Value, problems)).ToList();
        Assert.Empty(problems);
        Assert.Equal(IndexLines(), actual);
    }

    [Fact]
    public void Every_capture_decodes_the_same_byte_by_byte()
    {
        foreach (var (name, bytes) in LoadCaptures())
        {
            var direction = name.EndsWith(".s2c", StringComparison.Ordinal) ? MessageDirection.Responses : MessageDirection.Requests;
            var whole = Decode.All(bytes, direction);
            var byByte = Decode.ByteByByte(bytes, direction);
            Assert.Null(byByte.Violation);
            Assert.Equal(whole.Messages.Select(m => (m.Uid, m.Operation, Convert.ToHexString(m.Payload))), byByte.Messages.Select(m => (m.Uid, m.Operation, Convert.ToHexString(m.Payload))));
        }
    }

    /// <summary>
    /// The checks fail if any byte changes: every header byte of every capture is altered in turn and the
    /// decoding checks alone (index, re-encoding, cache answers) catch each; a sample of payload bytes is altered
    /// and the full check (with the manifest) catches each.
    /// </summary>
    [Fact]
    public void Changing_any_byte_of_a_capture_fails_the_checks()
    {
        var files = LoadCaptures();
        var random = new Random(1234);
        int headerMutations = 0, payloadMutations = 0;
        foreach (var name in files.Keys.ToList())
        {
            var original = files[name];
            var headerBytes = HeaderByteOffsets(name, original);
            foreach (int at in headerBytes)
            {
                files[name] = Mutate(original, at, random);
                Assert.True(Check(files, includeManifest: false).Count > 0, $"header byte {at} of {name}");
                headerMutations++;
            }

            var payloadBytes = Enumerable.Range(0, original.Length).Where(a => !headerBytes.Contains(a)).ToArray();
            foreach (int at in payloadBytes.Length == 0 ? [] : random.GetItems(payloadBytes, 3))
            {
                files[name] = Mutate(original, at, random);
                Assert.True(Check(files, includeManifest: true).Count > 0, $"payload byte {at} of {name}");
                payloadMutations++;
            }

            files[name] = original;
        }

        Assert.Equal(IndexLines().Length * ProtocolConstants.FrameHeaderSize, headerMutations);
        // Every file has payload bytes (a response carries at least its status byte) except 1.5.1's empty failure response.
        Assert.Equal(3 * (files.Count - 1), payloadMutations);
    }

    private static byte[] Mutate(byte[] original, int at, Random random)
    {
        var copy = (byte[])original.Clone();
        copy[at] ^= (byte)random.Next(1, 256);
        return copy;
    }

    private static HashSet<int> HeaderByteOffsets(string name, byte[] bytes)
    {
        var offsets = new HashSet<int>();
        foreach (var line in FrameLines(name, bytes, []))
        {
            int off = int.Parse(line.Split(' ')[1][4..], CultureInfo.InvariantCulture);
            offsets.UnionWith(Enumerable.Range(off, ProtocolConstants.FrameHeaderSize));
        }

        return offsets;
    }

    [Fact]
    public void Repository_copy_matches_the_shared_specification_when_present()
    {
        // The vectors are copied into the repository so the suite needs nothing outside it; where the shared
        // specification sits beside the checkout, the copies must still equal it.
        var shared = Path.GetFullPath(Path.Combine(Root, "..", "..", "..", "..", "..", "..", "..", "shared", "protocol", "vectors"));
        if (!Directory.Exists(shared))
        {
            Assert.Skip($"no shared specification at {shared}");
        }

        foreach (var (name, bytes) in LoadCaptures())
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(shared, name)), bytes);
        }

        Assert.Equal(File.ReadAllText(Path.Combine(shared, "index.txt")), File.ReadAllText(Path.Combine(Root, "index.txt")));
    }
}
