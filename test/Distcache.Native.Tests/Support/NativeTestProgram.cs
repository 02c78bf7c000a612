namespace Distcache.Native.Tests.Support;

/// <summary>
/// native/build/test/test_libdistcache: built once per test run with <c>make -C native test-build</c> (the library
/// and the test program; make does nothing when they are up to date), listed with <c>--list</c>, and run one test
/// at a time.
/// </summary>
internal static class NativeTestProgram
{
    private static readonly Lazy<string> Built = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    public static string NativeDirectory => Path.Combine(Tool.RepositoryRoot, "native");

    /// <summary>The built program's path; builds it on first use and throws with make's output when that fails.</summary>
    public static string ProgramPath => Built.Value;

    /// <summary>The names <c>--list</c> prints, in its order.</summary>
    public static IReadOnlyList<string> ListTests()
    {
        ProcessResult list = Run(ProgramPath, ["--list"], null, TimeSpan.FromSeconds(30));
        if (list.ExitCode != 0)
        {
            throw new InvalidOperationException("test_libdistcache --list failed: " + list.Describe());
        }

        return list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>
    /// Runs a program to completion in the repository root with the given environment changes (a null value removes
    /// the variable), killing it (and its children) after <paramref name="timeout"/>.
    /// </summary>
    public static Task<ProcessResult> RunAsync(string file, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment, TimeSpan timeout) =>
        Tool.RunProgramAsync(file, args, timeout, environment, Tool.RepositoryRoot);

    private static string Build()
    {
        ProcessResult make = Run("make", ["-C", NativeDirectory, "test-build"], null, TimeSpan.FromMinutes(5));
        if (make.ExitCode != 0)
        {
            throw new InvalidOperationException("make -C native test-build failed (it needs make and a C compiler): " + make.Describe());
        }

        string path = Path.Combine(NativeDirectory, "build", "test", "test_libdistcache");
        return File.Exists(path) ? path : throw new FileNotFoundException($"make -C native test-build succeeded but {path} does not exist");
    }

    // The list feeds theory data and the build runs inside a Lazy, both synchronous; Tool's waits never need the
    // blocked thread to go on.
    private static ProcessResult Run(string file, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment, TimeSpan timeout) =>
        RunAsync(file, args, environment, timeout).GetAwaiter().GetResult();
}
