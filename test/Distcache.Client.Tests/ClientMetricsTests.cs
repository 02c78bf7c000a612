using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Distcache.Client;
using Distcache.Networking;

namespace Distcache.Client.Tests;

/// <summary>The <c>Distcache.Client</c> meter, read with a MeterListener as OpenTelemetry or dotnet-counters would.</summary>
public sealed class ClientMetricsTests
{
    [Fact]
    public async Task Operations_are_counted_by_kind_and_outcome_and_answered_ones_timed()
    {
        await using var server = InProcessServer.Start();
        string address = server.Address.ToString();
        var counts = new ConcurrentDictionary<string, long>();
        var durations = new ConcurrentBag<(string Operation, double Seconds)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == ClientMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };

        // Other tests' clients use the same meter at the same time: only this server's measurements count.
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (Tag(tags, "server.address") == address)
            {
                counts.AddOrUpdate($"{instrument.Name} {Tag(tags, "distcache.operation")} {Tag(tags, "distcache.outcome")}", value, (_, old) => old + value);
            }
        });
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            if (Tag(tags, "server.address") == address)
            {
                durations.Add((Tag(tags, "distcache.operation")!, value));
            }
        });
        listener.Start();

        await using (DistcacheClient client = DistcacheClient.Connect(new DistcacheClientOptions { Address = server.Address }))
        {
            byte[] id = [1, 2, 3];
            Assert.Equal(AddOutcome.Stored, await client.AddAsync(id, new byte[100], TimeSpan.FromMinutes(1)));
            Assert.Equal(AddOutcome.AlreadyExists, client.Add(id, new byte[100], TimeSpan.FromMinutes(1)));
            Assert.NotNull(await client.GetAsync(id));
            Assert.Null(client.Get([9]));
            Assert.True(await client.ContainsAsync(id));
            Assert.True(await client.RemoveAsync(id));
            Assert.False(client.Remove(id));
        }

        Assert.Equal(1, counts.GetValueOrDefault("distcache.client.connects  "));
        Assert.Equal(1, counts.GetValueOrDefault("distcache.client.operations add ok"));
        Assert.Equal(1, counts.GetValueOrDefault("distcache.client.operations add exists"));
        Assert.Equal(1, counts.GetValueOrDefault("distcache.client.operations get ok"));
        Assert.Equal(1, counts.GetValueOrDefault("distcache.client.operations get notok"));
        Assert.Equal(1, counts.GetValueOrDefault("distcache.client.operations have ok"));
        Assert.Equal(1, counts.GetValueOrDefault("distcache.client.operations remove ok"));
        Assert.Equal(1, counts.GetValueOrDefault("distcache.client.operations remove notok"));
        Assert.Equal(7, durations.Count);
        Assert.All(durations, d => Assert.InRange(d.Seconds, 1e-7, 5));
        Assert.Equal(2, durations.Count(d => d.Operation == "get"));
    }

    [Fact]
    public async Task A_request_to_a_cache_that_is_not_there_counts_as_failed_and_is_not_timed()
    {
        await using var server = InProcessServer.Start();
        Address gone = server.Address;
        await server.DisposeAsync();
        string address = gone.ToString();
        var outcomes = new ConcurrentBag<string>();
        int timed = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == ClientMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, _, tags, _) =>
        {
            if (instrument.Name == "distcache.client.operations" && Tag(tags, "server.address") == address)
            {
                outcomes.Add(Tag(tags, "distcache.outcome")!);
            }
        });
        listener.SetMeasurementEventCallback<double>((_, _, tags, _) =>
        {
            if (Tag(tags, "server.address") == address)
            {
                Interlocked.Increment(ref timed);
            }
        });
        listener.Start();

        await using DistcacheClient client = DistcacheClient.Connect(new DistcacheClientOptions { Address = gone, OperationTimeout = TimeSpan.FromMilliseconds(300), ConnectTimeout = TimeSpan.FromMilliseconds(300) });
        await Assert.ThrowsAnyAsync<Exception>(async () => await client.GetAsync(new byte[] { 1 }));
        Assert.Contains(Assert.Single(outcomes), new[] { "timeout", "failed" });
        Assert.Equal(0, timed);
    }

    [Fact]
    public async Task A_request_the_server_never_answers_counts_once_as_a_timeout()
    {
        // A server that accepts and then says nothing (no script: its connections only queue).
        await using var silent = new FakeServer();
        Address address = silent.Address;
        string text = address.ToString();
        var outcomes = new ConcurrentBag<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == ClientMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, _, tags, _) =>
        {
            if (instrument.Name == "distcache.client.operations" && Tag(tags, "server.address") == text)
            {
                outcomes.Add(Tag(tags, "distcache.outcome")!);
            }
        });
        listener.Start();

        await using DistcacheClient client = DistcacheClient.Connect(new DistcacheClientOptions { Address = address, OperationTimeout = TimeSpan.FromMilliseconds(300) });
        await Assert.ThrowsAsync<TimeoutException>(async () => await client.GetAsync(new byte[] { 1 }));
        Assert.Equal(["timeout"], outcomes);
    }

    private static string? Tag(ReadOnlySpan<KeyValuePair<string, object?>> tags, string key)
    {
        foreach (KeyValuePair<string, object?> tag in tags)
        {
            if (tag.Key == key)
            {
                return tag.Value as string;
            }
        }

        return null;
    }
}
