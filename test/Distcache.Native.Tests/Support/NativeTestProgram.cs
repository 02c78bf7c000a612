using System.Diagnostics;
using System.Text;
using Distcache.EndToEnd.Tests.Support;

namespace Distcache.Native.Tests.Support;

/// <summary>What a finished process printed and how it ended.</summary>
public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public string Describe() =>
        $"exit code {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- standard output ---\n{Stdout.TrimEnd()}\n--- standard error ---\n{Stderr.TrimEnd()}";
}

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
        ProcessResult list = Run(ProgramPath, ["--list"], new Dictionary<string, string?>(), TimeSpan.FromSeconds(30));
        if (list.ExitCode != 0)
        {
            throw new InvalidOperationException("test_libdistcache --list failed: " + list.Describe());
        }

        return list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    private static string Build()
    {
        ProcessResult make = Run("make", ["-C", NativeDirectory, "test-build"], new Dictionary<string, string?>(), TimeSpan.FromMinutes(5));
        if (make.ExitCode != 0)
        {
            throw new InvalidOperationException("make -C native test-build failed (it needs make and a C compiler): " + make.Describe());
        }

        string path = Path.Combine(NativeDirectory, "build", "test", "test_libdistcache");
        return File.Exists(path) ? path : throw new FileNotFoundException($"make -C native test-build succeeded but {path} does not exist");
    }

    /// <summary>
    /// Runs a program to completion with the given environment changes (a null value removes the variable), killing
    /// it (and its children) after <paramref name="timeout"/>.
    /// </summary>
    public static ProcessResult Run(string file, IEnumerable<string> args, IReadOnlyDictionary<string, string?> environment, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Tool.RepositoryRoot,
        };
        foreach (string arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (name, value) in environment)
        {
            if (value is null)
            {
                info.Environment.Remove(name);
            }
            else
            {
                info.Environment[name] = value;
            }
        }

        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var clock = Stopwatch.StartNew();
        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (stdout) { stdout.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (stderr) { stderr.AppendLine(e.Data); } } };
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            lock (stderr)
            {
                stderr.AppendLine($"(killed: still running after {timeout.TotalSeconds:F0} s)");
            }
        }

        // WaitForExit(TimeSpan) does not wait for the redirected streams; this does.
        process.WaitForExit();
        lock (stdout)
        {
            lock (stderr)
            {
                return new ProcessResult(process.ExitCode, stdout.ToString(), stderr.ToString(), clock.Elapsed);
            }
        }
    }
}
