using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Distcache.Protocol;
using Distcache.Proxy.Tests.Support;

namespace Distcache.Proxy.Tests;

/// <summary>
/// A soak: the real dc_client under sustained load from several application connections while the real dc_server
/// behind it is SIGKILLed and restarted every few seconds. Every request gets an answer (never a hang), no answer
/// carries another request's data (every session's data is derived from its id), and service resumes after each
/// restart.
/// </summary>
public sealed class SoakTests(ITestOutputHelper output)
{
    /// <summary>How long the soak runs: 60 s unless DISTCACHE_SOAK_SECONDS says otherwise (a longer local run, or
    /// a shorter one while working on it).</summary>
    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(EnvironmentSeconds("DISTCACHE_SOAK_SECONDS", 60));

    /// <summary>How long the server lives between kills (DISTCACHE_SOAK_KILL_EVERY_SECONDS, default 4).</summary>
    private static readonly TimeSpan KillEvery = TimeSpan.FromSeconds(EnvironmentSeconds("DISTCACHE_SOAK_KILL_EVERY_SECONDS", 4));

    private const int Applications = 6;
    private const int KeysPerApplication = 40;
    private const int RetryMs = 100;

    // An answer later than this is a hang: dc_client answers DISCONNECTED at once while the server is away, and
    // its -timeout (2 s) bounds a request caught by a kill.
    private static readonly TimeSpan Hang = TimeSpan.FromSeconds(10);

    private static double EnvironmentSeconds(string name, double fallback) =>
        double.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && value > 0 ? value : fallback;

    /// <summary>Each key's data length follows from the key, so a GET answer can be checked with the id alone.</summary>
    private static int LengthOf(string id)
    {
        byte[] seed = SessionData.For(id, 2);
        return 50 + (((seed[0] << 8) | seed[1]) % 3000);
    }

    private sealed record Event(TimeSpan At, bool Served);

    [Fact]
    public async Task Dc_client_under_load_while_dc_server_is_killed_and_restarted_answers_everything_truthfully_and_recovers()
    {
        using var dir = new TempDir();
        string serverAddress = $"IP:127.0.0.1:{Tool.FreePort()}";
        string socket = dir.File("soak.sock");
        var servers = new List<Tool>();
        try
        {
            Tool server = Tool.Start("dc_server", "-listen", serverAddress, "-sessions", "0");
            servers.Add(server);
            await server.WaitForListenerAsync(serverAddress);
            await using Tool client = Tool.Start("dc_client", "-listen", "UNIX:" + socket, "-server", serverAddress,
                "-retry", RetryMs.ToString(CultureInfo.InvariantCulture), "-timeout", "2000");
            await LoadTests.WaitForLinkAsync(client);

            var clock = Stopwatch.StartNew();
            var events = new ConcurrentQueue<Event>();
            var problems = new ConcurrentQueue<string>();
            long[] counts = new long[4]; // requests, served, disconnected, data hits
            using var stop = new CancellationTokenSource();
            Task[] workers = [.. Enumerable.Range(0, Applications).Select(a => Task.Run(() => RunApplicationAsync(socket, a, clock, events, problems, counts, stop.Token)))];

            var kills = new List<TimeSpan>();
            var listening = new List<TimeSpan>();
            while (clock.Elapsed + KillEvery < Duration && problems.IsEmpty)
            {
                await Task.Delay(KillEvery);
                kills.Add(clock.Elapsed);
                server.Signal(Native.SIGKILL);
                await server.WaitForExitAsync(TimeSpan.FromSeconds(10));
                await Task.Delay(200);
                server = Tool.Start("dc_server", "-listen", serverAddress, "-sessions", "0");
                servers.Add(server);
                await server.WaitForListenerAsync(serverAddress);
                listening.Add(clock.Elapsed);
            }

            // The last server lives a little, so the last restart's recovery is measured too.
            await Task.Delay(TimeSpan.FromSeconds(1.5));
            await stop.CancelAsync();
            await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));

            Assert.True(problems.IsEmpty, $"{problems.Count} problems, e.g.:\n{string.Join('\n', problems.Take(10))}\ndc_client:\n{client.Stderr}");
            Assert.NotEmpty(kills);

            Event[] served = [.. events.Where(e => e.Served).OrderBy(e => e.At)];
            var recoveries = new List<double>();
            var outages = new List<double>();
            for (int i = 0; i < listening.Count; i++)
            {
                TimeSpan next = i + 1 < kills.Count ? kills[i + 1] : TimeSpan.MaxValue;
                Event? first = served.FirstOrDefault(e => e.At > listening[i] && e.At < next);
                Assert.True(first is not null, $"no successful operation after restart {i + 1} (listening at {listening[i].TotalSeconds:0.00} s)");
                recoveries.Add((first.At - listening[i]).TotalMilliseconds);
                outages.Add((first.At - kills[i]).TotalMilliseconds);
            }

            recoveries.Sort();
            outages.Sort();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{clock.Elapsed.TotalSeconds:0} s, {Applications} applications, {kills.Count} kills and restarts (every {KillEvery.TotalSeconds:0.#} s), -retry {RetryMs} ms"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"requests {counts[0]}: served {counts[1]} (GET hits checked {counts[3]}), DISCONNECTED {counts[2]}, unanswered 0, wrong data 0"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"recovery after restart (server listening -> first success): min {recoveries[0]:0} ms, median {recoveries[recoveries.Count / 2]:0} ms, max {recoveries[^1]:0} ms"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"outage seen by the applications (kill -> first success, including the 200 ms before the restart and its start-up): min {outages[0]:0} ms, median {outages[outages.Count / 2]:0} ms, max {outages[^1]:0} ms"));
            Assert.True(counts[3] > 0, "no GET ever hit: the data check checked nothing");
            Assert.False(client.HasExited, client.Stderr);
        }
        finally
        {
            foreach (Tool s in servers)
            {
                await s.DisposeAsync();
            }
        }
    }

    private static async Task RunApplicationAsync(string socket, int application, Stopwatch clock, ConcurrentQueue<Event> events, ConcurrentQueue<string> problems, long[] counts, CancellationToken stop)
    {
        var random = new Random(application);
        TestClient? app = null;
        try
        {
            app = await TestClient.ConnectAsync(socket);
            for (uint uid = 1; !stop.IsCancellationRequested; uid++)
            {
                string id = $"app{application}-key{random.Next(KeysPerApplication)}";
                byte[] idBytes = Encoding.UTF8.GetBytes(id);
                var op = (Operation)random.Next(4);
                byte[] request = op == Operation.Add ? Frames.Add(uid, id, SessionData.For(idBytes, LengthOf(id))) : Frames.IdRequest(uid, op, id);
                Interlocked.Increment(ref counts[0]);
                Received answer;
                try
                {
                    answer = await app.CallAsync(request, Hang);
                }
                catch (Exception e) when (e is OperationCanceledException or TimeoutException or EndOfStreamException or System.Net.Sockets.SocketException)
                {
                    problems.Enqueue($"{op.ToWireName()} {id} uid {uid} at {clock.Elapsed.TotalSeconds:0.00} s: no answer ({e.GetType().Name}: {e.Message})");
                    return;
                }

                string? problem = Check(answer, uid, op, idBytes);
                if (problem is not null)
                {
                    problems.Enqueue($"{op.ToWireName()} {id} uid {uid} at {clock.Elapsed.TotalSeconds:0.00} s: {problem}");
                    return;
                }

                bool disconnected = answer.Status == StatusCode.Disconnected;
                Interlocked.Increment(ref counts[disconnected ? 2 : 1]);
                if (op == Operation.Get && answer.Payload.Length > 1)
                {
                    Interlocked.Increment(ref counts[3]);
                }

                events.Enqueue(new Event(clock.Elapsed, !disconnected));
                if (disconnected)
                {
                    // The server is away: do not spin on immediate answers.
                    await Task.Delay(5, CancellationToken.None);
                }
            }
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or OperationCanceledException)
        {
            problems.Enqueue($"application {application}: {e.Message}");
        }
        finally
        {
            app?.Dispose();
        }
    }

    private static string? Check(Received answer, uint uid, Operation op, byte[] id)
    {
        if (answer.Uid != uid || answer.Operation != op)
        {
            return $"answered as uid {answer.Uid} {answer.Operation.ToWireName()}";
        }

        if (answer.Payload.Length == 1)
        {
            var status = (StatusCode)answer.Payload[0];
            bool allowed = status is StatusCode.Disconnected or StatusCode.Ok or StatusCode.NotOk
                || (op == Operation.Add && status == StatusCode.AddErrMatchingSession);
            return allowed && !(op == Operation.Get && status == StatusCode.Ok) ? null : $"status {answer.Payload[0]}";
        }

        if (op != Operation.Get)
        {
            return $"{answer.Payload.Length} bytes of data";
        }

        string text = Encoding.UTF8.GetString(id);
        return answer.Payload.Length == LengthOf(text) && SessionData.Matches(id, answer.Payload)
            ? null
            : $"{answer.Payload.Length} bytes that are not this session's data";
    }
}
