using System.Collections.Concurrent;
using Distcache.Protocol;
using static Distcache.Client.Tests.Support.TestHelpers;

namespace Distcache.Client.Tests;

/// <summary>How request uids are handed out: increasing, wrapping past 2^32 - 1 to 1, and never reusing the uid of
/// a request whose caller gave up until its late response has come back.</summary>
public sealed class UidTests
{
    [Fact(Timeout = 30_000)]
    public async Task Uids_wrap_skip_zero_and_never_reuse_the_uid_of_an_abandoned_request()
    {
        var uids = new ConcurrentQueue<uint>();
        var releaseHeld = new TaskCompletionSource();
        await using var server = new FakeServer(async c =>
        {
            Received? held = null;
            while (await c.ReceiveAsync() is { } request)
            {
                uids.Enqueue(request.Uid);
                if (request.Payload.AsSpan().SequenceEqual("held"u8))
                {
                    held = request;
                    _ = releaseHeld.Task.ContinueWith(
                        _ => c.SendAsync(Frames.Status(held.Uid, held.Operation, StatusCode.Ok)),
                        TaskScheduler.Default);
                    continue;
                }

                await c.SendAsync(Frames.Status(request.Uid, request.Operation, StatusCode.NotOk));
            }
        });
        await using var client = await DistcacheClient.ConnectAsync(Options(server.Address));
        var link = client.CurrentLink!;

        link.LastUid = uint.MaxValue - 3;
        using (var cancel = new CancellationTokenSource())
        {
            var held = client.ContainsAsync(Bytes("held"), cancel.Token).AsTask();
            await Poll.UntilAsync(() => uids.Count == 1, TimeSpan.FromSeconds(5), "the held request to arrive");
            cancel.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => held);
        }

        // As if 2^32 requests later: the counter comes round to the abandoned request's uid, which is still reserved.
        link.LastUid = uint.MaxValue - 4;
        for (int i = 0; i < 4; i++)
        {
            Assert.False(await client.ContainsAsync(Bytes($"id{i}")));
        }

        // The abandoned request's response arrives late and is dropped quietly: no violation, same connection.
        releaseHeld.SetResult();
        await Task.Delay(100);
        Assert.False(await client.ContainsAsync(Bytes("after")));
        Assert.Same(link, client.CurrentLink);
        Assert.Equal(1, server.Accepted);

        Assert.Equal(
            [uint.MaxValue - 2, uint.MaxValue - 3, uint.MaxValue - 1, uint.MaxValue, 1u, 2u],
            uids.ToArray());
    }
}
