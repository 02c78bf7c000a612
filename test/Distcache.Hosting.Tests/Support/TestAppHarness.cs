using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Distcache.Hosting.Tests.Support;

/// <summary>What a finished run of the test program produced.</summary>
internal sealed record RunResult(int ExitCode, string Output, string Error, TimeSpan Elapsed);

/// <summary>The scheduling state of a process, from <c>/proc/&lt;pid&gt;/stat</c>.</summary>
internal sealed record ProcessStat(char State, int ParentId, int ProcessGroup, int Session, int TerminalNumber);

/// <summary>
/// Runs Distcache.Hosting.TestApp as a separate process in a private temporary directory, and on dispose kills
/// whatever it left running (recognised by a marker in the environment every descendant inherits) and removes
/// the directory.
/// </summary>
internal sealed class TestAppHarness : IDisposable
{
    public const string MarkVariable = "DISTCACHE_HOSTING_TEST_MARK";
    private const int SIGKILL = 9;
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(60);

    private readonly string _mark = Guid.NewGuid().ToString("N");

    public TestAppHarness()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("dc-hosting-").FullName;
    }

    public string Directory { get; }

    public static string AppDll => Path.Combine(AppContext.BaseDirectory, "Distcache.Hosting.TestApp.dll");

    public static string AppHost => Path.Combine(AppContext.BaseDirectory, "Distcache.Hosting.TestApp");

    /// <summary>The dotnet muxer running these tests, so the program runs on the same runtime.</summary>
    public static string DotnetHost
    {
        get
        {
            var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk))
            {
                return fromSdk;
            }

            // The runtime lives in <root>/shared/Microsoft.NETCore.App/<version>/; the muxer in <root>.
            var root = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
            var muxer = Path.Combine(root, "dotnet");
            return File.Exists(muxer) ? muxer : "dotnet";
        }
    }

    public string PathFor(string name) => Path.Combine(Directory, name);

    /// <summary>Runs <c>dotnet TestApp.dll args</c> and waits for it to exit.</summary>
    public Task<RunResult> RunAsync(params string[] args) => RunAsync(DotnetHost, [AppDll, .. args]);

    /// <summary>Runs an arbitrary command with the harness marker in its environment and waits for it to exit.</summary>
    public async Task<RunResult> RunAsync(string fileName, IReadOnlyList<string> arguments, string? workingDirectory = null)
    {
        var stopwatch = Stopwatch.StartNew();
        using var process = Start(fileName, arguments, workingDirectory);
        return await WaitAsync(process, stopwatch);
    }

    /// <summary>Starts <c>dotnet TestApp.dll args</c> without waiting; finish with <see cref="WaitAsync"/>.</summary>
    public Process Start(params string[] args) => Start(DotnetHost, [AppDll, .. args], null);

    /// <summary>Waits for a process from <see cref="Start(string[])"/> to exit and collects its output.</summary>
    public static async Task<RunResult> WaitAsync(Process process, Stopwatch? stopwatch = null)
    {
        stopwatch ??= Stopwatch.StartNew();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(RunLimit);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{process.StartInfo.FileName} {string.Join(' ', process.StartInfo.ArgumentList)} did not exit within {RunLimit}");
        }

        // The daemon child has pipes of its own, so these end with the parent.
        return new RunResult(process.ExitCode, await output, await error, stopwatch.Elapsed);
    }

    private Process Start(string fileName, IReadOnlyList<string> arguments, string? workingDirectory)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Directory,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        startInfo.Environment[MarkVariable] = _mark;
        var process = Process.Start(startInfo)!;
        process.StandardInput.Close();
        return process;
    }

    /// <summary>Waits for a pid file to appear and returns the id in it.</summary>
    public static int ReadPid(string path)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            if (PidFile.TryRead(path, out var pid))
            {
                return pid;
            }

            Assert.True(DateTime.UtcNow < deadline, $"no pid in {path}");
            Thread.Sleep(20);
        }
    }

    /// <summary>The process's scheduling state, or null once it is gone.</summary>
    public static ProcessStat? Stat(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException)
        {
            return null;
        }

        // The command name is in parentheses and may itself hold spaces or parentheses: split after the last one.
        var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
        int Field(int index) => int.Parse(fields[index], CultureInfo.InvariantCulture);
        return new ProcessStat(fields[0][0], Field(1), Field(2), Field(3), Field(4));
    }

    /// <summary>Whether the process exists and has not exited (a zombie waiting to be reaped counts as exited).</summary>
    public static bool IsRunning(int pid) => Stat(pid) is { State: not ('Z' or 'X') };

    /// <summary>Waits until the process has exited.</summary>
    public static bool WaitForExit(int pid, TimeSpan limit)
    {
        var deadline = DateTime.UtcNow + limit;
        while (IsRunning(pid))
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            Thread.Sleep(20);
        }

        return true;
    }

    public static void Signal(int pid, int signal) =>
        Assert.True(Kill(pid, signal) == 0, $"kill({pid}, {signal}) failed: {Marshal.GetLastPInvokeErrorMessage()}");

    public void Dispose()
    {
        foreach (var pid in MarkedProcesses())
        {
            _ = Kill(pid, SIGKILL);
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A process killed just now may still be closing a file in there; the system cleans /tmp eventually.
        }
    }

    private IEnumerable<int> MarkedProcesses()
    {
        var needle = $"{MarkVariable}={_mark}";
        foreach (var entry in System.IO.Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }

            string environment;
            try
            {
                environment = File.ReadAllText(Path.Combine(entry, "environ"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            if (environment.Split('\0').Contains(needle, StringComparer.Ordinal))
            {
                yield return pid;
            }
        }
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
