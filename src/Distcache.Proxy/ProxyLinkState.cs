using Distcache.Networking;

namespace Distcache.Proxy;

/// <summary>One server link of a <see cref="DistcacheProxy"/>, as <see cref="DistcacheProxy.GetLinkStates"/> saw it.</summary>
/// <param name="Server">The server, as given in <see cref="DistcacheProxyOptions.Servers"/>.</param>
/// <param name="IsConnected">Whether requests for it are forwarded now.</param>
/// <param name="Connects">Connections to it established since the proxy started (the first one included).</param>
/// <param name="Losses">Connections to it lost since the proxy started (closed by the server, reset, timed out, broken protocol).</param>
/// <param name="InFlight">Requests waiting for its answers now.</param>
public sealed record ProxyLinkState(Address Server, bool IsConnected, long Connects, long Losses, int InFlight);
