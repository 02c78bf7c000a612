using System.Text;
using System.Xml.Linq;
using Distcache.Client;

namespace Distcache.Packaging.Tests;

/// <summary>The library packages: their metadata, and the client used from a local feed by a project outside the
/// repository, against a real dc_server.</summary>
[Collection(PackagesCollection.Name)]
public sealed class LibraryPackageTests(PackedPackages packages)
{
    private static readonly string[] Libraries =
        ["Distcache.Client", "Distcache.Networking", "Distcache.Protocol", "Distcache.Proxy", "Distcache.Server", "Distcache.Storage", "Distcache.Storage.Redis"];

    private static readonly string[] Tools = ["dc_client", "dc_server", "dc_snoop", "dc_test", "dc_ticketkeys"];

    [Fact]
    public void The_solution_packs_the_libraries_and_the_tools_and_nothing_internal()
    {
        // Distcache.Hosting (the tools' process plumbing, with a console logger) and Distcache.Tools stay inside the
        // tool packages; tests, benchmarks and fuzz targets are not packages.
        Assert.Equal([.. Libraries.Concat(Tools).Order(StringComparer.Ordinal)], packages.PackageIds());
    }

    [Theory]
    [MemberData(nameof(AllPackages))]
    public void Every_package_carries_license_readme_repository_and_symbols(string id)
    {
        var metadata = packages.Metadata(id);
        string Value(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value ?? "";

        var license = metadata.Elements().Single(e => e.Name.LocalName == "license");
        Assert.Equal("expression", (string?)license.Attribute("type"));
        Assert.Equal("MIT", license.Value);

        Assert.Equal("README.md", Value("readme"));
        var entries = PackedPackages.Entries(packages.PackagePath(id));
        Assert.Contains("README.md", entries);

        var repository = metadata.Elements().Single(e => e.Name.LocalName == "repository");
        Assert.Equal("git", (string?)repository.Attribute("type"));
        Assert.Equal(PackedPackages.RepositoryUrl, (string?)repository.Attribute("url"));
        // Source Link records the commit the package was built from.
        Assert.Matches("^[0-9a-f]{40}$", (string?)repository.Attribute("commit") ?? "");
        Assert.Equal(PackedPackages.RepositoryUrl, Value("projectUrl"));

        Assert.False(string.IsNullOrWhiteSpace(Value("description")));
        Assert.Equal("distcache for .NET contributors", Value("authors"));
        Assert.Contains("distcache", Value("tags").Split(' '));

        var symbols = PackedPackages.Entries(packages.PackagePath(id, symbols: true));
        Assert.Contains(symbols, e => e.EndsWith(".pdb", StringComparison.Ordinal));
    }

    [Fact]
    public void The_client_package_depends_on_its_packages_at_the_same_version()
    {
        var dependencies = packages.Metadata("Distcache.Client").Descendants().Where(e => e.Name.LocalName == "dependency")
            .ToDictionary(e => (string)e.Attribute("id")!, e => (string)e.Attribute("version")!, StringComparer.Ordinal);
        Assert.Equal(packages.Version, dependencies["Distcache.Protocol"]);
        Assert.Equal(packages.Version, dependencies["Distcache.Networking"]);
        Assert.DoesNotContain(dependencies.Keys, id => id.Contains("Hosting", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_project_outside_the_repository_uses_the_client_package_from_a_local_folder()
    {
        string project = Directory.CreateDirectory(Path.Combine(packages.Scratch, "consumer")).FullName;
        string restored = Path.Combine(packages.Scratch, "consumer-packages");

        // Only the local feed and the packages this machine already restored (the client's one outside dependency,
        // Microsoft.Extensions.Logging.Abstractions, is among them): the run needs no network, and the Distcache
        // packages can come from nowhere but the feed. Restoring into a folder of its own leaves the machine's
        // packages folder untouched.
        string machinePackages = await MachinePackagesFolderAsync();
        await File.WriteAllTextAsync(Path.Combine(project, "nuget.config"), new XDocument(
            new XElement("configuration",
                new XElement("packageSources",
                    new XElement("clear"),
                    new XElement("add", new XAttribute("key", "distcache"), new XAttribute("value", packages.Feed)),
                    new XElement("add", new XAttribute("key", "machine"), new XAttribute("value", machinePackages))))).ToString());
        await File.WriteAllTextAsync(Path.Combine(project, "consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Distcache.Client" Version="[{packages.Version}]" />
              </ItemGroup>
            </Project>
            """);
        await File.WriteAllTextAsync(Path.Combine(project, "Program.cs"), """
            using System.Text;
            using Distcache.Client;

            await using var cache = await DistcacheClient.ConnectAsync(args[0]);
            byte[] id = Encoding.ASCII.GetBytes(args[1]);
            byte[] data = Encoding.ASCII.GetBytes(args[2]);
            AddOutcome added = await cache.AddAsync(id, data, TimeSpan.FromMinutes(5));
            byte[]? back = await cache.GetAsync(id);
            Console.WriteLine($"add {added}, get {(back is null ? "miss" : Encoding.ASCII.GetString(back))}");
            return added == AddOutcome.Stored && back is not null && back.AsSpan().SequenceEqual(data) ? 0 : 1;
            """);

        await Dotnet.RunAsync(TimeSpan.FromMinutes(4), project, restored,
            "build", "-c", "Release", "-nologo", "-v", "q", "-nodeReuse:false", "-p:UseSharedCompilation=false");

        // The client came from the feed, at the packed version.
        Assert.True(File.Exists(Path.Combine(restored, "distcache.client", packages.Version, $"distcache.client.{packages.Version}.nupkg")));

        var (server, address) = await ServerProcess.StartTcpAsync();
        await using (server)
        {
            string consumer = Path.Combine(project, "bin", "Release", "net10.0", "consumer");
            var run = await Tool.RunProgramAsync(consumer, [address, "packaged-client-session", "session bytes from the package"], TimeSpan.FromSeconds(60));
            Assert.True(run.Succeeded, run.Describe());
            Assert.Equal("add Stored, get session bytes from the package", run.Stdout.Trim());

            // The server really holds it: read back with the repository's own client.
            await using var cache = await DistcacheClient.ConnectAsync(address);
            byte[]? stored = await cache.GetAsync(Encoding.ASCII.GetBytes("packaged-client-session"));
            Assert.Equal("session bytes from the package", stored is null ? "(miss)" : Encoding.ASCII.GetString(stored));
        }
    }

    public static TheoryData<string> AllPackages() => [.. Libraries.Concat(Tools)];

    private static async Task<string> MachinePackagesFolderAsync()
    {
        // "global-packages: /root/.nuget/packages/"
        var result = await Dotnet.RunAsync(TimeSpan.FromMinutes(1), Tool.RepositoryRoot, null, "nuget", "locals", "global-packages", "--list");
        string line = result.Stdout.Split('\n').Single(l => l.StartsWith("global-packages:", StringComparison.Ordinal));
        return line["global-packages:".Length..].Trim();
    }
}
