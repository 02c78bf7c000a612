using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Distcache.EndToEnd.Tests.Support;

/// <summary>
/// A real executable of this repository (dc_server, dc_client, ...) run as a child process, with its output
/// captured. Disposing kills it if it is still running, so no test leaves a process behind.
/// </summary>
internal sealed class Tool : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private Tool(Process process)
    {
        _process = process;
    }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public string Stdout
    {
        get
        {
            lock (_stdout)
            {
                return _stdout.ToString();
            }
        }
    }

    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>The repository root (the folder holding Distcache.slnx).</summary>
    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>The build configuration this test assembly was built in; the tools are used from the same one.</summary>
    public static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(System.IO.Path.DirectorySeparatorChar)).Parent!.Name;

    /// <summary>The path of a tool's executable (the apphost next to its dll).</summary>
    public static string PathOf(string name)
    {
        var path = System.IO.Path.Combine(RepositoryRoot, "apps", name, "bin", Configuration, "net10.0", name);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{name} is not built at {path}; build the solution first");
        }

        return path;
    }

    public static Tool Start(string name, params string[] args) => StartPath(PathOf(name), args);

    /// <summary>Starts a tool with extra environment variables.</summary>
    public static Tool StartWithEnvironment(string name, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        StartPath(PathOf(name), environment, args);

    /// <summary>Starts an executable by path (a tool copied elsewhere, say).</summary>
    public static Tool StartPath(string path, params string[] args) => StartPath(path, new Dictionary<string, string>(), args);

    private static Tool StartPath(string path, IReadOnlyDictionary<string, string> environment, string[] args)
    {
        var info = new ProcessStartInfo(path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["DOTNET_gcServer"] = "0";
        foreach (var (variable, value) in environment)
        {
            info.Environment[variable] = value;
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var tool = new Tool(process);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (tool._stdout) { tool._stdout.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (tool._stderr) { tool._stderr.AppendLine(e.Data); } } };
        process.Exited += (_, _) => tool._exited.TrySetResult();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return tool;
    }

    /// <summary>Runs a tool to completion (bounded by <paramref name="timeout"/>) and returns it exited.</summary>
    public static async Task<Tool> RunAsync(TimeSpan timeout, string name, params string[] args)
    {
        var tool = Start(name, args);
        await tool.WaitForExitAsync(timeout);
        return tool;
    }

    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await _exited.Task.WaitAsync(timeout);
            // Exited fires before the redirected streams are drained; this waits for them.
            await _process.WaitForExitAsync();
        }
        catch (TimeoutException)
        {
            Kill();
            throw new TimeoutException($"{_process.StartInfo.FileName} did not exit within {timeout}. stderr:\n{Stderr}");
        }
    }

    /// <summary>Waits until <paramref name="condition"/> holds, failing with the tool's output after <paramref name="timeout"/>.</summary>
    public async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (HasExited)
            {
                throw new InvalidOperationException($"{what}: the tool exited with {ExitCode}. stderr:\n{Stderr}");
            }

            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"{what}: not within {timeout}. stderr:\n{Stderr}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>Waits until something accepts connections at the address.</summary>
    public Task WaitForListenerAsync(string address) => WaitUntilAsync(() => CanConnect(address), TimeSpan.FromSeconds(20), $"listening on {address}");

    public void Signal(int signal) => _ = Native.Kill(_process.Id, signal);

    public void Kill()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        try
        {
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (TimeoutException)
        {
        }

        _process.Dispose();
    }

    public static bool CanConnect(string address)
    {
        try
        {
            using var socket = Connect(address);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>A blocking socket connected to an <c>IP:host:port</c> or <c>UNIX:path</c> address.</summary>
    public static Socket Connect(string address)
    {
        Socket socket;
        EndPoint endPoint;
        if (address.StartsWith("UNIX:", StringComparison.Ordinal))
        {
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            endPoint = new UnixDomainSocketEndPoint(address[5..]);
        }
        else
        {
            var parts = address.Split(':');
            socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            endPoint = new IPEndPoint(IPAddress.Parse(parts[1]), int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture));
        }

        try
        {
            socket.Connect(endPoint);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>A loopback TCP port that was free a moment ago.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Distcache.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("Distcache.slnx not found above " + AppContext.BaseDirectory);
    }
}

internal static partial class Native
{
    public const int SIGINT = 2;
    public const int SIGKILL = 9;
    public const int SIGUSR1 = 10;
    public const int SIGUSR2 = 12;
    public const int SIGTERM = 15;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    public static bool IsAlive(int pid) => Kill(pid, 0) == 0;
}

/// <summary>A temporary folder for sockets and pid files, removed at the end of the test.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        // Short and under /tmp: unix socket paths are limited to 107 bytes.
        Path = Directory.CreateTempSubdirectory("dc-").FullName;
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
