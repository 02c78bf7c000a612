using System.Diagnostics;
using System.Text;

namespace Distcache.Apache.Tests.Support;

/// <summary>The outcome of a finished command: its exit code and its standard output and error, interleaved.</summary>
internal sealed record CommandResult(string CommandLine, int ExitCode, string Output)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>The last lines of the output, for error messages.</summary>
    public string Tail(int lines = 40)
    {
        string[] all = Output.TrimEnd().Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}

/// <summary>Runs build commands (make, apxs, openssl, the module build script) to completion, bounded in time.</summary>
internal static class Command
{
    public static async Task<CommandResult> RunAsync(string file, IEnumerable<string> args, TimeSpan timeout,
        string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (string arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["LC_ALL"] = "C";
        info.Environment["DEBIAN_FRONTEND"] = "noninteractive";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        string commandLine = file + " " + string.Join(' ', info.ArgumentList);
        var output = new StringBuilder();
        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (output) { output.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (output) { output.AppendLine(e.Data); } } };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return new CommandResult(commandLine, -1, $"cannot start {file}: {e.Message}");
        }

        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            lock (output)
            {
                return new CommandResult(commandLine, -1, output + $"\n(killed: did not finish within {timeout})");
            }
        }

        lock (output)
        {
            return new CommandResult(commandLine, process.ExitCode, output.ToString());
        }
    }

    /// <summary>Runs a command that must succeed; throws with its output otherwise.</summary>
    public static async Task<CommandResult> RunCheckedAsync(string what, string file, IEnumerable<string> args, TimeSpan timeout,
        string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        CommandResult result = await RunAsync(file, args, timeout, workingDirectory, environment);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"{what} failed (exit {result.ExitCode}): {result.CommandLine}\n{result.Tail()}");
        }

        return result;
    }
}
