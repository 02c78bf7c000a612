using Distcache.Networking;

namespace Distcache.Hosting;

/// <summary>How the runtime's socket engine runs the code waiting on a socket.</summary>
public static class SocketEngine
{
    /// <summary>The runtime's switch, read once when the first socket is created.</summary>
    public const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// Runs socket continuations on the runtime's event threads (one per core when inlining) instead of handing
    /// each to the thread pool. The servers' connection loops never block, so the hand-off only costs: skipping it
    /// cut dc_server's CPU per operation by 10-40% and raised its throughput in our measurements
    /// (docs/performance.md). Must be called before the first socket is created; an operator's own setting of
    /// the variable wins.
    /// </summary>
    /// <returns>True if inline completions are now requested.</returns>
    public static bool UseInlineCompletions()
    {
        string? current = Environment.GetEnvironmentVariable(InlineCompletionsVariable);
        if (current is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletionsVariable, "1");
            return true;
        }

        return current == "1";
    }

    /// <summary>Set to <c>0</c> to serve on the runtime's sockets instead of the native transport.</summary>
    public const string NativeTransportVariable = "DISTCACHE_NATIVE_TRANSPORT";

    /// <summary>
    /// Whether a tool's listener should use <see cref="ListenerOptions.NativeTransport"/>, and its connections
    /// <see cref="ConnectionOptions.NativeTransport"/>: yes unless the operator
    /// set <see cref="NativeTransportVariable"/> to <c>0</c> (a way back to the runtime's sockets, should the
    /// transport ever misbehave on some kernel).
    /// </summary>
    /// <returns>True to ask for the native transport.</returns>
    public static bool NativeTransportWanted() => Environment.GetEnvironmentVariable(NativeTransportVariable) is not "0";
}
