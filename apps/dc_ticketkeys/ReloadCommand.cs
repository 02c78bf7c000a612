using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// The operator's command that makes the servers read their key files again (<c>systemctl reload nginx</c>,
/// <c>kill -HUP $(cat /run/nginx.pid)</c>), run by <c>/bin/sh -c</c> after the files changed, bounded in time.
/// </summary>
/// <remarks>
/// The command's output goes to a temporary file, not to a pipe: a command that leaves a process behind (an init
/// script starting a daemon) would hold a pipe open after it exits, and waiting for the pipe's end would wait for
/// that process. The file is read once the command has exited, for the last line it printed.
/// </remarks>
internal sealed class ReloadCommand
{
    private readonly TimeSpan _limit;

    public ReloadCommand(string command, TimeSpan limit)
    {
        Command = command;
        _limit = limit;
    }

    public string Command { get; }

    /// <summary>Runs the command.</summary>
    /// <returns>Null when it exited with status 0, otherwise what went wrong (its status and the last line it printed).</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; the command was killed.</exception>
    public async Task<string?> RunAsync(CancellationToken cancellationToken)
    {
        string output;
        try
        {
            output = Path.GetTempFileName();
        }
        catch (IOException e)
        {
            return $"cannot be run: no temporary file for its output ({e.Message})";
        }

        try
        {
            // "$0" is the output file: the shell points its output there, then runs the operator's command.
            var start = new ProcessStartInfo("/bin/sh")
            {
                ArgumentList = { "-c", "exec >\"$0\" 2>&1\n" + Command, output },
                RedirectStandardInput = true,
                UseShellExecute = false,
            };

            Process process;
            try
            {
                process = Process.Start(start) ?? throw new Win32Exception("no process was started");
            }
            catch (Win32Exception e)
            {
                return $"cannot be run: /bin/sh: {e.Message}";
            }

            using (process)
            {
                process.StandardInput.Close();
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(_limit);
                try
                {
                    await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
                    cancellationToken.ThrowIfCancellationRequested();
                    return string.Create(CultureInfo.InvariantCulture, $"was still running after {_limit.TotalSeconds:0} s, and was killed");
                }

                if (process.ExitCode == 0)
                {
                    return null;
                }

                string said = LastLine(output);
                return string.Create(CultureInfo.InvariantCulture, $"exited with status {process.ExitCode}{(said.Length > 0 ? ": " + said : string.Empty)}");
            }
        }
        finally
        {
            File.Delete(output);
        }
    }

    // The last line it printed, shortened: enough to say why, without flooding the log.
    private static string LastLine(string path)
    {
        string text;
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            file.Seek(Math.Max(0, file.Length - 4096), SeekOrigin.Begin);
            text = new StreamReader(file).ReadToEnd();
        }
        catch (IOException)
        {
            return string.Empty;
        }

        string line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? string.Empty;
        return line.Length > 300 ? line[..300] + "..." : line;
    }
}
