using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>The client against the real <c>dc_server</c> executable, started as a child process.</summary>
public sealed class RealServerTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static void SkipUnlessBuilt()
    {
        string path = Path.Combine(Tool.RepositoryRoot, "apps", "dc_server", "bin", Tool.Configuration, "net10.0", "dc_server");
        Assert.SkipUnless(File.Exists(path), $"dc_server is not built at {path}; build apps/dc_server to run these tests");
    }

    private static async Task<Tool> StartServerAsync(string address)
    {
        var server = Tool.Start("dc_server", "-listen", address);
        await server.WaitForListenerAsync(address);
        return server;
    }

    [Theory(Timeout = 60_000)]
    [InlineData("tcp")]
    [InlineData("unix")]
    public async Task Every_operation_works_against_dc_server(string transport)
    {
        SkipUnlessBuilt();
        string address = transport == "tcp" ? $"IP:127.0.0.1:{Tool.FreePort()}" : $"UNIX:{_dir.File("dc.sock")}";
        await using var server = await StartServerAsync(address);
        await using var client = await DistcacheClient.ConnectAsync($"{address},timeout=5000");
        byte[] data = new byte[5000];
        Random.Shared.NextBytes(data);

        Assert.Equal(AddOutcome.Stored, await client.AddAsync(Bytes("real-1"), data, TimeSpan.FromMinutes(1)));
        Assert.Equal(AddOutcome.AlreadyExists, client.Add(Bytes("real-1"), data, TimeSpan.FromMinutes(1)));
        Assert.Equal(data, await client.GetAsync(Bytes("real-1")));
        Assert.True(client.Contains(Bytes("real-1")));
        Assert.True(await client.RemoveAsync(Bytes("real-1")));
        Assert.Null(client.Get(Bytes("real-1")));

        var many = Enumerable.Range(0, 500).Select(async i =>
        {
            byte[] id = Bytes($"many-{i}");
            byte[] value = Bytes($"value of session {i}");
            Assert.Equal(AddOutcome.Stored, await client.AddAsync(id, value, TimeSpan.FromMinutes(1)));
            Assert.Equal(value, await client.GetAsync(id));
        });
        await Task.WhenAll(many);
    }

    [Fact(Timeout = 60_000)]
    public async Task The_client_reconnects_after_dc_server_is_killed_and_restarted()
    {
        SkipUnlessBuilt();
        string address = $"UNIX:{_dir.File("dc.sock")}";
        var server = await StartServerAsync(address);
        await using var client = await DistcacheClient.ConnectAsync($"{address},reconnectMin=20,reconnectMax=200");
        Assert.Equal(AddOutcome.Stored, await client.AddAsync(Bytes("before"), Bytes("data"), TimeSpan.FromMinutes(1)));

        server.Signal(Native.SIGKILL);
        await server.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await server.DisposeAsync();
        await Assert.ThrowsAsync<DistcacheConnectionException>(() => EventuallyFailsAsync(client));

        await using var restarted = await StartServerAsync(address);
        Assert.False(await EventuallyAsync(() => client.ContainsAsync(Bytes("before")).AsTask()));
    }

    [Fact(Timeout = 60_000)]
    public async Task The_dc_ctx_model_test_passes_against_dc_server()
    {
        SkipUnlessBuilt();
        string address = $"IP:127.0.0.1:{Tool.FreePort()}";
        await using var server = await StartServerAsync(address);
        foreach (var flags in new[] { DcContextFlags.None, DcContextFlags.Persistent | DcContextFlags.PersistentRetry })
        {
            using var context = DcContext.Create(address, flags);
            var model = new Dictionary<int, byte[]>();
            var random = new Random(7);
            byte[] buffer = new byte[3000];
            for (int step = 0; step < 200; step++)
            {
                int key = random.Next(20);
                byte[] id = Bytes($"{flags}/{key}/padding");
                switch (random.Next(4))
                {
                    case 0:
                        byte[] data = new byte[random.Next(50, 2101)];
                        random.NextBytes(data);
                        Assert.Equal(model.TryAdd(key, data), context.Add(id, data, 60_000));
                        break;
                    case 1:
                        int length = context.Get(id, buffer);
                        Assert.Equal(model.TryGetValue(key, out byte[]? expected) ? expected.Length : -1, length);
                        if (expected is not null)
                        {
                            Assert.Equal(expected, buffer[..length]);
                        }

                        break;
                    case 2:
                        Assert.Equal(model.Remove(key), context.Remove(id));
                        break;
                    default:
                        Assert.Equal(model.ContainsKey(key) ? 1 : 0, context.Has(id));
                        break;
                }
            }
        }
    }

    /// <summary>Keeps asking until a request fails (the client noticed the dead server), for at most 10 s.</summary>
    private static async Task EventuallyFailsAsync(DistcacheClient client)
    {
        for (int i = 0; i < 500; i++)
        {
            await client.ContainsAsync(Bytes("probe"));
            await Task.Delay(20);
        }
    }
}
