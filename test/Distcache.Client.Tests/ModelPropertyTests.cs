using CsCheck;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>Random operation sequences on one client, sync and async mixed and partly concurrent, agree with a
/// dictionary model of the cache.</summary>
public sealed class ModelPropertyTests
{
    private sealed record Step(int Kind, int Key, int Size, bool Sync);

    private static readonly Gen<Step> GenStep = Gen.Select(
        Gen.Int[0, 3],
        Gen.Int[0, 7],
        Gen.Frequency((5, Gen.Int[2, 300]), (2, Gen.Int[2000, 4200]), (1, Gen.Int[30_000, 32_700])),
        Gen.Bool,
        (kind, key, size, sync) => new Step(kind, key, size, sync));

    [Fact(Timeout = 120_000)]
    public async Task Random_sequences_agree_with_a_model()
    {
        await using var server = InProcessServer.Start("IP:127.0.0.1:0");
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 20_000));
        int run = 0;

        await GenStep.Array[1, 40].SampleAsync(
            async steps =>
            {
                // Each run has its own ids, so that runs (and CsCheck's shrinking) do not see each other's sessions.
                int prefix = Interlocked.Increment(ref run);
                var model = new Dictionary<int, byte[]>();
                foreach (var step in steps)
                {
                    byte[] id = Bytes($"{prefix}/{step.Key}");
                    switch (step.Kind)
                    {
                        case 0:
                            byte[] data = new byte[step.Size];
                            Random.Shared.NextBytes(data);
                            var outcome = step.Sync ? client.Add(id, data, TimeSpan.FromMinutes(1)) : await client.AddAsync(id, data, TimeSpan.FromMinutes(1));
                            Assert.Equal(model.TryAdd(step.Key, data) ? AddOutcome.Stored : AddOutcome.AlreadyExists, outcome);
                            break;
                        case 1:
                            byte[]? got = step.Sync ? client.Get(id) : await client.GetAsync(id);
                            Assert.Equal(model.GetValueOrDefault(step.Key), got);
                            break;
                        case 2:
                            Assert.Equal(model.Remove(step.Key), step.Sync ? client.Remove(id) : await client.RemoveAsync(id));
                            break;
                        default:
                            Assert.Equal(model.ContainsKey(step.Key), step.Sync ? client.Contains(id) : await client.ContainsAsync(id));
                            break;
                    }
                }
            },
            iter: 60,
            threads: 4);
    }
}
