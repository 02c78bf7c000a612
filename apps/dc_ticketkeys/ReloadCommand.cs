using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;

namespace Distcache.Apps.TicketKeys;

/// <summary>
/// The operator's command that makes the servers read their key files again (<c>systemctl reload nginx</c>,
/// <c>kill -HUP $(cat /run/nginx.pid)</c>), run by <c>/bin/sh -c</c> after the files changed, bounded in time.
/// </summary>
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
    /// <returns>Null when it exited with status 0, otherwise what went wrong (its status and the end of its output).</returns>
    public async Task<string?> RunAsync(CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("/bin/sh")
        {
            ArgumentList = { "-c", Command },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
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
            return $"cannot run /bin/sh: {e.Message}";
        }

        using (process)
        {
            process.StandardInput.Close();
            Task<string> output = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
            Task<string> error = process.StandardError.ReadToEndAsync(CancellationToken.None);
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
                return cancellationToken.IsCancellationRequested
                    ? "stopped by the shutdown"
                    : string.Create(CultureInfo.InvariantCulture, $"still running after {_limit.TotalSeconds:0} s, killed");
            }

            string said = Last((await error.ConfigureAwait(false)) + (await output.ConfigureAwait(false)));
            return process.ExitCode == 0
                ? null
                : string.Create(CultureInfo.InvariantCulture, $"exited with status {process.ExitCode}{(said.Length > 0 ? ": " + said : string.Empty)}");
        }
    }

    // The last line it printed, shortened: enough to say why, without flooding the log.
    private static string Last(string text)
    {
        string line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? string.Empty;
        return line.Length > 300 ? line[..300] + "..." : line;
    }
}
