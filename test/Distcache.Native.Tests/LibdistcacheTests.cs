using Distcache.Native.Tests.Support;

namespace Distcache.Native.Tests;

/// <summary>
/// The C library's own tests (native/test/test_libdistcache.c), each in its own process under valgrind, against the
/// real dc_server and dc_client of this repository and the fake servers the program runs itself: every function and
/// flag, get and reget, bad arguments, the lifetime floor, the time limit, answer checks, uids, connections, fork()
/// and threads. A test fails when the program reports it failed, or when valgrind finds a memory error or a
/// definite leak (exit code 99). The soak test runs without valgrind.
/// </summary>
public sealed class LibdistcacheTests(NativeServers servers, ITestOutputHelper output) : IClassFixture<NativeServers>
{
    private const string Soak = "soak";

    /// <summary>A test's own limit is 240 s under valgrind (alarm()); this only catches a runner that hangs past it.</summary>
    private static readonly TimeSpan PerTest = TimeSpan.FromMinutes(5);

    /// <summary>Every test the program lists, but the soak test (too long under valgrind; see below).</summary>
    public static TheoryData<string> TestNames()
    {
        var names = new TheoryData<string>();
        foreach (string name in NativeTestProgram.ListTests())
        {
            if (name != Soak)
            {
                names.Add(name);
            }
        }

        return names;
    }

    [Theory]
    [MemberData(nameof(TestNames))]
    public async Task Passes_under_valgrind(string name)
    {
        ProcessResult run = await servers.RunUnderValgrindAsync(name, PerTest);
        output.WriteLine(run.Describe());
        bool passed = run.ExitCode == 0
            && run.Stdout.Contains($"ok - {name}\n", StringComparison.Ordinal)
            && run.Stdout.Contains("1 passed, 0 failed", StringComparison.Ordinal);
        Assert.True(passed, $"test_libdistcache {name}: "
            + (run.ExitCode == 99 ? "valgrind found memory errors or leaks (its report is on standard error); " : "")
            + run.Describe() + "\n" + servers.ServerLogs());
    }

    /// <summary>200000 operations through dc_client on 8 threads (PERSISTENT), then a connection per operation, then
    /// 1000 threads one after another: resident memory and open descriptors stay flat.</summary>
    [Fact]
    public async Task Soak_keeps_memory_and_descriptors_flat()
    {
        ProcessResult run = await servers.RunNativeAsync([Soak], new Dictionary<string, string?> { ["DISTCACHE_TEST_SOAK_OPS"] = "200000" }, PerTest);
        output.WriteLine(run.Describe());
        Assert.True(run.ExitCode == 0 && run.Stdout.Contains("1 passed, 0 failed", StringComparison.Ordinal),
            $"test_libdistcache soak: {run.Describe()}\n{servers.ServerLogs()}");
    }

    [Fact]
    public async Task The_runner_lists_unique_names_and_reports_unknown_ones()
    {
        IReadOnlyList<string> names = NativeTestProgram.ListTests();
        Assert.Contains(Soak, names);
        Assert.Equal(names.Count, names.Distinct(StringComparer.Ordinal).Count());
        Assert.All(names, name => Assert.Matches("^[a-z0-9_]+$", name));

        ProcessResult unknown = await servers.RunNativeAsync(["constants", "no_such_test"], new Dictionary<string, string?>(), TimeSpan.FromSeconds(60));
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("ok - constants\n", unknown.Stdout, StringComparison.Ordinal);
        Assert.Contains("not ok - no_such_test: no such test", unknown.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("1 passed, 1 failed\n", unknown.Stdout, StringComparison.Ordinal);
    }
}
