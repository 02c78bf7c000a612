namespace Distcache.Server;

/// <summary>Settings of a <see cref="DistcacheServer"/>.</summary>
public sealed class DistcacheServerOptions
{
    /// <summary>How long shutdown waits for open connections to finish the responses they are writing before
    /// it closes them. Default 5 seconds.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);
}
