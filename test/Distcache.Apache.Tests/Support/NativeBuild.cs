using System.Text;

namespace Distcache.Apache.Tests.Support;

/// <summary>
/// Builds what the Apache tests load, once per test run: the C library (<c>make -C native</c>, installed into a
/// temporary prefix with <c>make -C native install</c>), Apache's own mod_socache_dc from Debian's apache2 source
/// package, unchanged (native/apache/build-debian-module.sh), and this repository's mod_socache_distcache.
/// Nothing throws here: each failure is kept, and the Apache fixtures that need the failed part throw it, so every
/// test says what is missing instead of one obscure fixture error.
/// </summary>
public sealed class NativeBuild : IAsyncLifetime
{
    /// <summary>The Debian packages the tests need (apache2 with mod_ssl, apxs, dpkg-source for apt-get source, openssl).</summary>
    private static readonly string[] Packages = ["apache2", "apache2-dev", "dpkg-dev", "openssl", "make", "gcc"];

    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(5);

    private readonly string _work = Directory.CreateTempSubdirectory("dc-apache-build-").FullName;
    private readonly StringBuilder _log = new();

    public static string NativeDirectory => Path.Combine(Tool.RepositoryRoot, "native");

    /// <summary>Where <c>make -C native install</c> put lib/ and include/distcache/; the modules link against it.</summary>
    public string Prefix => Path.Combine(_work, "prefix");

    /// <summary>Why the library (or a tool the tests need) is not usable; null when it is.</summary>
    public string? LibraryError { get; private set; }

    /// <summary>Debian's mod_socache_dc.so built against <see cref="Prefix"/>, or null (see <see cref="DebianModuleError"/>).</summary>
    public string? DebianModule { get; private set; }

    public string? DebianModuleError { get; private set; }

    /// <summary>The apache2 source package version the Debian module was built from.</summary>
    public string DebianSourceVersion { get; private set; } = "unknown";

    /// <summary>This repository's mod_socache_distcache.so, or null (see <see cref="OwnModuleError"/>).</summary>
    public string? OwnModule { get; private set; }

    public string? OwnModuleError { get; private set; }

    /// <summary>What was built and how; the fixtures print it.</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public async ValueTask InitializeAsync()
    {
        LibraryError = await EnsurePrerequisitesAsync() ?? await BuildLibraryAsync();
        if (LibraryError is not null)
        {
            DebianModuleError = OwnModuleError = "the library is not available: " + LibraryError;
            return;
        }

        ProcessResult version = await Tool.RunProgramAsync(ApacheServer.Binary, ["-v"], TimeSpan.FromSeconds(30));
        Note($"installed Apache: {version.Output.Split('\n')[0].Replace("Server version:", "", StringComparison.Ordinal).Trim()}");
        await BuildDebianModuleAsync();
        await BuildOwnModuleAsync();
    }

    public ValueTask DisposeAsync()
    {
        try
        {
            Directory.Delete(_work, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return ValueTask.CompletedTask;
    }

    private void Note(string line)
    {
        lock (_log)
        {
            _log.AppendLine(line);
        }
    }

    /// <summary>Checks that the Debian packages the tests need are installed (scripts/test.sh installs them).</summary>
    private static async Task<string?> EnsurePrerequisitesAsync()
    {
        if (!File.Exists("/usr/bin/python3"))
        {
            return "/usr/bin/python3 is missing (the TLS client is a Python 3 script); scripts/test.sh installs it";
        }

        var missing = new List<string>();
        foreach (string package in Packages)
        {
            ProcessResult status = await Tool.RunProgramAsync("dpkg-query", ["-W", "-f=${Status}", package], TimeSpan.FromSeconds(30));
            if (!status.Output.Contains("install ok installed", StringComparison.Ordinal))
            {
                missing.Add(package);
            }
        }

        return missing.Count == 0
            ? null
            : $"missing Debian packages {string.Join(' ', missing)}: scripts/test.sh installs them "
              + $"(apt-get install -y --no-install-recommends {string.Join(' ', missing)})";
    }

    private async Task<string?> BuildLibraryAsync()
    {
        ProcessResult make = await Tool.RunProgramAsync("make", ["-C", NativeDirectory], BuildTimeout);
        if (!make.Succeeded)
        {
            return $"libdistcache does not build: make -C native failed (exit {make.ExitCode}):\n{make.Tail()}";
        }

        foreach (string library in new[] { "libdistcache.so", "libnal.so" })
        {
            if (!File.Exists(Path.Combine(NativeDirectory, "build", "lib", library)))
            {
                return $"make -C native succeeded but native/build/lib/{library} does not exist";
            }
        }

        ProcessResult install = await Tool.RunProgramAsync("make", ["-C", NativeDirectory, "install", $"PREFIX={Prefix}"], BuildTimeout);
        if (!install.Succeeded)
        {
            return $"make -C native install PREFIX={Prefix} failed (exit {install.ExitCode}):\n{install.Tail()}";
        }

        if (!File.Exists(Path.Combine(Prefix, "include", "distcache", "dc_client.h")) || !File.Exists(Path.Combine(Prefix, "lib", "libdistcache.so")))
        {
            return $"make -C native install PREFIX={Prefix} left no include/distcache/dc_client.h or lib/libdistcache.so there";
        }

        Note($"libdistcache built (make -C native) and installed under {Prefix}");
        return null;
    }

    /// <summary>Where the Debian source is cached between runs: $DEBIAN_APACHE_SRC_CACHE, else under this project's obj/.</summary>
    private static string SourceCache =>
        Environment.GetEnvironmentVariable("DEBIAN_APACHE_SRC_CACHE") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Tool.RepositoryRoot, "test", "Distcache.Apache.Tests", "obj", "debian-apache-src");

    private async Task BuildDebianModuleAsync()
    {
        string script = Path.Combine(NativeDirectory, "apache", "build-debian-module.sh");
        string outDir = Path.Combine(_work, "debian-module");
        // apt-get source, in the script, must never stop to ask.
        ProcessResult result = await Tool.RunProgramAsync("bash", [script, Prefix, outDir], BuildTimeout,
            environment: new Dictionary<string, string?> { ["DEBIAN_APACHE_SRC_CACHE"] = SourceCache, ["DEBIAN_FRONTEND"] = "noninteractive" });
        string module = Path.Combine(outDir, "mod_socache_dc.so");
        if (!result.Succeeded || !File.Exists(module))
        {
            DebianModuleError = $"Debian's mod_socache_dc does not build against the library (exit {result.ExitCode}): {result.CommandLine}\n{result.Tail()}";
            return;
        }

        string versionFile = Path.Combine(outDir, "mod_socache_dc.version");
        if (File.Exists(versionFile))
        {
            DebianSourceVersion = File.ReadAllText(versionFile).Replace("apache2 source version:", "", StringComparison.Ordinal).Trim();
        }

        DebianModule = module;
        Note($"Debian's mod_socache_dc built unchanged from apache2 {DebianSourceVersion} (source cache {SourceCache})");
    }

    private async Task BuildOwnModuleAsync()
    {
        // In a scratch folder of this run, with its run path on this run's installed library, so the module
        // loads exactly the library under test and the tree's own build output is left alone.
        string buildDir = Path.Combine(_work, "own-module");
        ProcessResult result = await Tool.RunProgramAsync("make",
            ["-C", NativeDirectory, "apache", $"PREFIX={Prefix}", $"APACHE_BUILD={buildDir}"], BuildTimeout);
        string built = Path.Combine(buildDir, "mod_socache_distcache.so");
        if (!result.Succeeded || !File.Exists(built))
        {
            OwnModuleError = $"mod_socache_distcache does not build (exit {result.ExitCode}): {result.CommandLine}\n{result.Tail()}";
            return;
        }

        OwnModule = built;
        Note("mod_socache_distcache built (make -C native apache)");
    }

    /// <summary>Why a module would not find its libraries at run time (ldd says "not found"), or null.</summary>
    public static async Task<string?> UnresolvedLibrariesAsync(string module)
    {
        ProcessResult ldd = await Tool.RunProgramAsync("ldd", [module], TimeSpan.FromSeconds(30));
        return ldd.Output.Contains("not found", StringComparison.Ordinal) ? $"{module} does not find its libraries:\n{ldd.Output}" : null;
    }
}
