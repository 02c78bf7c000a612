using System.Globalization;
using System.IO.Compression;
using System.Xml.Linq;

namespace Distcache.Packaging.Tests;

/// <summary>
/// Every package of the solution, packed once (<c>dotnet pack Distcache.slnx</c> from the build the tests run on)
/// into a temporary folder, with a version of its own so that nothing the machine has cached under the same name
/// and version can stand in for it.
/// </summary>
public sealed class PackedPackages : IAsyncLifetime
{
    /// <summary>The repository address given to the pack (the test's; a release takes it from the git remote).</summary>
    public const string RepositoryUrl = "https://example.invalid/distcache-dotnet";

    private readonly TempDir _dir = new();

    /// <summary>The folder holding the .nupkg and .snupkg files: a local NuGet feed.</summary>
    public string Feed => Path.Combine(_dir.Path, "feed");

    /// <summary>A scratch folder for the tests, removed with the packages.</summary>
    public string Scratch => _dir.Path;

    /// <summary>The packages' version.</summary>
    public string Version { get; } = "2.0.0-packtest." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture) + "." + Environment.ProcessId;

    /// <summary>Packs the solution.</summary>
    /// <returns>A task that completes once every package is written.</returns>
    public async ValueTask InitializeAsync()
    {
        await Dotnet.RunAsync(TimeSpan.FromMinutes(4), Tool.RepositoryRoot, null,
            "pack", "Distcache.slnx", "-c", Tool.Configuration, "--no-build", "-nologo", "-v", "q", "-nodeReuse:false",
            "-o", Feed, $"-p:Version={Version}", $"-p:RepositoryUrl={RepositoryUrl}",
            // The intermediate .nuspec files go with the packages instead of piling up in each project's obj/.
            $"-p:NuspecOutputPath={Path.Combine(_dir.Path, "nuspec")}/");
    }

    /// <summary>The path of a package in the feed.</summary>
    /// <param name="id">The package id.</param>
    /// <param name="symbols">The symbol package (.snupkg) instead.</param>
    /// <returns>Its path (which may not exist).</returns>
    public string PackagePath(string id, bool symbols = false) => Path.Combine(Feed, $"{id}.{Version}.{(symbols ? "snupkg" : "nupkg")}");

    /// <summary>The ids of every package in the feed.</summary>
    /// <returns>The ids.</returns>
    public IReadOnlyList<string> PackageIds() =>
        [.. Directory.GetFiles(Feed, "*.nupkg").Select(p => Path.GetFileName(p)[..^$".{Version}.nupkg".Length]).Order(StringComparer.Ordinal)];

    /// <summary>The metadata element of a package's .nuspec.</summary>
    /// <param name="id">The package id.</param>
    /// <returns>The element.</returns>
    public XElement Metadata(string id)
    {
        using var zip = ZipFile.OpenRead(PackagePath(id));
        var entry = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal) && !e.FullName.Contains('/', StringComparison.Ordinal));
        using var stream = entry.Open();
        var nuspec = XDocument.Load(stream);
        return nuspec.Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    /// <summary>The names of the files in a package.</summary>
    /// <param name="path">The package file.</param>
    /// <returns>The entries' full names.</returns>
    public static IReadOnlyList<string> Entries(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        return [.. zip.Entries.Select(e => e.FullName)];
    }

    /// <summary>Removes the packages and the scratch folder.</summary>
    /// <returns>A completed task.</returns>
    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>The tests that share one packing of the solution.</summary>
[CollectionDefinition(Name)]
public sealed class PackagesCollection : ICollectionFixture<PackedPackages>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "packages";
}
