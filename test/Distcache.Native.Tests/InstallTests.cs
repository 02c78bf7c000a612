using Distcache.Native.Tests.Support;

namespace Distcache.Native.Tests;

/// <summary>
/// The library as a program built against it finds it: installed with <c>make install PREFIX=...</c>, found with
/// pkg-config, linked as Apache's configure links its check (<c>-ldistcache -lnal</c>), exporting 1.5.1's names and
/// nothing else.
/// </summary>
public sealed class InstallTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("dc-native-install-").FullName;

    private static readonly string[] Api =
    [
        "DC_CTX_add_session", "DC_CTX_free", "DC_CTX_get_session", "DC_CTX_has_session", "DC_CTX_new",
        "DC_CTX_reget_session", "DC_CTX_remove_session",
    ];

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Prefix => Path.Combine(_dir, "prefix");

    private async Task<ProcessResult> InstallAsync()
    {
        _ = NativeTestProgram.ProgramPath; // builds the library first
        ProcessResult install = await RunAsync("make", "-C", NativeTestProgram.NativeDirectory, "install", $"PREFIX={Prefix}");
        Assert.True(install.ExitCode == 0, install.Describe());
        return install;
    }

    private static Task<ProcessResult> RunAsync(string file, params string[] args) =>
        NativeTestProgram.RunAsync(file, args, null, TimeSpan.FromMinutes(2));

    [Fact]
    public async Task An_installed_copy_has_the_sonames_links_header_and_pkg_config_file_of_1_5_1()
    {
        await InstallAsync();
        string lib = Path.Combine(Prefix, "lib");
        foreach (string name in new[] { "libdistcache", "libnal" })
        {
            Assert.True(File.Exists(Path.Combine(lib, $"{name}.so.1.0.1")), $"{name}.so.1.0.1");
            Assert.Equal($"{name}.so.1", new FileInfo(Path.Combine(lib, $"{name}.so")).LinkTarget);
            Assert.Equal($"{name}.so.1.0.1", new FileInfo(Path.Combine(lib, $"{name}.so.1")).LinkTarget);
            ProcessResult dynamic = await RunAsync("readelf", "-d", Path.Combine(lib, $"{name}.so"));
            Assert.Contains($"Library soname: [{name}.so.1]", dynamic.Stdout, StringComparison.Ordinal);
        }

        Assert.True(File.Exists(Path.Combine(Prefix, "include", "distcache", "dc_client.h")));
        string pc = File.ReadAllText(Path.Combine(lib, "pkgconfig", "distcache.pc"));
        Assert.Contains($"prefix={Prefix}\n", pc, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_library_exports_the_seven_DC_CTX_functions_and_nothing_else()
    {
        await InstallAsync();
        ProcessResult symbols = await RunAsync("nm", "-D", "--defined-only", Path.Combine(Prefix, "lib", "libdistcache.so"));
        Assert.Equal(0, symbols.ExitCode);
        string[] exported = symbols.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length == 3 && fields[1] == "T")
            .Select(fields => fields[2])
            .Order(StringComparer.Ordinal)
            .ToArray();
        Assert.Equal(Api, exported);
    }

    /// <summary>
    /// What Apache's configure (and mod_socache_dc.c) check before they build: DISTCACHE_CLIENT_API is 0x0001, and a
    /// program linked with -ldistcache -lnal calls DC_CTX_new((const char *)0, 0), which must give NULL.
    /// </summary>
    [Fact]
    public async Task A_program_built_with_pkg_config_as_Apache_configure_builds_its_check_links_and_runs()
    {
        await InstallAsync();
        string source = Path.Combine(_dir, "check.c");
        File.WriteAllText(source, """
            #include <distcache/dc_client.h>
            #if DISTCACHE_CLIENT_API != 0x0001
            #error "distcache API version is unrecognised"
            #endif
            int main(void)
            {
                DC_CTX *ctx = DC_CTX_new((const char *)0, 0);
                return ctx == (DC_CTX *)0 ? 0 : 1;
            }
            """);
        var environment = new Dictionary<string, string?> { ["PKG_CONFIG_PATH"] = Path.Combine(Prefix, "lib", "pkgconfig") };
        ProcessResult flags = await NativeTestProgram.RunAsync("pkg-config", ["--cflags", "--libs", "distcache"], environment, TimeSpan.FromMinutes(1));
        Assert.True(flags.ExitCode == 0, flags.Describe());
        Assert.Contains("-ldistcache -lnal", flags.Stdout, StringComparison.Ordinal);

        string program = Path.Combine(_dir, "check");
        string[] compile =
        [
            "-o", program, source,
            .. flags.Stdout.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            $"-Wl,-rpath,{Path.Combine(Prefix, "lib")}",
        ];
        ProcessResult cc = await RunAsync("cc", compile);
        Assert.True(cc.ExitCode == 0, cc.Describe());
        ProcessResult run = await RunAsync(program);
        Assert.True(run.ExitCode == 0, "DC_CTX_new(NULL, 0) did not return NULL: " + run.Describe());
    }
}
