using System.Text.RegularExpressions;

namespace Distcache.Packaging.Tests;

/// <summary>The manual pages under man/: they render cleanly, and each tool's page covers every option its -h
/// prints, so a new flag cannot be left out of its page.</summary>
public sealed partial class ManPageTests
{
    private static string ManDir => Path.Combine(Tool.RepositoryRoot, "man");

    [Theory]
    [InlineData("dc_server.1")]
    [InlineData("dc_client.1")]
    [InlineData("dc_test.1")]
    [InlineData("dc_snoop.1")]
    [InlineData("dc_ticketkeys.1")]
    [InlineData("libdistcache.3")]
    public async Task The_page_renders_without_a_warning(string page)
    {
        string path = Path.Combine(ManDir, page);
        Assert.True(File.Exists(path), $"{path} is missing");

        // -ww: every warning; -z: format, print nothing. groff-base is installed by scripts/test.sh.
        var check = await Tool.RunProgramAsync("groff", ["-man", "-Tutf8", "-ww", "-z", path], TimeSpan.FromSeconds(30));
        Assert.True(check.Succeeded && check.Stderr.Length == 0, check.Describe());

        // The header names the page and its section, as man(1) files it.
        string name = Path.GetFileNameWithoutExtension(page).ToUpperInvariant();
        string section = Path.GetExtension(page)[1..];
        Assert.Matches($"(?m)^\\.TH {Regex.Escape(name)} {section} ", await File.ReadAllTextAsync(path));
    }

    [Theory]
    [InlineData("dc_server")]
    [InlineData("dc_client")]
    [InlineData("dc_test")]
    [InlineData("dc_snoop")]
    [InlineData("dc_ticketkeys")]
    public async Task The_page_describes_every_option_of_the_usage(string tool)
    {
        var help = await Tool.RunAsync(TimeSpan.FromSeconds(60), tool, "-h");
        Assert.Equal(0, help.ExitCode);
        var options = UsageOption().Matches(help.Stdout).Select(m => m.Groups[1].Value).ToList();
        Assert.True(options.Count >= 3, $"no options found in the usage:\n{help.Stdout}");

        string text = await RenderAsync(Path.Combine(ManDir, tool + ".1"));
        var missing = options.Where(o => !Regex.IsMatch(text, $"(?<![\\w-])-{Regex.Escape(o)}(?![\\w-])")).ToList();
        Assert.True(missing.Count == 0, $"man/{tool}.1 does not mention: {string.Join(", ", missing.Select(o => "-" + o))}");

        // -<h|help|?>
        Assert.Contains("-h, -help, -?", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_library_page_covers_every_function_and_flag_of_the_header()
    {
        string header = await File.ReadAllTextAsync(Path.Combine(Tool.RepositoryRoot, "native", "include", "distcache", "dc_client.h"));
        var names = HeaderName().Matches(header).Select(m => m.Value).Distinct(StringComparer.Ordinal).ToList();
        Assert.Contains("DC_CTX_new", names);
        Assert.Contains("DC_CTX_FLAG_PERSISTENT", names);

        string text = await RenderAsync(Path.Combine(ManDir, "libdistcache.3"));
        var missing = names.Where(n => !Regex.IsMatch(text, $"\\b{n}\\b")).ToList();
        Assert.True(missing.Count == 0, $"man/libdistcache.3 does not mention: {string.Join(", ", missing)}");
    }

    /// <summary>The page as plain ASCII text, with no bold or underlining and no hyphenation.</summary>
    private static async Task<string> RenderAsync(string path)
    {
        var render = await Tool.RunProgramAsync("groff", ["-man", "-Tascii", "-P-cbou", "-rHY=0", path], TimeSpan.FromSeconds(30));
        Assert.True(render.Succeeded, render.Describe());
        return render.Stdout;
    }

    // An option line of the usage: "  -listen <address>   (...)" or "  -daemon   (...)"; not the "-<h|help|?>" line.
    [GeneratedRegex(@"(?m)^  -([A-Za-z][\w-]*)\s")]
    private static partial Regex UsageOption();

    // The functions and flags of dc_client.h.
    [GeneratedRegex(@"\bDC_CTX_(?:FLAG_)?[A-Za-z_]+\b(?=\s*[(\s])")]
    private static partial Regex HeaderName();
}
