namespace Distcache.EndToEnd.Tests.Support;

/// <summary>A dc_server started on a free loopback port, stopped on dispose.</summary>
internal sealed class RunningServer : IAsyncDisposable
{
    private RunningServer(Tool tool, string address)
    {
        Tool = tool;
        Address = address;
    }

    public Tool Tool { get; }

    public string Address { get; }

    public static async Task<RunningServer> StartServerAsync(params string[] extra)
    {
        (Tool tool, string address) = await ServerProcess.StartTcpAsync(extra);
        return new RunningServer(tool, address);
    }

    public ValueTask DisposeAsync() => Tool.DisposeAsync();
}
