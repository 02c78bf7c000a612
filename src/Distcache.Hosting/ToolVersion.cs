using System.Reflection;
using System.Runtime.InteropServices;

namespace Distcache.Hosting;

/// <summary>
/// The line <c>-version</c> prints: <c>dc_server 2.0.0 (commit 7151b1f, .NET 10.0.0, linux-x64)</c>. The version and
/// commit come from the program's <see cref="AssemblyInformationalVersionAttribute"/>, which the .NET SDK stamps
/// as <c>VERSION+COMMIT</c> when it builds from a git checkout (and as plain <c>VERSION</c> otherwise); the runtime
/// and platform are the ones actually running it, which is what a bug report needs.
/// </summary>
public static class ToolVersion
{
    private const int ShortCommitLength = 7;

    /// <summary>The version line of the running program.</summary>
    /// <param name="programName">The name to print first, for example <c>dc_server</c>.</param>
    /// <param name="assembly">Whose version to print; the entry assembly when null.</param>
    /// <returns>The line, without a line break.</returns>
    public static string Describe(string programName, Assembly? assembly = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(programName);
        assembly ??= Assembly.GetEntryAssembly() ?? typeof(ToolVersion).Assembly;
        string? informational = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        var (version, commit) = Split(informational ?? assembly.GetName().Version?.ToString() ?? "unknown");
        return $"{programName} {version} (commit {commit}, {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.RuntimeIdentifier})";
    }

    /// <summary>Splits an informational version into the version and a short commit id (<c>unknown</c> when it has none).</summary>
    /// <param name="informationalVersion">For example <c>2.0.0+7151b1fe7e7d13b03e19250f44757815e86fc17d</c>.</param>
    /// <returns>The version and the commit, for example <c>2.0.0</c> and <c>7151b1f</c>.</returns>
    public static (string Version, string Commit) Split(string informationalVersion)
    {
        ArgumentNullException.ThrowIfNull(informationalVersion);
        int plus = informationalVersion.IndexOf('+', StringComparison.Ordinal);
        if (plus < 0 || plus == informationalVersion.Length - 1)
        {
            return (plus < 0 ? informationalVersion : informationalVersion[..plus], "unknown");
        }

        string commit = informationalVersion[(plus + 1)..];
        // git's own short form: enough to find the commit, short enough to read out.
        return (informationalVersion[..plus], commit.Length > ShortCommitLength && commit.All(char.IsAsciiHexDigit) ? commit[..ShortCommitLength] : commit);
    }
}
