using System.Text.Json;

namespace Distcache.Tools.Tests.Support;

/// <summary>dc_snoop's <c>-json</c> output, one parsed object per line, grouped by connection.</summary>
internal sealed class SnoopOutput
{
    public SnoopOutput(string stdout)
    {
        foreach (string line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // Every line must be one JSON object; JsonDocument.Parse throws on anything else.
            using JsonDocument document = JsonDocument.Parse(line);
            Events.Add(document.RootElement.Clone());
        }
    }

    public List<JsonElement> Events { get; } = [];

    public IEnumerable<long> Connections => Events.Select(e => e.GetProperty("conn").GetInt64()).Distinct();

    public List<JsonElement> Of(long connection, string? type = null) =>
        [.. Events.Where(e => e.GetProperty("conn").GetInt64() == connection && (type is null || e.GetProperty("type").GetString() == type))];

    /// <summary>The connections that carried at least one message (the test harness's connect probes carry none).</summary>
    public List<long> BusyConnections() => [.. Connections.Where(c => Of(c, "request").Count > 0)];

    public static string Text(JsonElement element, string name) => element.GetProperty(name).GetString()!;
}
