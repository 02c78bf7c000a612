namespace Distcache.Hosting.Tests;

/// <summary>The -version line: where its parts come from and how the commit is shortened.</summary>
public sealed class ToolVersionTests
{
    [Theory]
    [InlineData("2.0.0+7151b1fe7e7d13b03e19250f44757815e86fc17d", "2.0.0", "7151b1f")]
    [InlineData("2.0.0+7151b1f", "2.0.0", "7151b1f")]
    [InlineData("2.0.0-beta.1+abcdef0123", "2.0.0-beta.1", "abcdef0")]
    [InlineData("2.0.0+local.build", "2.0.0", "local.build")]
    [InlineData("2.0.0", "2.0.0", "unknown")]
    [InlineData("2.0.0+", "2.0.0", "unknown")]
    public void The_commit_is_what_follows_the_plus_in_git_short_form(string informational, string version, string commit)
    {
        Assert.Equal((version, commit), ToolVersion.Split(informational));
    }

    [Fact]
    public void The_line_names_the_program_the_build_and_the_runtime_running_it()
    {
        // The test assembly is built by the same SDK and props as the tools, so it carries the same stamp.
        string line = ToolVersion.Describe("dc_x", typeof(ToolVersionTests).Assembly);

        Assert.Matches(@"^dc_x \d+\.\d+\.\d+\S* \(commit ([0-9a-f]{7}|unknown), \.NET \d+\.\d+\.\S+, [a-z]+-[a-z0-9]+\)$", line);
        Assert.Contains(System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription, line, StringComparison.Ordinal);
        Assert.EndsWith(System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier + ")", line, StringComparison.Ordinal);
    }
}
