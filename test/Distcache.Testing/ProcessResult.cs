namespace Distcache.Testing;

/// <summary>How a program run to completion ended and what it printed (see <see cref="Tool.RunProgramAsync"/>).</summary>
/// <param name="CommandLine">The program and its arguments.</param>
/// <param name="ExitCode">Its exit code; -1 if it could not start or was killed for running too long.</param>
/// <param name="Stdout">Its standard output.</param>
/// <param name="Stderr">Its standard error, with a last line saying why when it could not start or was killed.</param>
/// <param name="Output">Both, interleaved in the order their lines arrived.</param>
/// <param name="Elapsed">How long it ran.</param>
public sealed record ProcessResult(string CommandLine, int ExitCode, string Stdout, string Stderr, string Output, TimeSpan Elapsed)
{
    /// <summary>Whether it exited with 0.</summary>
    public bool Succeeded => ExitCode == 0;

    /// <summary>The last lines of <see cref="Output"/>, for failure messages.</summary>
    /// <param name="lines">How many.</param>
    /// <returns>Those lines.</returns>
    public string Tail(int lines = 40)
    {
        string[] all = Output.TrimEnd().Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    /// <summary>Everything about the run, for failure messages.</summary>
    /// <returns>The exit code, the time and both outputs.</returns>
    public string Describe() =>
        $"exit code {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- standard output ---\n{Stdout.TrimEnd()}\n--- standard error ---\n{Stderr.TrimEnd()}";
}
