using System.Diagnostics;
using System.Globalization;
using Distcache.Networking;

namespace Distcache.Apps.Test.Load;

/// <summary>
/// <c>dc_test -bench</c>: opens <c>-clients</c> connections, optionally prefills the key space, warms up, then
/// measures for <c>-duration</c> seconds (or <c>-requests</c> requests) and reports throughput, latency
/// percentiles, outcomes, and the CPU time it used itself (and the server, with <c>-serverpid</c>).
/// </summary>
internal static class LoadGenerator
{
    public static async Task<int> RunAsync(LoadSettings settings, CancellationToken cancellationToken)
    {
        Process? server = null;
        if (settings.ServerPid is { } pid)
        {
            try
            {
                server = Process.GetProcessById(pid);
            }
            catch (ArgumentException)
            {
                await Console.Error.WriteLineAsync($"Error, -serverpid {pid}: no such process").ConfigureAwait(false);
                return 1;
            }
        }

        using (server)
        {
            var keys = new KeySpace(settings);
            var control = new LoadControl(settings.Requests, settings.Prefill);
            LoadConnection[] connections;
            try
            {
                connections = await ConnectAllAsync(settings, keys, control, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is NetworkException or OperationCanceledException)
            {
                await Console.Error.WriteLineAsync($"Error, failed to connect to {settings.Target}: {e.Message}").ConfigureAwait(false);
                return 1;
            }

            try
            {
                return await MeasureAsync(settings, connections, control, server, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                foreach (LoadConnection connection in connections)
                {
                    await connection.DisposeAsync().ConfigureAwait(false);
                }
            }
        }
    }

    private static async Task<LoadConnection[]> ConnectAllAsync(LoadSettings settings, KeySpace keys, LoadControl control, CancellationToken cancellationToken)
    {
        var seeds = new FastRandom(settings.Seed);
        var connecting = new Task<LoadConnection>[settings.Clients];
        for (int i = 0; i < connecting.Length; i++)
        {
            connecting[i] = LoadConnection.ConnectAsync(settings, keys, control, seeds.NextUInt64(), cancellationToken);
        }

        try
        {
            return await Task.WhenAll(connecting).ConfigureAwait(false);
        }
        catch
        {
            foreach (Task<LoadConnection> task in connecting)
            {
                if (task.IsCompletedSuccessfully)
                {
                    await task.Result.DisposeAsync().ConfigureAwait(false);
                }
            }

            throw;
        }
    }

    private static async Task<int> MeasureAsync(LoadSettings settings, LoadConnection[] connections, LoadControl control, Process? server, CancellationToken cancellationToken)
    {
        bool live = !Console.IsOutputRedirected && settings.JsonPath != "-";
        var progress = new ProgressLine(live, connections);
        using CancellationTokenRegistration interrupt = cancellationToken.Register(control.Stop);
        try
        {
            return await RunPhasesAsync(settings, connections, control, server, progress, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await progress.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static async Task<int> RunPhasesAsync(LoadSettings settings, LoadConnection[] connections, LoadControl control, Process? server, ProgressLine progress, CancellationToken cancellationToken)
    {
        if (settings.Prefill > 0)
        {
            progress.Phase = "prefill";
            bool[] prefilled = await Task.WhenAll(connections.Select(c => Task.Run(() => c.RunAsync(prefill: true), CancellationToken.None))).ConfigureAwait(false);
            if (!prefilled.All(ok => ok))
            {
                await progress.DisposeAsync().ConfigureAwait(false);
                await Console.Error.WriteLineAsync("Error, the prefill failed; nothing was measured").ConfigureAwait(false);
                return 1;
            }
        }

        progress.Phase = "warm-up";
        Task<bool[]> running = Task.WhenAll(connections.Select(c => Task.Run(() => c.RunAsync(prefill: false), CancellationToken.None)));
        if (settings.Warmup > TimeSpan.Zero)
        {
            await WaitAsync(running, settings.Warmup, cancellationToken).ConfigureAwait(false);
        }

        progress.Phase = "run";
        using var self = Process.GetCurrentProcess();
        long start = Stopwatch.GetTimestamp();
        control.StartMeasuring(start);
        CpuSample ourCpuAtStart = CpuSample.Of(self);
        CpuSample? serverCpuAtStart = server is null ? null : CpuSample.Of(server);
        long allocatedAtStart = GC.GetTotalAllocatedBytes(precise: false);
        int collectionsAtStart = GC.CollectionCount(0);

        long end;
        CpuSample ourCpu;
        CpuSample? serverCpu;
        if (settings.Requests is null)
        {
            await WaitAsync(running, settings.Duration, cancellationToken).ConfigureAwait(false);
            end = Stopwatch.GetTimestamp();
            control.EndMeasuring(end);
            control.Stop();
            (ourCpu, serverCpu) = (CpuSample.Of(self) - ourCpuAtStart, server is null ? null : CpuSample.Of(server) - serverCpuAtStart!.Value);
            progress.Phase = "drain";
            await running.ConfigureAwait(false);
        }
        else
        {
            // The budget ends sending; the window ends when the last measured response is in.
            await running.ConfigureAwait(false);
            end = Stopwatch.GetTimestamp();
            control.EndMeasuring(end);
            (ourCpu, serverCpu) = (CpuSample.Of(self) - ourCpuAtStart, server is null ? null : CpuSample.Of(server) - serverCpuAtStart!.Value);
        }

        long allocated = GC.GetTotalAllocatedBytes(precise: false) - allocatedAtStart;
        int collections = GC.CollectionCount(0) - collectionsAtStart;

        await progress.DisposeAsync().ConfigureAwait(false);

        var total = new LoadStatistics();
        foreach (LoadConnection connection in connections)
        {
            total.Add(connection.Statistics);
        }

        var result = new LoadResult(settings, total, Stopwatch.GetElapsedTime(start, end), cancellationToken.IsCancellationRequested)
        {
            OurCpu = ourCpu,
            ServerCpu = serverCpu,
            Allocated = allocated,
            Collections = collections,
        };
        bool jsonToStdout = settings.JsonPath == "-";
        result.WriteText(jsonToStdout ? Console.Error : Console.Out);
        if (settings.JsonPath is { } path)
        {
            try
            {
                await result.WriteJsonAsync(path).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"Error, cannot write the JSON result to {path}: {e.Message}").ConfigureAwait(false);
                return 1;
            }
        }

        return total.ErrorTotal == 0 && total.Measured > 0 ? 0 : 1;
    }

    // Waits out a phase, but returns early when every connection has already stopped (they all failed) or on
    // Ctrl-C, after which what was measured so far is reported. WhenAny completes, never throws, either way.
    private static async Task WaitAsync(Task running, TimeSpan duration, CancellationToken cancellationToken) =>
        await Task.WhenAny(running, Task.Delay(duration, cancellationToken)).ConfigureAwait(false);


    /// <summary>The once-a-second status line on a terminal, rewritten in place; nothing when output is redirected.</summary>
    private sealed class ProgressLine : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        private readonly LoadConnection[] _connections;
        private int _disposed;

        public ProgressLine(bool enabled, LoadConnection[] connections)
        {
            _connections = connections;
            _loop = enabled ? Task.Run(LoopAsync) : Task.CompletedTask;
        }

        public volatile string Phase = "connect";

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            await _stop.CancelAsync().ConfigureAwait(false);
            await _loop.ConfigureAwait(false);
            _stop.Dispose();
        }

        private async Task LoopAsync()
        {
            var clock = Stopwatch.StartNew();
            long last = 0;
            TimeSpan lastAt = TimeSpan.Zero;
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
            try
            {
                while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
                {
                    long completed = 0;
                    long errors = 0;
                    foreach (LoadConnection connection in _connections)
                    {
                        completed += connection.Statistics.Completed;
                        errors += connection.Statistics.ErrorTotal;
                    }

                    TimeSpan now = clock.Elapsed;
                    double rate = (completed - last) / (now - lastAt).TotalSeconds;
                    (last, lastAt) = (completed, now);
                    string line = string.Create(CultureInfo.InvariantCulture, $"[{Phase,-7} {now.TotalSeconds,5:F0}s] {rate,12:N0} ops/s   total {completed:N0}   errors {errors:N0}");
                    Console.Write("\r" + line.PadRight(78));
                }
            }
            catch (OperationCanceledException)
            {
                // Stopped: the final report replaces the line.
            }

            Console.Write("\r" + new string(' ', 78) + "\r");
        }
    }
}
