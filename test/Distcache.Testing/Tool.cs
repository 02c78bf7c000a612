using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Distcache.Testing;

/// <summary>
/// A child process with its output captured: one of this repository's executables (dc_server, dc_client, ...) or
/// any other program (make, valgrind, a C test program). Every wait on it is bounded, and disposing kills it (and
/// its children) if it is still running, so no test leaves a process behind.
/// </summary>
public sealed class Tool : IAsyncDisposable
{
    // Exited fires before the redirected streams are drained; a grandchild that inherited them may keep them open
    // long after, which must not hold a test for longer than this.
    private static readonly TimeSpan DrainLimit = TimeSpan.FromSeconds(10);

    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Stopwatch _clock = new();
    private int _disposed;

    private Tool(Process process)
    {
        _process = process;
        CommandLine = process.StartInfo.FileName + (process.StartInfo.ArgumentList.Count == 0 ? "" : " " + string.Join(' ', process.StartInfo.ArgumentList));
    }

    /// <summary>The program and its arguments, for messages.</summary>
    public string CommandLine { get; }

    /// <summary>The process id.</summary>
    public int Pid => _process.Id;

    /// <summary>Whether the process has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>The exit code (once <see cref="HasExited"/>).</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Standard output so far.</summary>
    public string Stdout => Read(_stdout);

    /// <summary>Standard error so far.</summary>
    public string Stderr => Read(_stderr);

    /// <summary>Standard output and standard error so far, interleaved in the order their lines arrived.</summary>
    public string Output => Read(_output);

    /// <summary>The repository root (the folder holding Distcache.slnx).</summary>
    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>The build configuration this test assembly was built in; the tools are used from the same one.</summary>
    public static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;

    /// <summary>The path of a tool's executable (the apphost next to its dll).</summary>
    /// <param name="name">The tool's name, as under apps/ (dc_server, ...).</param>
    /// <returns>The path, which exists.</returns>
    public static string PathOf(string name)
    {
        var path = Path.Combine(RepositoryRoot, "apps", name, "bin", Configuration, "net10.0", name);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{name} is not built at {path}; build the solution first");
        }

        return path;
    }

    /// <summary>Starts one of this repository's tools.</summary>
    /// <param name="name">The tool's name, as under apps/ (dc_server, ...).</param>
    /// <param name="args">Its arguments.</param>
    /// <returns>The running tool.</returns>
    public static Tool Start(string name, params string[] args) => StartPath(PathOf(name), args);

    /// <summary>Starts one of this repository's tools with extra environment variables.</summary>
    /// <param name="name">The tool's name, as under apps/ (dc_server, ...).</param>
    /// <param name="environment">Variables to set.</param>
    /// <param name="args">Its arguments.</param>
    /// <returns>The running tool.</returns>
    public static Tool StartWithEnvironment(string name, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        StartPath(PathOf(name), args, environment.ToDictionary(e => e.Key, e => (string?)e.Value, StringComparer.Ordinal));

    /// <summary>Starts any program (a tool copied elsewhere, a system command, ...).</summary>
    /// <param name="path">The program: a path, or a name looked up on PATH.</param>
    /// <param name="args">Its arguments.</param>
    /// <param name="environment">Variables to set; a null value removes the variable.</param>
    /// <param name="workingDirectory">Where it runs; this process's current directory if null.</param>
    /// <returns>The running program.</returns>
    public static Tool StartPath(string path, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment = null, string? workingDirectory = null) =>
        Launch(path, args, environment, workingDirectory, closeInput: false);

    /// <summary>Runs one of this repository's tools to completion; fails (after killing it) if it runs longer than
    /// <paramref name="timeout"/>.</summary>
    /// <param name="timeout">How long it may run.</param>
    /// <param name="name">The tool's name, as under apps/ (dc_server, ...).</param>
    /// <param name="args">Its arguments.</param>
    /// <returns>The tool, exited.</returns>
    public static async Task<Tool> RunAsync(TimeSpan timeout, string name, params string[] args)
    {
        var tool = Start(name, args);
        await tool.WaitForExitAsync(timeout).ConfigureAwait(false);
        return tool;
    }

    /// <summary>
    /// Runs any program to completion with its standard input closed and <c>LC_ALL=C</c> (so that the messages a
    /// test looks for are the untranslated ones). It never throws for the program's sake: one that cannot start,
    /// or that is still running after <paramref name="timeout"/> (it is then killed, with its children), gives a
    /// result with exit code -1 and a line saying so, for the caller's failure message.
    /// </summary>
    /// <param name="file">The program: a path, or a name looked up on PATH.</param>
    /// <param name="args">Its arguments.</param>
    /// <param name="timeout">How long it may run.</param>
    /// <param name="environment">Variables to set; a null value removes the variable.</param>
    /// <param name="workingDirectory">Where it runs; this process's current directory if null.</param>
    /// <returns>How it ended and what it printed.</returns>
    public static async Task<ProcessResult> RunProgramAsync(string file, IEnumerable<string> args, TimeSpan timeout,
        IReadOnlyDictionary<string, string?>? environment = null, string? workingDirectory = null)
    {
        var variables = new Dictionary<string, string?>(StringComparer.Ordinal) { ["LC_ALL"] = "C" };
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            variables[name] = value;
        }

        Tool tool;
        string[] arguments = [.. args];
        try
        {
            tool = Launch(file, arguments, variables, workingDirectory, closeInput: true);
        }
        catch (Win32Exception e)
        {
            string commandLine = file + " " + string.Join(' ', arguments);
            string error = $"cannot start {file}: {e.Message}";
            return new ProcessResult(commandLine, -1, "", error, error, TimeSpan.Zero);
        }

        await using (tool.ConfigureAwait(false))
        {
            try
            {
                await tool.WaitForExitAsync(timeout).ConfigureAwait(false);
                return tool.Result(tool.ExitCode, note: null);
            }
            catch (TimeoutException)
            {
                return tool.Result(-1, $"(killed: did not finish within {timeout.TotalSeconds:F0} s)");
            }
        }
    }

    /// <summary>Waits for the process to exit; kills it and throws, with its standard error, after
    /// <paramref name="timeout"/>.</summary>
    /// <param name="timeout">How long to wait.</param>
    /// <returns>A task that completes once the process has exited and its output is read.</returns>
    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await _exited.Task.WaitAsync(timeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Kill();
            throw new TimeoutException($"{_process.StartInfo.FileName} did not exit within {timeout}. stderr:\n{Stderr}");
        }

        await DrainAsync().ConfigureAwait(false);
    }

    /// <summary>Waits until <paramref name="condition"/> holds, failing with the process's standard error if it exits
    /// first or after <paramref name="timeout"/>.</summary>
    /// <param name="condition">What to wait for.</param>
    /// <param name="timeout">How long to wait.</param>
    /// <param name="what">What is awaited, for the failure message.</param>
    /// <returns>A task that completes once the condition holds.</returns>
    public async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        bool met = false;
        await Poll.UntilAsync(() => (met = condition()) || HasExited, timeout, what, () => $"stderr:\n{Stderr}", interval: TimeSpan.FromMilliseconds(20)).ConfigureAwait(false);
        if (!met)
        {
            throw new InvalidOperationException($"{what}: the tool exited with {ExitCode}. stderr:\n{Stderr}");
        }
    }

    /// <summary>Waits until something accepts connections at the address.</summary>
    /// <param name="address">An <c>IP:host:port</c> or <c>UNIX:path</c> address.</param>
    /// <returns>A task that completes once a connection succeeded.</returns>
    public Task WaitForListenerAsync(string address) => WaitUntilAsync(() => CanConnect(address), TimeSpan.FromSeconds(20), $"listening on {address}");

    /// <summary>Sends a signal to the process.</summary>
    /// <param name="signal">The signal's number (<see cref="Native.SIGTERM"/>, ...).</param>
    public void Signal(int signal) => _ = Native.Kill(_process.Id, signal);

    /// <summary>Kills the process and its children, if it is still running.</summary>
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

    /// <summary>Kills the process if it is still running and waits (bounded) for it to go.</summary>
    /// <returns>A task that completes once it is gone or the wait has ended.</returns>
    public async ValueTask DisposeAsync()
    {
        // A test may stop a process itself and still hold it in an await using, so that a failure before that point
        // stops it too: the second dispose does nothing.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Kill();
        try
        {
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }

        _process.Dispose();
    }

    /// <summary>Whether something accepts connections at the address now.</summary>
    /// <param name="address">An <c>IP:host:port</c> or <c>UNIX:path</c> address.</param>
    /// <returns>True if a connection succeeded.</returns>
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
    /// <param name="address">Where to connect.</param>
    /// <returns>The connected socket.</returns>
    public static Socket Connect(string address)
    {
        ArgumentNullException.ThrowIfNull(address);
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
            endPoint = new IPEndPoint(IPAddress.Parse(parts[1]), int.Parse(parts[2], CultureInfo.InvariantCulture));
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
    /// <returns>The port.</returns>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>A TCP port that was free on both 127.0.0.1 and 127.0.0.2 a moment ago: two servers of a test farm
    /// listen on the same port at two addresses, as two hosts would.</summary>
    /// <returns>The port.</returns>
    public static int FreePortOnBoth()
    {
        for (int i = 0; i < 20; i++)
        {
            int port = FreePort();
            try
            {
                using var probe = new TcpListener(IPAddress.Parse("127.0.0.2"), port);
                probe.Start();
                return port;
            }
            catch (SocketException)
            {
            }
        }

        throw new InvalidOperationException("no port free on both 127.0.0.1 and 127.0.0.2");
    }

    private static Tool Launch(string path, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment, string? workingDirectory, bool closeInput)
    {
        var info = new ProcessStartInfo(path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (workingDirectory is not null)
        {
            info.WorkingDirectory = workingDirectory;
        }

        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["DOTNET_gcServer"] = "0";
        foreach (var (variable, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                info.Environment.Remove(variable);
            }
            else
            {
                info.Environment[variable] = value;
            }
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var tool = new Tool(process);
        process.OutputDataReceived += (_, e) => tool.Append(tool._stdout, e.Data);
        process.ErrorDataReceived += (_, e) => tool.Append(tool._stderr, e.Data);
        process.Exited += (_, _) =>
        {
            tool._clock.Stop();
            tool._exited.TrySetResult();
        };
        tool._clock.Start();
        try
        {
            process.Start();
        }
        catch
        {
            process.Dispose();
            throw;
        }

        if (closeInput)
        {
            process.StandardInput.Close();
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return tool;
    }

    private static string Read(StringBuilder text)
    {
        lock (text)
        {
            return text.ToString();
        }
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Distcache.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("Distcache.slnx not found above " + AppContext.BaseDirectory);
    }

    private void Append(StringBuilder stream, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (stream)
        {
            stream.AppendLine(line);
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    private async Task DrainAsync()
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(DrainLimit).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // The output read so far is what the test gets.
        }
    }

    private ProcessResult Result(int exitCode, string? note)
    {
        if (note is not null)
        {
            Append(_stderr, note);
        }

        return new ProcessResult(CommandLine, exitCode, Stdout, Stderr, Output, _clock.Elapsed);
    }
}
