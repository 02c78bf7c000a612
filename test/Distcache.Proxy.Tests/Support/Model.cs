using Distcache.Protocol;

namespace Distcache.Proxy.Tests.Support;

/// <summary>What a cache must answer, for sessions that do not expire during a test.</summary>
internal static class Model
{
    /// <summary>Applies one operation to the model and returns the exact response payload the server must give.</summary>
    public static byte[] Apply(Dictionary<string, byte[]> sessions, Operation operation, string id, byte[] data)
    {
        switch (operation)
        {
            case Operation.Add:
                if (sessions.ContainsKey(id))
                {
                    return [(byte)StatusCode.AddErrMatchingSession];
                }

                sessions[id] = data;
                return [(byte)StatusCode.Ok];
            case Operation.Get:
                return sessions.TryGetValue(id, out byte[]? stored) ? stored : [(byte)StatusCode.NotOk];
            case Operation.Remove:
                return [(byte)(sessions.Remove(id) ? StatusCode.Ok : StatusCode.NotOk)];
            default:
                return [(byte)(sessions.ContainsKey(id) ? StatusCode.Ok : StatusCode.NotOk)];
        }
    }
}
