using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;

namespace Distcache.Testing;

/// <summary>
/// Runs tls_client.py (Debian's python3, standard library ssl) and returns its JSON report. The script does the
/// TLS work (handshakes offering a saved session, an HTTP GET on each connection so TLS 1.3 tickets arrive); the
/// tests judge the figures. The script is copied next to every test assembly that references this library.
/// </summary>
public static class TlsClient
{
    /// <summary>The interpreter: Debian's, whose ssl module is built against the system's OpenSSL.</summary>
    public const string Python = "/usr/bin/python3";

    /// <summary>The script, next to the running test assembly.</summary>
    public static string Script => Path.Combine(AppContext.BaseDirectory, "tls_client.py");

    /// <summary>A session made on <paramref name="first"/>, offered to <paramref name="second"/> after <paramref name="delaySeconds"/>, <paramref name="count"/> times.</summary>
    /// <returns>The report: <c>pairs</c>, <c>resumed</c> (also as <c>reused</c>), <c>full</c>, <c>failed</c>, <c>details</c>.</returns>
    public static Task<JsonElement> PairAsync(string tls, string serverName, string first, string second, int count = 1, double delaySeconds = 0) =>
        RunAsync(TimeSpan.FromSeconds(30 + (count * (delaySeconds + 5))),
            "pair", "--tls", tls, "--server-name", serverName, "--first", first, "--second", second,
            "--count", Invariant(count), "--delay", Invariant(delaySeconds));

    /// <summary>
    /// Starts <c>pair</c> in stages: <paramref name="countPerStage"/> sessions per stage are made on
    /// <paramref name="first"/> at once; each stage's sessions are offered to <paramref name="second"/> only when the
    /// test releases that stage, so that the test can change the servers in between.
    /// </summary>
    /// <param name="stages">How many stages.</param>
    /// <param name="directory">Where the wait files go (an existing folder of the test).</param>
    /// <returns>The running client; dispose it.</returns>
    public static PairsInStages StartPairsInStages(string tls, string serverName, string first, string second, int countPerStage, int stages, string directory)
    {
        string[] waitFiles = [.. Enumerable.Range(1, stages).Select(i => Path.Combine(directory, $"stage-{i}-{Guid.NewGuid():N}"))];
        Tool client = Tool.StartPath(Python,
            [Script, "pair", "--tls", tls, "--server-name", serverName, "--first", first, "--second", second,
             "--count", Invariant(countPerStage), .. waitFiles.SelectMany(file => new[] { "--wait-file", file })]);
        return new PairsInStages(client, waitFiles);
    }

    /// <summary><paramref name="pairs"/> cross-server resumptions over <paramref name="clients"/> concurrent clients.</summary>
    public static Task<JsonElement> LoadAsync(string tls, string serverName, string first, string second, int clients, int pairs) =>
        RunAsync(TimeSpan.FromSeconds(120),
            "load", "--tls", tls, "--server-name", serverName, "--first", first, "--second", second,
            "--clients", Invariant(clients), "--pairs", Invariant(pairs));

    /// <summary><paramref name="count"/> fresh full handshakes on one server, one after the other, each timed.</summary>
    public static Task<JsonElement> HandshakesAsync(string tls, string serverName, string target, int count, double maxMs) =>
        RunAsync(TimeSpan.FromSeconds(30 + (count * 10)),
            "handshakes", "--tls", tls, "--server-name", serverName, "--target", target,
            "--count", Invariant(count), "--max-ms", Invariant(maxMs));

    /// <summary>One GET of <paramref name="path"/>; the report's <c>status</c> and <c>body</c> are the answer's.</summary>
    public static Task<JsonElement> FetchAsync(string tls, string serverName, string target, string path) =>
        RunAsync(TimeSpan.FromSeconds(30), "fetch", "--tls", tls, "--server-name", serverName, "--target", target, "--path", path);

    /// <summary><paramref name="count"/> full handshakes on <paramref name="target"/>, each with the session ticket the
    /// client would offer next (the report's <c>tickets[i].ticket</c>, hex).</summary>
    public static Task<JsonElement> TicketsAsync(string tls, string serverName, string target, int count) =>
        RunAsync(TimeSpan.FromSeconds(30 + (count * 5)), "tickets", "--tls", tls, "--server-name", serverName, "--target", target, "--count", Invariant(count));

    private static string Invariant(double value) => value.ToString(CultureInfo.InvariantCulture);

    private static async Task<JsonElement> RunAsync(TimeSpan timeout, params string[] args)
    {
        await using Tool client = Tool.StartPath(Python, [Script, .. args]);
        await client.WaitForExitAsync(timeout);
        return Report(client, string.Join(' ', args));
    }

    /// <summary>The JSON report of a finished run of the script; throws with its standard error if there is none.</summary>
    internal static JsonElement Report(Tool client, string what)
    {
        if (client.ExitCode != 0)
        {
            throw new InvalidOperationException($"tls_client.py {what} exited with {client.ExitCode}:\n{client.Stderr}");
        }

        string json = client.Stdout.Trim();
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"tls_client.py printed no JSON ({e.Message}):\n{json}\n{client.Stderr}");
        }
    }

    /// <summary>An integer of a report.</summary>
    [SuppressMessage("Naming", "CA1720", Justification = "Short names for the tests' many reads of a report, after the JSON value's type.")]
    public static int Int(this JsonElement report, string name) => report.GetProperty(name).GetInt32();

    /// <summary>A number of a report.</summary>
    [SuppressMessage("Naming", "CA1720", Justification = "Short names for the tests' many reads of a report, after the JSON value's type.")]
    public static double Double(this JsonElement report, string name) => report.GetProperty(name).GetDouble();

    /// <summary>A flag of a report.</summary>
    public static bool Bool(this JsonElement report, string name) => report.GetProperty(name).GetBoolean();
}

/// <summary>
/// tls_client.py's <c>pair</c> in stages (see <see cref="TlsClient.StartPairsInStages"/>): the script announces each
/// stage with a file of its own (WAITFILE.waiting) once everything before it is done, and offers the stage's sessions
/// when the test creates WAITFILE.
/// </summary>
public sealed class PairsInStages : IAsyncDisposable
{
    private readonly Tool _client;
    private readonly string[] _waitFiles;

    internal PairsInStages(Tool client, string[] waitFiles)
    {
        _client = client;
        _waitFiles = waitFiles;
    }

    /// <summary>Waits until the script waits for stage <paramref name="stage"/> (1-based): every session is made,
    /// and every earlier stage is over.</summary>
    public Task WaitUntilWaitingAsync(int stage, TimeSpan timeout) =>
        _client.WaitUntilAsync(() => File.Exists(WaitFile(stage) + ".waiting"), timeout, $"tls_client.py waiting for stage {stage}");

    /// <summary>Lets the script offer stage <paramref name="stage"/>'s sessions.</summary>
    public void Release(int stage) => File.WriteAllText(WaitFile(stage), "");

    /// <summary>Waits for the script to end (every stage released) and returns its report: <c>stages[i]</c> holds
    /// stage i+1's <c>pairs</c>, <c>resumed</c>, <c>full</c>, <c>failed</c> and <c>details</c>.</summary>
    public async Task<JsonElement> ReportAsync(TimeSpan timeout)
    {
        await _client.WaitForExitAsync(timeout);
        return TlsClient.Report(_client, "pair in stages");
    }

    private string WaitFile(int stage) => _waitFiles[stage - 1];

    /// <summary>Stops the script if it still runs and removes the wait files.</summary>
    public async ValueTask DisposeAsync()
    {
        await _client.DisposeAsync();
        foreach (string file in _waitFiles)
        {
            File.Delete(file);
            File.Delete(file + ".waiting");
        }
    }
}
