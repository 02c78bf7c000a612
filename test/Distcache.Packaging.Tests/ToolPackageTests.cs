using System.Xml.Linq;

namespace Distcache.Packaging.Tests;

/// <summary>The tools as .NET tool packages, one per command, installed as a user installs them.</summary>
[Collection(PackagesCollection.Name)]
public sealed class ToolPackageTests(PackedPackages packages)
{
    [Theory]
    [InlineData("dc_server")]
    [InlineData("dc_client")]
    [InlineData("dc_test")]
    [InlineData("dc_snoop")]
    [InlineData("dc_ticketkeys")]
    public void Each_tool_is_a_dotnet_tool_package_named_after_its_command(string tool)
    {
        var metadata = packages.Metadata(tool);
        Assert.Contains(metadata.Descendants(), e => e.Name.LocalName == "packageType" && (string?)e.Attribute("name") == "DotnetTool");
        var entries = PackedPackages.Entries(packages.PackagePath(tool));
        Assert.Contains($"tools/net10.0/any/{tool}.dll", entries);

        using var zip = System.IO.Compression.ZipFile.OpenRead(packages.PackagePath(tool));
        using var settings = zip.GetEntry("tools/net10.0/any/DotnetToolSettings.xml")!.Open();
        var command = XDocument.Load(settings).Descendants().Single(e => e.Name.LocalName == "Command");
        Assert.Equal(tool, (string?)command.Attribute("Name"));
        Assert.Equal($"{tool}.dll", (string?)command.Attribute("EntryPoint"));
    }

    [Fact]
    public async Task Dc_server_installs_with_dotnet_tool_install_and_runs()
    {
        string toolPath = Path.Combine(packages.Scratch, "tools");
        string work = Directory.CreateDirectory(Path.Combine(packages.Scratch, "tool-install")).FullName;
        // The feed given with --add-source is the only source: the machine's configured sources are cleared.
        string config = Path.Combine(work, "nuget.config");
        await File.WriteAllTextAsync(config, new XDocument(new XElement("configuration", new XElement("packageSources", new XElement("clear")))).ToString());

        await Dotnet.RunAsync(TimeSpan.FromMinutes(3), work, Path.Combine(packages.Scratch, "tool-packages"),
            "tool", "install", "dc_server", "--tool-path", toolPath, "--add-source", packages.Feed, "--configfile", config,
            "--version", packages.Version);

        var help = await Tool.RunProgramAsync(Path.Combine(toolPath, "dc_server"), ["-h"], TimeSpan.FromSeconds(60));
        Assert.True(help.Succeeded, help.Describe());
        Assert.StartsWith("Usage: dc_server [options]", help.Stdout, StringComparison.Ordinal);
        Assert.Contains("-listen <address>", help.Stdout, StringComparison.Ordinal);
    }
}
