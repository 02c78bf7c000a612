using System.Globalization;

namespace Distcache.Testing;

/// <summary>
/// A real web server (Apache httpd, nginx, HAProxy: a master process and its workers) serving TLS on one address and
/// port, started by a test as its child. Everything it writes (configuration, logs, pid file, temporary files, keys)
/// is in a folder of its own, which disposing removes after stopping the server. Every wait on it is bounded.
/// </summary>
public abstract class WebServer : IAsyncDisposable
{
    // Bounds that only a failure reaches: generous, for a loaded 2-core machine.
    private static readonly TimeSpan StartLimit = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ReloadLimit = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StopLimit = TimeSpan.FromSeconds(15);

    private Tool? _process;

    /// <summary>Creates the server's folder; nothing runs until <see cref="StartAsync"/>.</summary>
    /// <param name="kind">apache, nginx, haproxy: for the folder's, the pid file's and the messages' names.</param>
    /// <param name="address">The address it listens on.</param>
    /// <param name="port">The port it listens on.</param>
    protected WebServer(string kind, string address, int port)
    {
        Kind = kind;
        Address = address;
        Port = port;
        Directory = System.IO.Directory.CreateTempSubdirectory($"dc-{kind}-").FullName;
    }

    /// <summary>apache, nginx or haproxy, for messages.</summary>
    public string Kind { get; }

    /// <summary>The address it listens on.</summary>
    public string Address { get; }

    /// <summary>The port it listens on.</summary>
    public int Port { get; }

    /// <summary>HOST:PORT, as tls_client.py takes it.</summary>
    public string Endpoint => $"{Address}:{Port}";

    /// <summary>The server's own folder.</summary>
    public string Directory { get; }

    /// <summary>Where the master writes its process id (the configuration must say so).</summary>
    public string PidFile => Path.Combine(Directory, $"{Kind}.pid");

    /// <summary>The master process's id.</summary>
    public int Pid => Process.Pid;

    /// <summary>Whether the master has exited.</summary>
    public bool HasExited => Process.HasExited;

    /// <summary>The shell command that reloads the server as an operator's tool would run it: a signal to the
    /// master, whose id it reads from the pid file.</summary>
    public string ReloadCommand => $"kill -{ReloadSignalName} \"$(cat '{PidFile}')\"";

    /// <summary>The master, once started.</summary>
    protected Tool Process => _process ?? throw new InvalidOperationException($"{Kind} {Endpoint} is not started");

    /// <summary>The signal that makes the master read its configuration (and the files it names) again and replace
    /// its workers.</summary>
    protected abstract int ReloadSignal { get; }

    /// <summary><see cref="ReloadSignal"/>'s name for kill(1), without SIG.</summary>
    protected abstract string ReloadSignalName { get; }

    /// <summary>Writes the configuration and starts the master in the foreground (it stays this process's child).</summary>
    /// <returns>The master.</returns>
    protected abstract Tool Launch();

    /// <summary>Whether the master says it started (in its log or its output).</summary>
    /// <returns>True once it has.</returns>
    protected abstract bool SaysStarted();

    /// <summary>A line of the server's log or output after <paramref name="mark"/> that says a reload failed, or null.</summary>
    /// <param name="mark">Where the log ended before the reload (<see cref="LogMark"/>).</param>
    /// <returns>The line, or null.</returns>
    protected abstract string? ReloadFailure(int mark);

    /// <summary>Where the server's log ends now, for <see cref="ReloadFailure"/>.</summary>
    /// <returns>Its length.</returns>
    protected abstract int LogMark();

    /// <summary>The server's log (the end of it), for failure messages.</summary>
    /// <returns>The text.</returns>
    protected abstract string LogTail();

    /// <summary>Starts the server and waits until its workers run and it accepts connections; throws with its log if
    /// it exits first (a port taken meanwhile shows as "Address already in use") or does not start in time.</summary>
    /// <returns>A task that completes once the server serves.</returns>
    public async Task StartAsync()
    {
        _process = Launch();
        await Poll.UntilAsync(
            () => Process.HasExited || (SaysStarted() && Workers().Count > 0 && Accepts()),
            StartLimit, $"{Kind} {Endpoint} to start", Diagnostics, TimeSpan.FromMilliseconds(20)).ConfigureAwait(false);
        if (Process.HasExited)
        {
            throw new InvalidOperationException($"{Kind} {Endpoint} exited with {Process.ExitCode} while starting.\n{Diagnostics()}");
        }
    }

    /// <summary>Sends the reload signal to the master and waits until the reload is complete (see
    /// <see cref="WaitReloadedSinceAsync"/>).</summary>
    /// <returns>A task that completes once only new workers serve.</returns>
    public async Task ReloadAsync()
    {
        (IReadOnlyList<ProcessInstance> before, int mark) = (Workers(), LogMark());
        Process.Signal(ReloadSignal);
        await WaitReloadedAsync(before, mark).ConfigureAwait(false);
    }

    /// <summary>Runs <see cref="ReloadCommand"/> with /bin/sh and waits until the reload is complete.</summary>
    /// <returns>A task that completes once only new workers serve.</returns>
    public async Task ReloadByCommandAsync()
    {
        (IReadOnlyList<ProcessInstance> before, int mark) = (Workers(), LogMark());
        ProcessResult command = await Tool.RunProgramAsync("/bin/sh", ["-c", ReloadCommand], TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        if (!command.Succeeded)
        {
            throw new InvalidOperationException($"the reload command of {Kind} {Endpoint} failed: {ReloadCommand}\n{command.Describe()}");
        }

        await WaitReloadedAsync(before, mark).ConfigureAwait(false);
    }

    /// <summary>Where the server stands now, for <see cref="WaitReloadedSinceAsync"/>: its workers and the end of its log.</summary>
    /// <returns>The mark.</returns>
    public (IReadOnlyList<ProcessInstance> Workers, int LogMark) Mark() => (Workers(), LogMark());

    /// <summary>
    /// Waits until a reload that something else asked for (a reload command run by a tool) after
    /// <paramref name="mark"/> is complete. A reload is complete when none of the workers from before it runs any
    /// more and new ones do: from then on every connection is served by a worker that read the new configuration
    /// and files (an old worker stops accepting when told to quit, but may still take a connection until then).
    /// The master's own word is not enough: nginx, HAProxy and Apache all log the reload before the old workers
    /// are gone. A failed reload is reported at once, with the line that says why: nginx and HAProxy keep their
    /// old workers, Apache exits.
    /// </summary>
    /// <param name="mark">What <see cref="Mark"/> returned before the reload was asked for.</param>
    /// <returns>A task that completes once only new workers serve.</returns>
    public Task WaitReloadedSinceAsync((IReadOnlyList<ProcessInstance> Workers, int LogMark) mark) => WaitReloadedAsync(mark.Workers, mark.LogMark);

    private async Task WaitReloadedAsync(IReadOnlyList<ProcessInstance> before, int mark)
    {
        await Poll.UntilAsync(() =>
        {
            if (ReloadFailure(mark) is { } failure)
            {
                throw new InvalidOperationException($"{Kind} {Endpoint} did not reload: {failure}\n{Diagnostics()}");
            }

            if (Process.HasExited)
            {
                throw new InvalidOperationException($"{Kind} {Endpoint} exited with {Process.ExitCode} while reloading.\n{Diagnostics()}");
            }

            IReadOnlyList<ProcessInstance> now = Workers();
            return now.Count > 0 && !now.Any(before.Contains) && Accepts();
        }, ReloadLimit, $"{Kind} {Endpoint} to replace its workers {string.Join(' ', before.Select(w => w.Pid))}", Diagnostics, TimeSpan.FromMilliseconds(20)).ConfigureAwait(false);
    }

    /// <summary>The master's running children (zombies not counted).</summary>
    /// <returns>The workers.</returns>
    public IReadOnlyList<ProcessInstance> Workers() => [.. ProcessTree.Children(Process.Pid).Where(ProcessTree.IsRunning)];

    private bool Accepts() => Tool.CanConnect($"IP:{Address}:{Port.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>The server's folder, workers, log and output, for failure messages.</summary>
    /// <returns>The text.</returns>
    public string Diagnostics()
    {
        string output = _process?.Output ?? "";
        return $"--- {Kind} {Endpoint} ({Directory}), workers {string.Join(' ', _process is null || _process.HasExited ? [] : Workers().Select(w => w.Pid))}\n"
            + $"--- its log (end):\n{LogTail()}\n--- its standard output and error:\n{output.TrimEnd()}";
    }

    /// <summary>The last lines of a text.</summary>
    /// <param name="text">A log.</param>
    /// <param name="lines">How many lines.</param>
    /// <returns>Its last <paramref name="lines"/> lines.</returns>
    protected static string Tail(string text, int lines = 30)
    {
        string[] all = (text ?? "").TrimEnd().Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    /// <summary>Stops the server (SIGTERM to the master, which stops its workers), kills what is left after a bounded
    /// wait, and removes its folder.</summary>
    /// <returns>A task that completes once the server is gone.</returns>
    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            IReadOnlyList<ProcessInstance> workers = _process.HasExited ? [] : Workers();
            if (!_process.HasExited)
            {
                _process.Signal(Native.SIGTERM);
                try
                {
                    await Poll.UntilAsync(() => _process.HasExited, StopLimit, $"{Kind} {Endpoint} to stop", interval: TimeSpan.FromMilliseconds(20)).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    _process.Kill();
                }
            }

            // The master waits for its workers before it exits; one that outlived it anyway (no longer its child,
            // so Kill's process tree misses it) is killed here, if it is still the same process.
            foreach (ProcessInstance worker in workers.Where(ProcessTree.IsRunning))
            {
                _ = Native.Kill(worker.Pid, Native.SIGKILL);
            }

            await _process.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        GC.SuppressFinalize(this);
    }
}
