using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Distcache.Hosting;

/// <summary>
/// <c>-daemon</c>: run in the background, detached from the terminal, with the shell getting its prompt back only
/// once start-up has succeeded - or an error message and a non-zero exit status when it has not.
/// </summary>
/// <remarks>
/// <para>
/// 1.5.1 forked after start-up. .NET cannot fork a running runtime, so the program is started a second time
/// instead. The <em>parent</em> (the command the user typed) calls <see cref="RunDetached(IReadOnlyList{string})"/>,
/// which starts the same executable with the same arguments and waits. The <em>child</em>
/// (<see cref="IsDaemonChild"/>) calls <see cref="StartSession"/> first, then starts up as in the foreground
/// (binding sockets, writing the pid file, ...), then calls <see cref="NotifyReady()"/>; from then on it runs with
/// its standard streams on <c>/dev/null</c>. Whatever the child writes before that is relayed by the parent.
/// </para>
/// <para>
/// The child keeps the working directory it was started in, unlike a classic daemon's <c>chdir("/")</c>:
/// relative paths on the command line (<c>-pidfile run/dc.pid</c>, <c>-listen UNIX:dc.sock</c>) then mean the
/// same in the foreground and as a daemon, including when they are used again at exit or on a reload. The cost
/// is that the daemon keeps that directory busy; start it from <c>/</c> or use absolute paths where that matters.
/// The file mode creation mask is inherited unchanged, as with 1.5.1.
/// </para>
/// </remarks>
public static class Daemon
{
    /// <summary>
    /// The environment variable that marks the child and carries the one-time text it echoes when ready. It is
    /// removed from the child's environment at start, so programs the daemon runs do not inherit it.
    /// </summary>
    public const string ChildVariable = "DISTCACHE_DAEMON_READY_TOKEN";

    private const string TokenPrefix = "distcache-daemon-ready-";
    private static readonly TimeSpan ExitGrace = TimeSpan.FromSeconds(5);
    private static readonly string? ReadyToken = TakeReadyToken();
    private static int s_sessionStarted;
    private static int s_notified;

    /// <summary>How long <see cref="RunDetached(IReadOnlyList{string})"/> waits for the child to become ready: 30 seconds.</summary>
    public static TimeSpan DefaultStartupTimeout { get; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// True in the process <see cref="RunDetached(IReadOnlyList{string})"/> started: it must call
    /// <see cref="StartSession"/> and, once started, <see cref="NotifyReady()"/> instead of detaching again.
    /// </summary>
    public static bool IsDaemonChild => ReadyToken is not null;

    /// <summary>Starts the daemon child and waits up to <see cref="DefaultStartupTimeout"/> for it to become ready.</summary>
    /// <param name="args">The program's arguments, passed to the child unchanged (so it sees <c>-daemon</c> too).</param>
    /// <returns>The exit code for the parent; see <see cref="RunDetached(IReadOnlyList{string}, TimeSpan)"/>.</returns>
    /// <exception cref="InvalidOperationException">Called in the daemon child itself.</exception>
    public static int RunDetached(IReadOnlyList<string> args) => RunDetached(args, DefaultStartupTimeout);

    /// <summary>
    /// Starts the running executable again with <paramref name="args"/>, marked as the daemon child, with stdin
    /// at end-of-file and stdout/stderr piped here, and waits until it calls <see cref="NotifyReady()"/>. The
    /// child's output meanwhile is copied to this process's stdout and stderr.
    /// </summary>
    /// <param name="args">The program's arguments, passed to the child unchanged (so it sees <c>-daemon</c> too).</param>
    /// <param name="startupTimeout">How long start-up may take.</param>
    /// <returns>
    /// 0 once the child is ready (it keeps running); otherwise non-zero, after an <c>Error, ...</c> line on stderr
    /// unless the child already explained itself there: the child's own exit status when it exited during
    /// start-up (1 if that was 0), or 1 when it could not be started, did not become ready in time, or this
    /// process got SIGINT, SIGTERM or SIGHUP while waiting. In the last two cases the child is killed, so no
    /// half-started daemon is left behind.
    /// </returns>
    /// <exception cref="InvalidOperationException">Called in the daemon child itself.</exception>
    /// <exception cref="HostingException">The path of the running executable is unknown.</exception>
    public static int RunDetached(IReadOnlyList<string> args, TimeSpan startupTimeout)
    {
        ArgumentNullException.ThrowIfNull(args);
        // A console program has no synchronization context, so blocking here cannot deadlock.
        return RunDetachedAsync(args, startupTimeout, Console.Out, Console.Error).GetAwaiter().GetResult();
    }

    /// <summary>
    /// In the daemon child, leaves the parent's session and process group (<c>setsid</c>), so the child has no
    /// controlling terminal and a hang-up or Ctrl-C at the terminal no longer reaches it. Call it first thing.
    /// Calling it again does nothing.
    /// </summary>
    /// <exception cref="InvalidOperationException">Not the daemon child (<see cref="IsDaemonChild"/> is false).</exception>
    /// <exception cref="HostingException"><c>setsid</c> failed; the message carries the system's error text.</exception>
    public static void StartSession()
    {
        if (!IsDaemonChild)
        {
            throw new InvalidOperationException("StartSession is only for the daemon child; check Daemon.IsDaemonChild.");
        }

        if (Interlocked.Exchange(ref s_sessionStarted, 1) != 0)
        {
            return;
        }

        if (NativeMethods.SetSid() < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new HostingException($"cannot detach from the terminal (setsid): {Networking.NativeMethods.ErrorText(errno)}", errno);
        }
    }

    /// <summary>
    /// In the daemon child, reports successful start-up: flushes the console, tells the waiting parent (which
    /// then exits 0), and puts stdin, stdout and stderr on <c>/dev/null</c>, including the console's own
    /// duplicates of them, so the parent's pipes close and later console output is discarded. Does nothing in a
    /// process that is not the daemon child, and nothing the second time, so a Main can call it unconditionally.
    /// </summary>
    /// <exception cref="HostingException">The parent could not be told (it is gone) or the streams could not be redirected.</exception>
    public static void NotifyReady()
    {
        NotifyDaemonParent();
    }

    /// <summary>
    /// Tells everyone waiting for the tool that it is ready: the <c>-daemon</c> parent (<see cref="NotifyReady()"/>)
    /// and systemd (<see cref="Systemd.NotifyReady"/>, READY=1), logging a warning if systemd could not be told.
    /// </summary>
    /// <param name="log">Where the warning goes.</param>
    /// <exception cref="HostingException">The daemon parent could not be told, or the streams could not be redirected.</exception>
    public static void NotifyReady(ToolLog log)
    {
        ArgumentNullException.ThrowIfNull(log);
        NotifyDaemonParent();
        if (Systemd.NotifyReady() is { } problem)
        {
            log.Warning(problem);
        }
    }

    private static void NotifyDaemonParent()
    {
        if (ReadyToken is null || Interlocked.Exchange(ref s_notified, 1) != 0)
        {
            return;
        }

        var standardPipes = DescriptorTargets([0, 1, 2]).Values.Where(target => target.StartsWith("pipe:", StringComparison.Ordinal)).ToHashSet(StringComparer.Ordinal);
        Console.Out.Flush();
        Console.Error.Flush();
        var line = Encoding.UTF8.GetBytes(ReadyToken + "\n");
        try
        {
            // Straight to the descriptors: the program may have pointed Console.Out elsewhere. Both streams carry
            // the marker so the parent knows it has relayed everything written to either before it.
            foreach (var fd in new[] { 1, 2 })
            {
                using var stream = new FileStream(new SafeFileHandle(fd, ownsHandle: false), FileAccess.Write, bufferSize: 0);
                stream.Write(line);
            }
        }
        catch (IOException e)
        {
            throw new HostingException("cannot report start-up to the parent process: " + e.Message, e);
        }

        // .NET's console streams write through duplicates of 1 and 2, which would keep the parent's pipes open;
        // replacing every descriptor open on those pipes (rather than closing it) keeps their owners valid.
        var descriptors = new List<int> { 0, 1, 2 };
        descriptors.AddRange(DescriptorTargets(null).Where(entry => entry.Key > 2 && standardPipes.Contains(entry.Value)).Select(entry => entry.Key));
        if (NativeMethods.RedirectToDevNull(descriptors) is { } problem)
        {
            throw new HostingException(problem);
        }
    }

    /// <summary>The command that starts this program again: the same executable, host arguments, then <paramref name="args"/>.</summary>
    internal static (string FileName, IReadOnlyList<string> Arguments) GetRelaunchCommand(IReadOnlyList<string> args) =>
        BuildRelaunchCommand(args, Environment.ProcessPath, Environment.GetCommandLineArgs(), ReadNativeCommandLine());

    /// <summary>
    /// Builds the relaunch command. <paramref name="managedArgs"/> is <see cref="Environment.GetCommandLineArgs"/>
    /// (entry assembly, then the program's arguments); <paramref name="nativeArgv"/> is the process's real argv,
    /// when known. Whatever stands between the executable and the program's arguments in the real argv is kept:
    /// nothing for an apphost, <c>x.dll</c> for <c>dotnet x.dll</c>, <c>exec --runtimeconfig r x.dll</c> for a
    /// <c>dotnet exec</c> start.
    /// </summary>
    internal static (string FileName, IReadOnlyList<string> Arguments) BuildRelaunchCommand(
        IReadOnlyList<string> args, string? processPath, IReadOnlyList<string> managedArgs, IReadOnlyList<string>? nativeArgv)
    {
        if (string.IsNullOrEmpty(processPath))
        {
            throw new HostingException("cannot start the daemon: the path of the running executable is unknown");
        }

        var programArgCount = Math.Max(0, managedArgs.Count - 1);
        IEnumerable<string> hostArgs;
        if (nativeArgv is not null && nativeArgv.Count > programArgCount
            && nativeArgv.Skip(nativeArgv.Count - programArgCount).SequenceEqual(managedArgs.Skip(1), StringComparer.Ordinal))
        {
            hostArgs = nativeArgv.Skip(1).Take(nativeArgv.Count - 1 - programArgCount);
        }
        else if (string.Equals(Path.GetFileNameWithoutExtension(processPath), "dotnet", StringComparison.Ordinal) && managedArgs.Count > 0)
        {
            // Without a usable argv the muxer at least needs the entry assembly.
            hostArgs = [Path.GetFullPath(managedArgs[0])];
        }
        else
        {
            hostArgs = [];
        }

        return (processPath, [.. hostArgs, .. args]);
    }

    internal static async Task<int> RunDetachedAsync(IReadOnlyList<string> args, TimeSpan startupTimeout, TextWriter output, TextWriter error)
    {
        if (IsDaemonChild)
        {
            throw new InvalidOperationException("RunDetached was called in the daemon child; call StartSession and NotifyReady there.");
        }

        var (fileName, arguments) = GetRelaunchCommand(args);
        var token = TokenPrefix + Guid.NewGuid().ToString("N");
        var startInfo = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        startInfo.Environment[ChildVariable] = token;

        Process child;
        try
        {
            child = Process.Start(startInfo) ?? throw new Win32Exception("no process was started");
        }
        catch (Win32Exception e)
        {
            await error.WriteLineAsync($"Error, cannot start the daemon process {fileName}: {e.Message}").ConfigureAwait(false);
            return 1;
        }

        using (child)
        using (var abort = new CancellationTokenSource())
        {
            // The child leaves this session at once, so an interrupt at the terminal would only reach this
            // process: pass the decision on by stopping the child rather than leaving it to finish starting.
            using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => Abort(context, abort));
            using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => Abort(context, abort));
            using var hangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context => Abort(context, abort));

            // The child's end of stdin must see end-of-file, not wait on a terminal it no longer controls.
            child.StandardInput.Close();
            var errorRelay = new StreamRelay(child.StandardError, error, token);
            var outputRelay = new StreamRelay(child.StandardOutput, output, token);
            var relays = Task.WhenAll(outputRelay.RunAsync(abort.Token), errorRelay.RunAsync(abort.Token));
            var exited = child.WaitForExitAsync(abort.Token);
            var timedOut = Task.Delay(startupTimeout, abort.Token);
            await Task.WhenAny(relays, exited, timedOut).ConfigureAwait(false);

            if (relays.IsCompleted && outputRelay.SawToken && errorRelay.SawToken)
            {
                return 0;
            }

            if (abort.IsCancellationRequested || timedOut.IsCompleted)
            {
                Kill(child);
                await error.WriteLineAsync(abort.IsCancellationRequested
                    ? "Error, interrupted while the daemon was starting; it has been stopped"
                    : $"Error, the daemon did not finish starting within {startupTimeout.TotalSeconds:0.###} seconds; it has been stopped").ConfigureAwait(false);
                return 1;
            }

            // The child exited or closed its output without reporting ready. Let the relays pass on its last
            // words (its pipes close when it exits), then report its status.
            if (!await CompletesWithinAsync(exited, ExitGrace).ConfigureAwait(false))
            {
                Kill(child);
                await error.WriteLineAsync("Error, the daemon closed its output during start-up without reporting ready; it has been stopped").ConfigureAwait(false);
                return 1;
            }

            await CompletesWithinAsync(relays, ExitGrace).ConfigureAwait(false);
            if (outputRelay.SawToken && errorRelay.SawToken)
            {
                // It did report ready and then stopped: start-up itself succeeded, as with a fork-based daemon.
                return 0;
            }

            var status = child.ExitCode;
            if (!errorRelay.WroteAnything)
            {
                await error.WriteLineAsync($"Error, the daemon exited during start-up (exit status {status})").ConfigureAwait(false);
            }

            return status == 0 ? 1 : status;
        }
    }

    private static void Abort(PosixSignalContext context, CancellationTokenSource abort)
    {
        context.Cancel = true;
        try
        {
            abort.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The wait is over already; nothing left to interrupt.
        }
    }

    private static async Task<bool> CompletesWithinAsync(Task task, TimeSpan limit)
    {
        var first = await Task.WhenAny(task, Task.Delay(limit)).ConfigureAwait(false);
        return first == task;
    }

    private static void Kill(Process child)
    {
        try
        {
            child.Kill(entireProcessTree: true);
            // Return only once it is gone, so the caller's exit status never races a still-running daemon.
            child.WaitForExit(ExitGrace);
        }
        catch (Exception e) when (e is InvalidOperationException or Win32Exception or NotSupportedException)
        {
            // It exited in the meantime, which is the point of killing it.
        }
    }

    private static string? TakeReadyToken()
    {
        var token = Environment.GetEnvironmentVariable(ChildVariable);
        if (string.IsNullOrEmpty(token))
        {
            return null;
        }

        // Anything the daemon starts must not take itself for a daemon child.
        Environment.SetEnvironmentVariable(ChildVariable, null);
        return token;
    }

    private static string[]? ReadNativeCommandLine()
    {
        try
        {
            var text = File.ReadAllText("/proc/self/cmdline");
            return text.TrimEnd('\0').Split('\0');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>What each open descriptor (or each of <paramref name="only"/>) refers to, from <c>/proc/self/fd</c>.</summary>
    private static Dictionary<int, string> DescriptorTargets(int[]? only)
    {
        var targets = new Dictionary<int, string>();
        try
        {
            var candidates = only?.Select(fd => fd.ToString(System.Globalization.CultureInfo.InvariantCulture))
                ?? Directory.EnumerateFileSystemEntries("/proc/self/fd").Select(Path.GetFileName).OfType<string>().ToList();
            foreach (var name in candidates)
            {
                if (!int.TryParse(name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var fd))
                {
                    continue;
                }

                try
                {
                    if (new FileInfo("/proc/self/fd/" + name).LinkTarget is { } target)
                    {
                        targets[fd] = target;
                    }
                }
                catch (IOException)
                {
                    // Closed between listing and reading: nothing to redirect.
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Without /proc only 0, 1 and 2 are redirected; the console's duplicates then keep the pipes open
            // until exit, which costs the parent nothing since it stops reading at the marker.
        }

        return targets;
    }

    /// <summary>Copies a child's stream line by line until the ready marker or end-of-file.</summary>
    private sealed class StreamRelay(StreamReader reader, TextWriter writer, string token)
    {
        /// <summary>Whether the marker arrived (everything before it has been copied).</summary>
        public bool SawToken { get; private set; }

        /// <summary>Whether any text was copied.</summary>
        public bool WroteAnything { get; private set; }

        public async Task RunAsync(CancellationToken cancellation)
        {
            try
            {
                while (await reader.ReadLineAsync(cancellation).ConfigureAwait(false) is { } line)
                {
                    var at = line.IndexOf(token, StringComparison.Ordinal);
                    if (at >= 0)
                    {
                        // Text the child left without a newline ends up in front of the marker.
                        if (at > 0)
                        {
                            await writer.WriteAsync(line[..at]).ConfigureAwait(false);
                            WroteAnything = true;
                        }

                        await writer.FlushAsync(cancellation).ConfigureAwait(false);
                        SawToken = true;
                        return;
                    }

                    await writer.WriteLineAsync(line).ConfigureAwait(false);
                    await writer.FlushAsync(cancellation).ConfigureAwait(false);
                    WroteAnything = true;
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
            {
                // Interrupted or the pipe broke: the caller decides from the child's state what that means.
            }
        }
    }
}
