using System.Diagnostics;
using Distcache.Fuzz;

namespace Distcache.Fuzz.Tests;

/// <summary>
/// Replays everything the fuzzer kept, the corpus and every input that once failed, through the very targets
/// fuzz/run.sh fuzzes, without the fuzzer. A target fails an input by throwing; nothing else is expected to throw.
/// </summary>
public sealed class ReplayTests
{
    // The fuzzer's limit is one second an input; replay on a shared, loaded machine only guards against a real
    // hang, so its bound is generous.
    private static readonly TimeSpan HangBound = TimeSpan.FromSeconds(20);

    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "fuzz");

    public static TheoryData<string> Targets => [.. FuzzTargets.Names];

    [Theory]
    [MemberData(nameof(Targets))]
    public void Corpus_replays_without_failure(string target)
    {
        string[] files = Files("corpus", target);
        Assert.NotEmpty(files);
        Assert.Empty(Replay(target, files));
    }

    [Fact]
    public void Regressions_replay_without_failure()
    {
        // Not every target has regression files (the fuzzer found nothing there), but the set as a whole is never empty.
        int replayed = 0;
        var failures = new List<string>();
        foreach (string target in FuzzTargets.Names)
        {
            string[] files = Files("regressions", target);
            replayed += files.Length;
            failures.AddRange(Replay(target, files).Select(f => $"{target}/{f}"));
        }

        Assert.NotEqual(0, replayed);
        Assert.Empty(failures);
    }

    [Fact]
    public void Every_kept_directory_belongs_to_a_target()
    {
        foreach (string kind in new[] { "corpus", "regressions" })
        {
            string directory = Path.Combine(Root, kind);
            if (!Directory.Exists(directory))
            {
                continue;
            }

            foreach (string sub in Directory.GetDirectories(directory))
            {
                Assert.Contains(Path.GetFileName(sub), FuzzTargets.Names);
            }
        }
    }

    [Fact]
    public void Unknown_target_is_refused_by_name()
    {
        var e = Assert.Throws<ArgumentException>(() => FuzzTargets.Get("nosuch"));
        Assert.Contains("nosuch", e.Message, StringComparison.Ordinal);
    }

    private static string[] Files(string kind, string target)
    {
        string directory = Path.Combine(Root, kind, target);
        return Directory.Exists(directory) ? [.. Directory.GetFiles(directory).Order(StringComparer.Ordinal)] : [];
    }

    private static List<string> Replay(string target, string[] files)
    {
        FuzzTarget run = FuzzTargets.Get(target);
        var failures = new List<string>();
        foreach (string file in files)
        {
            byte[] input = File.ReadAllBytes(file);
            var clock = Stopwatch.StartNew();
            try
            {
                run(input);
            }
            catch (Exception e)
            {
                failures.Add($"{Path.GetFileName(file)}: {e.GetType().Name}: {e.Message}");
            }

            if (clock.Elapsed > HangBound)
            {
                failures.Add($"{Path.GetFileName(file)}: ran {clock.Elapsed.TotalSeconds:F1} s");
            }
        }

        return failures;
    }
}
