using System.Buffers;
using System.Text;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>Many callers on one client: each gets the answer to its own request, contents included.</summary>
public sealed class ConcurrencyTests
{
    private const int Rounds = 150;

    [Fact(Timeout = 60_000)]
    public async Task Sixteen_tasks_and_four_threads_mixing_sync_and_async_each_get_their_own_answers()
    {
        await using var server = InProcessServer.Start("IP:127.0.0.1:0");
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 20_000));

        var tasks = Enumerable.Range(0, 16).Select(worker => Task.Run(() => WorkAsync(client, $"task{worker}", worker, syncEvery: 3)));
        var threads = Enumerable.Range(0, 4).Select(worker =>
            Task.Factory.StartNew(() => WorkSync(client, $"thread{worker}", worker), TaskCreationOptions.LongRunning));
        await Task.WhenAll(tasks.Concat(threads)).WaitAsync(TimeSpan.FromSeconds(50));
        Assert.Equal(1, server.Accepted);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_burst_of_pipelined_requests_is_answered_request_by_request()
    {
        await using var server = InProcessServer.Start("IP:127.0.0.1:0");
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address, timeoutMs: 20_000));
        const int count = 2000;

        var adds = Enumerable.Range(0, count).Select(i => client.AddAsync(Id("burst", i), Data("burst", i, i % 700), TimeSpan.FromMinutes(1)).AsTask()).ToArray();
        Assert.All(await Task.WhenAll(adds), outcome => Assert.Equal(AddOutcome.Stored, outcome));
        var gets = Enumerable.Range(0, count).Select(i => client.GetAsync(Id("burst", i)).AsTask()).ToArray();
        var results = await Task.WhenAll(gets);
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(Data("burst", i, i % 700), results[i]);
        }
    }

    private static byte[] Id(string worker, int round) => Encoding.ASCII.GetBytes($"{worker}/{round}");

    // Data that names its owner and round, with a size that varies so that some responses span frames.
    private static byte[] Data(string worker, int round, int extra)
    {
        var text = new StringBuilder($"{worker}:{round}:");
        text.Append('.', extra + (round * 37 % 3000));
        return Encoding.ASCII.GetBytes(text.ToString());
    }

    private static async Task WorkAsync(DistcacheClient client, string worker, int seed, int syncEvery)
    {
        var random = new Random(seed);
        for (int round = 0; round < Rounds; round++)
        {
            byte[] id = Id(worker, round);
            byte[] data = Data(worker, round, random.Next(100));
            bool sync = round % syncEvery == 0;
            Assert.Equal(AddOutcome.Stored, sync ? client.Add(id, data, TimeSpan.FromMinutes(1)) : await client.AddAsync(id, data, TimeSpan.FromMinutes(1)));
            Assert.Equal(data, sync ? client.Get(id) : await client.GetAsync(id));
            Assert.True(await client.ContainsAsync(id));
            using (var lease = await client.GetLeaseAsync(id))
            {
                Assert.Equal(data, lease!.Memory.ToArray());
            }

            Assert.Equal(AddOutcome.AlreadyExists, await client.AddAsync(id, Data("intruder", round, 1), TimeSpan.FromMinutes(1)));
            Assert.True(sync ? client.Remove(id) : await client.RemoveAsync(id));
            Assert.False(await client.ContainsAsync(id));
            Assert.Null(await client.GetAsync(id));
        }
    }

    private static void WorkSync(DistcacheClient client, string worker, int seed)
    {
        var random = new Random(seed + 1000);
        var writer = new ArrayBufferWriter<byte>();
        for (int round = 0; round < Rounds; round++)
        {
            byte[] id = Id(worker, round);
            byte[] data = Data(worker, round, random.Next(100));
            Assert.Equal(AddOutcome.Stored, client.Add(id, data, TimeSpan.FromMinutes(1)));
            writer.ResetWrittenCount();
            Assert.Equal(GetOutcome.Found, client.Get(id, writer));
            Assert.Equal(data, writer.WrittenSpan.ToArray());
            Assert.True(client.Contains(id));
            Assert.True(client.Remove(id));
            Assert.False(client.Contains(id));
            Assert.Equal(GetOutcome.NotFound, client.Get(id, writer));
        }
    }
}
