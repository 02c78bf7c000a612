namespace Distcache.Packaging.Tests;

/// <summary>Runs the dotnet command line as a user would, isolated from the test host that runs these tests.</summary>
internal static class Dotnet
{
    /// <summary>Runs <c>dotnet</c> with the arguments; fails the test, with everything it printed, unless it exits 0.</summary>
    /// <param name="timeout">How long it may run.</param>
    /// <param name="workingDirectory">Where it runs.</param>
    /// <param name="nugetPackages">The NuGet packages folder it restores into (null: the machine's own).</param>
    /// <param name="args">Its arguments.</param>
    /// <returns>How it ended.</returns>
    public static async Task<ProcessResult> RunAsync(TimeSpan timeout, string workingDirectory, string? nugetPackages, params string[] args)
    {
        var result = await Tool.RunProgramAsync("dotnet", args, timeout, Environment(nugetPackages), workingDirectory);
        Assert.True(result.Succeeded, $"{result.CommandLine}\n{result.Describe()}");
        return result;
    }

    /// <summary>
    /// The test host runs inside dotnet test, which sets MSBuild's own variables; a nested dotnet must find its
    /// SDK by itself. Build servers (MSBuild nodes, the compiler server) would outlive the test, so none is left
    /// running.
    /// </summary>
    private static Dictionary<string, string?> Environment(string? nugetPackages)
    {
        var variables = new Dictionary<string, string?>(StringComparer.Ordinal)
        {
            ["MSBuildExtensionsPath"] = null,
            ["MSBuildSDKsPath"] = null,
            ["MSBUILD_EXE_PATH"] = null,
            ["MSBuildLoadMicrosoftTargetsReadOnly"] = null,
            ["MSBUILDNOINPROCNODE"] = null,
            ["VSTEST_HOST_DEBUG"] = null,
            ["MSBUILDDISABLENODEREUSE"] = "1",
            ["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0",
            ["UseSharedCompilation"] = "false",
            ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
            ["DOTNET_NOLOGO"] = "1",
            ["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1",
            ["DOTNET_GENERATE_ASPNET_CERTIFICATE"] = "false",
        };
        if (nugetPackages is not null)
        {
            variables["NUGET_PACKAGES"] = nugetPackages;
        }

        return variables;
    }
}
