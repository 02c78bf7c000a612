namespace Distcache.Packaging.Tests;

/// <summary>scripts/publish.sh: its command line. A whole publish (five self-contained ReadyToRun executables per
/// runtime identifier, several minutes each on a 2-core machine) is too slow for the suite.</summary>
public sealed class PublishScriptTests
{
    private static string Script => Path.Combine(Tool.RepositoryRoot, "scripts", "publish.sh");

    [Theory]
    [InlineData("--frobnicate", "unknown option '--frobnicate' (options: --rid RID, --out DIR, --version X)")]
    [InlineData("--rid win-x64", "--rid 'win-x64' is not supported: use linux-x64, linux-arm64, linux-musl-x64 or linux-musl-arm64")]
    [InlineData("--version 2.x", "--version '2.x' is not a version such as 2.0.1 or 2.1.0-rc.1")]
    [InlineData("--out", "--out requires a value")]
    [InlineData("dist", "unexpected argument 'dist': give the output folder as --out dist")]
    public async Task A_bad_argument_is_refused_with_the_rule_before_anything_is_built(string args, string message)
    {
        // --out first, so that a check that let the arguments through would publish into the test's folder.
        using var dir = new TempDir();
        var run = await Tool.RunProgramAsync("bash", [Script, "--out", dir.File("out"), .. args.Split(' ')], TimeSpan.FromSeconds(30));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal($"publish.sh: {message}", run.Stderr.Trim());
        Assert.False(Directory.Exists(dir.File("out")) && Directory.EnumerateFileSystemEntries(dir.File("out")).Any());
    }

    [Fact]
    public async Task Help_prints_the_options()
    {
        var run = await Tool.RunProgramAsync("bash", [Script, "--help"], TimeSpan.FromSeconds(30));
        Assert.True(run.Succeeded, run.Describe());
        Assert.Contains("scripts/publish.sh [--rid RID]... [--out DIR] [--version X]", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("--version X", run.Stdout, StringComparison.Ordinal);
    }
}
