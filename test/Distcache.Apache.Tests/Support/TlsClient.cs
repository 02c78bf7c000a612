using System.Text.Json;

namespace Distcache.Apache.Tests.Support;

/// <summary>
/// Runs tls_client.py (Debian's python3, standard library ssl) and returns its JSON report. The script does the
/// TLS work (handshakes offering a saved session, an HTTP GET on each connection so TLS 1.3 tickets arrive); the
/// tests judge the figures.
/// </summary>
internal static class TlsClient
{
    public const string Python = "/usr/bin/python3";

    public static string Script => Path.Combine(Tool.RepositoryRoot, "test", "Distcache.Apache.Tests", "tls_client.py");

    /// <summary>A session made on <paramref name="first"/>, offered to <paramref name="second"/> after <paramref name="delaySeconds"/>, <paramref name="count"/> times.</summary>
    public static Task<JsonElement> PairAsync(string tls, string serverName, string first, string second, int count = 1, double delaySeconds = 0) =>
        RunAsync(TimeSpan.FromSeconds(30 + (count * (delaySeconds + 5))),
            "pair", "--tls", tls, "--server-name", serverName, "--first", first, "--second", second,
            "--count", Invariant(count), "--delay", Invariant(delaySeconds));

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

    private static string Invariant(double value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<JsonElement> RunAsync(TimeSpan timeout, params string[] args)
    {
        await using Tool client = Tool.StartPath(Python, [Script, .. args]);
        await client.WaitForExitAsync(timeout);
        if (client.ExitCode != 0)
        {
            throw new InvalidOperationException($"tls_client.py {string.Join(' ', args)} exited with {client.ExitCode}:\n{client.Stderr}");
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

    public static int Int(this JsonElement report, string name) => report.GetProperty(name).GetInt32();

    public static double Double(this JsonElement report, string name) => report.GetProperty(name).GetDouble();

    public static bool Bool(this JsonElement report, string name) => report.GetProperty(name).GetBoolean();
}
