namespace Distcache.Hosting.Tests;

/// <summary>How the daemon parent rebuilds its own command line for the child.</summary>
public sealed class RelaunchCommandTests
{
    [Fact]
    public void An_apphost_is_started_again_with_just_the_arguments()
    {
        var (file, arguments) = Daemon.BuildRelaunchCommand(
            ["-daemon", "-listen", "UNIX:x"], "/opt/dc/dc_server", ["/opt/dc/dc_server.dll", "-daemon", "-listen", "UNIX:x"], ["./dc_server", "-daemon", "-listen", "UNIX:x"]);

        Assert.Equal("/opt/dc/dc_server", file);
        Assert.Equal(["-daemon", "-listen", "UNIX:x"], arguments);
    }

    [Fact]
    public void The_dotnet_muxer_gets_the_entry_assembly_as_typed()
    {
        var (file, arguments) = Daemon.BuildRelaunchCommand(
            ["-daemon"], "/usr/share/dotnet/dotnet", ["/opt/dc/dc_server.dll", "-daemon"], ["dotnet", "dc/dc_server.dll", "-daemon"]);

        Assert.Equal("/usr/share/dotnet/dotnet", file);
        Assert.Equal(["dc/dc_server.dll", "-daemon"], arguments);
    }

    [Fact]
    public void Host_options_of_dotnet_exec_are_kept()
    {
        var (_, arguments) = Daemon.BuildRelaunchCommand(
            ["-daemon"], "/usr/bin/dotnet", ["/d/app.dll", "-daemon"], ["dotnet", "exec", "--runtimeconfig", "/d/rc.json", "/d/app.dll", "-daemon"]);

        Assert.Equal(["exec", "--runtimeconfig", "/d/rc.json", "/d/app.dll", "-daemon"], arguments);
    }

    [Fact]
    public void The_given_arguments_replace_the_original_ones()
    {
        var (_, arguments) = Daemon.BuildRelaunchCommand(
            ["-daemon", "-pidfile", "/abs/p"], "/usr/bin/dotnet", ["/d/app.dll", "-daemon", "-pidfile", "p"], ["dotnet", "/d/app.dll", "-daemon", "-pidfile", "p"]);

        Assert.Equal(["/d/app.dll", "-daemon", "-pidfile", "/abs/p"], arguments);
    }

    [Fact]
    public void Without_a_matching_argv_the_muxer_still_gets_the_entry_assembly()
    {
        var (_, muxer) = Daemon.BuildRelaunchCommand(["-daemon"], "/usr/bin/dotnet", ["/d/app.dll", "-daemon"], null);
        var (_, mismatch) = Daemon.BuildRelaunchCommand(["-daemon"], "/usr/bin/dotnet", ["/d/app.dll", "-daemon"], ["dotnet", "/d/app.dll", "-other"]);
        var (_, apphost) = Daemon.BuildRelaunchCommand(["-daemon"], "/d/app", ["/d/app.dll", "-daemon"], null);

        Assert.Equal(["/d/app.dll", "-daemon"], muxer);
        Assert.Equal(["/d/app.dll", "-daemon"], mismatch);
        Assert.Equal(["-daemon"], apphost);
    }

    [Fact]
    public void An_unknown_executable_path_is_an_error()
    {
        var error = Assert.Throws<HostingException>(() => Daemon.BuildRelaunchCommand(["-daemon"], null, ["/d/app.dll"], null));

        Assert.Contains("path of the running executable is unknown", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void This_process_can_be_relaunched()
    {
        var (file, arguments) = Daemon.GetRelaunchCommand(["-x"]);

        Assert.Equal(Environment.ProcessPath, file);
        Assert.Equal("-x", arguments[^1]);
    }
}
