using System.Globalization;

namespace Distcache.TicketKeys.Tests.Support;

/// <summary>The web servers the tests run.</summary>
public enum ServerKind
{
    Nginx,
    HAProxy,
}

/// <summary>
/// A real web server (a master process and its workers) serving TLS on one address and port with session tickets
/// only (no session cache), its ticket keys in files of its own folder. Everything it writes (configuration, logs,
/// pid file, temporary files, keys) is in that folder, which disposing removes after stopping the server.
/// </summary>
internal abstract class TicketServer : IAsyncDisposable
{
    private static readonly TimeSpan StartLimit = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan ReloadLimit = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan StopLimit = TimeSpan.FromSeconds(10);

    private Tool? _process;

    protected TicketServer(string kind, string address, int port, Certificate certificate)
    {
        Kind = kind;
        Address = address;
        Port = port;
        Certificate = certificate;
        Directory = System.IO.Directory.CreateTempSubdirectory($"dc-{kind}-").FullName;
    }

    /// <summary>nginx or haproxy, for messages.</summary>
    public string Kind { get; }

    public string Address { get; }

    public int Port { get; }

    /// <summary>HOST:PORT, as tls_client.py takes it.</summary>
    public string Endpoint => $"{Address}:{Port}";

    public string Directory { get; }

    public string PidFile => Path.Combine(Directory, $"{Kind}.pid");

    protected Certificate Certificate { get; }

    /// <summary>The master process's id.</summary>
    public int Pid => Process.Pid;

    /// <summary>The shell command that makes the server load its key files again, as dc_ticketkeys would run it
    /// after writing them: a signal to the master, whose id it reads from the pid file.</summary>
    public string ReloadCommand => $"kill -{ReloadSignalName} \"$(cat '{PidFile}')\"";

    protected Tool Process => _process ?? throw new InvalidOperationException($"{Kind} {Endpoint} is not started");

    /// <summary>The signal that makes the master read its configuration (and the key files) again and replace its workers.</summary>
    protected abstract int ReloadSignal { get; }

    protected abstract string ReloadSignalName { get; }

    /// <summary>Writes the keys where the configuration points; the server reads them at start and at each reload.</summary>
    public abstract void WriteKeys(HostKeys keys);

    /// <summary>The key files the configuration names.</summary>
    public abstract IReadOnlyList<string> KeyFiles { get; }

    /// <summary>Writes the configuration and starts the master in the foreground (it stays this process's child).</summary>
    protected abstract Tool Launch();

    /// <summary>Whether the master says it started (in its log or its output).</summary>
    protected abstract bool SaysStarted();

    /// <summary>A line of the server's log or output after <paramref name="mark"/> that says a reload failed, or null.</summary>
    protected abstract string? ReloadFailure(int mark);

    /// <summary>Where the server's log ends now, for <see cref="ReloadFailure"/>.</summary>
    protected abstract int LogMark();

    /// <summary>The server's log (the end of it), for failure messages.</summary>
    protected abstract string LogTail();

    public static TicketServer Create(ServerKind kind, string address, int port, Certificate certificate) => kind switch
    {
        ServerKind.Nginx => new NginxServer(address, port, certificate),
        ServerKind.HAProxy => new HAProxyServer(address, port, certificate),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Starts the server and waits until its workers run and it accepts connections; throws with its log if
    /// it exits first (a port taken meanwhile shows as "Address already in use") or does not start in time.</summary>
    public async Task StartAsync()
    {
        _process = Launch();
        await Poll.UntilAsync(
            () => Process.HasExited || (SaysStarted() && Workers().Count > 0 && Accepts()),
            StartLimit, $"{Kind} {Endpoint} to start", Diagnostics, TimeSpan.FromMilliseconds(20));
        if (Process.HasExited)
        {
            throw new InvalidOperationException($"{Kind} {Endpoint} exited with {Process.ExitCode} while starting.\n{Diagnostics()}");
        }
    }

    /// <summary>Sends the reload signal to the master and waits until the reload is complete (see <see cref="WaitReloadedAsync"/>).</summary>
    public async Task ReloadAsync()
    {
        (IReadOnlyList<ProcessInstance> before, int mark) = (Workers(), LogMark());
        Process.Signal(ReloadSignal);
        await WaitReloadedAsync(before, mark);
    }

    /// <summary>Runs <see cref="ReloadCommand"/> with /bin/sh and waits until the reload is complete.</summary>
    public async Task ReloadByCommandAsync()
    {
        (IReadOnlyList<ProcessInstance> before, int mark) = (Workers(), LogMark());
        ProcessResult command = await Tool.RunProgramAsync("/bin/sh", ["-c", ReloadCommand], TimeSpan.FromSeconds(10));
        if (!command.Succeeded)
        {
            throw new InvalidOperationException($"the reload command of {Kind} {Endpoint} failed: {ReloadCommand}\n{command.Describe()}");
        }

        await WaitReloadedAsync(before, mark);
    }

    /// <summary>Where the server stands now, for <see cref="WaitReloadedSinceAsync"/>: its workers and the end of its log.</summary>
    public (IReadOnlyList<ProcessInstance> Workers, int LogMark) Mark() => (Workers(), LogMark());

    /// <summary>Waits until a reload that something else asked for (dc_ticketkeys' -reload) after
    /// <paramref name="mark"/> is complete.</summary>
    public Task WaitReloadedSinceAsync((IReadOnlyList<ProcessInstance> Workers, int LogMark) mark) => WaitReloadedAsync(mark.Workers, mark.LogMark);

    /// <summary>
    /// A reload is complete when none of the workers from before it runs any more and new ones do: from then on
    /// every connection is served by a worker that has the new keys (an old worker stops accepting when told to
    /// quit, but may still take a connection until then). The master's own word is not enough: both nginx and
    /// HAProxy log the reload before the old workers are gone. A failed reload (a bad key file) leaves the old
    /// workers running and is reported at once, with the line that says why.
    /// </summary>
    private async Task WaitReloadedAsync(IReadOnlyList<ProcessInstance> before, int mark)
    {
        await Poll.UntilAsync(() =>
        {
            if (Process.HasExited)
            {
                throw new InvalidOperationException($"{Kind} {Endpoint} exited with {Process.ExitCode} while reloading.\n{Diagnostics()}");
            }

            if (ReloadFailure(mark) is { } failure)
            {
                throw new InvalidOperationException($"{Kind} {Endpoint} did not reload: {failure}\n{Diagnostics()}");
            }

            IReadOnlyList<ProcessInstance> now = Workers();
            return now.Count > 0 && !now.Any(before.Contains) && Accepts();
        }, ReloadLimit, $"{Kind} {Endpoint} to replace its workers {string.Join(' ', before.Select(w => w.Pid))}", Diagnostics, TimeSpan.FromMilliseconds(20));
    }

    /// <summary>The master's running children (zombies not counted).</summary>
    public IReadOnlyList<ProcessInstance> Workers() => [.. ProcessTree.Children(Process.Pid).Where(ProcessTree.IsRunning)];

    private bool Accepts() => Tool.CanConnect($"IP:{Address}:{Port.ToString(CultureInfo.InvariantCulture)}");

    public string Diagnostics()
    {
        string output = _process?.Output ?? "";
        return $"--- {Kind} {Endpoint} ({Directory}), workers {string.Join(' ', _process is null ? [] : Workers().Select(w => w.Pid))}\n"
            + $"--- its log (end):\n{LogTail()}\n--- its standard output and error:\n{output.TrimEnd()}";
    }

    protected static string Tail(string text, int lines = 30)
    {
        string[] all = text.TrimEnd().Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    /// <summary>Stops the server (SIGTERM to the master, which stops its workers), kills what is left after a bounded
    /// wait, and removes its folder.</summary>
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
                    await Poll.UntilAsync(() => _process.HasExited, StopLimit, $"{Kind} {Endpoint} to stop", interval: TimeSpan.FromMilliseconds(20));
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

            await _process.DisposeAsync();
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
    }
}
