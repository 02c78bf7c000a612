using System.Globalization;
using System.Text;
using System.Text.Json;
using Distcache.Networking;

namespace Distcache.Apps.Test;

/// <summary>One line of a Prometheus text exposition: a metric name, its labels and its value.</summary>
internal sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

/// <summary>
/// <c>dc_test -stats ADDRESS</c>: reads the <c>-metrics</c> endpoint of a running dc_server or dc_client and prints its
/// figures, as a summary for people or (<c>-json</c>) as JSON for scripts.
/// </summary>
internal static class Stats
{
    private static readonly TimeSpan ScrapeTimeout = TimeSpan.FromSeconds(10);
    private static readonly string[] Operations = ["add", "get", "remove", "have"];

    public static async Task<int> RunAsync(Address endpoint, string? jsonPath, CancellationToken cancellationToken)
    {
        string body;
        try
        {
            body = await ScrapeAsync(endpoint, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NetworkException or IOException or OperationCanceledException or InvalidDataException)
        {
            await Console.Error.WriteLineAsync($"Error, cannot read the metrics at {endpoint}: {(e is OperationCanceledException ? $"no answer within {ScrapeTimeout.TotalSeconds:0} s" : e.Message)}").ConfigureAwait(false);
            return 1;
        }

        List<Sample> samples;
        try
        {
            samples = Parse(body);
        }
        catch (FormatException e)
        {
            await Console.Error.WriteLineAsync($"Error, {endpoint} did not answer with Prometheus metrics: {e.Message}").ConfigureAwait(false);
            return 1;
        }

        string? tool = samples.Any(s => s.Name.StartsWith("distcache_server_", StringComparison.Ordinal)) ? "dc_server"
            : samples.Any(s => s.Name.StartsWith("distcache_proxy_", StringComparison.Ordinal)) ? "dc_client"
            : null;
        if (tool is null)
        {
            await Console.Error.WriteLineAsync($"Error, {endpoint} serves no distcache metrics (neither distcache_server_* nor distcache_proxy_*)").ConfigureAwait(false);
            return 1;
        }

        if (jsonPath is not null)
        {
            string json = Json(endpoint, tool, samples);
            if (jsonPath == "-")
            {
                await Console.Out.WriteLineAsync(json).ConfigureAwait(false);
                return 0;
            }

            await File.WriteAllTextAsync(jsonPath, json + "\n", cancellationToken).ConfigureAwait(false);
        }

        await Console.Out.WriteAsync(tool == "dc_server" ? ServerText(endpoint, samples) : ProxyText(endpoint, samples)).ConfigureAwait(false);
        return 0;
    }

    /// <summary>GET /metrics over the project's own connection (so the address syntax and its errors are the tools').</summary>
    internal static async Task<string> ScrapeAsync(Address endpoint, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(ScrapeTimeout);
        NetworkConnection connection = await NetworkConnection.ConnectAsync(endpoint, deadline.Token).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            Stream stream = connection.Stream;
            string host = endpoint.Host ?? "localhost";
            byte[] request = Encoding.ASCII.GetBytes($"GET /metrics HTTP/1.1\r\nHost: {host}:{endpoint.Port}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
            await stream.WriteAsync(request, deadline.Token).ConfigureAwait(false);
            using var response = new MemoryStream();
            await stream.CopyToAsync(response, deadline.Token).ConfigureAwait(false);
            string text = Encoding.UTF8.GetString(response.GetBuffer(), 0, (int)response.Length);
            int headEnd = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (headEnd < 0)
            {
                throw new InvalidDataException("the answer is not HTTP");
            }

            string statusLine = text[..text.IndexOf("\r\n", StringComparison.Ordinal)];
            if (!statusLine.StartsWith("HTTP/1.", StringComparison.Ordinal) || statusLine.Split(' ') is not [_, "200", ..])
            {
                throw new InvalidDataException($"it answered '{statusLine}'");
            }

            return text[(headEnd + 4)..];
        }
    }

    /// <summary>Reads the sample lines of a Prometheus text exposition (comments and blank lines skipped).</summary>
    /// <exception cref="FormatException">A line is not a sample.</exception>
    internal static List<Sample> Parse(string text)
    {
        var samples = new List<Sample>();
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            int i = 0;
            while (i < line.Length && line[i] is not ('{' or ' '))
            {
                i++;
            }

            string name = line[..i];
            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            if (i < line.Length && line[i] == '{')
            {
                i++;
                while (i < line.Length && line[i] != '}')
                {
                    int equals = line.IndexOf('=', i);
                    if (equals < 0 || equals + 1 >= line.Length || line[equals + 1] != '"')
                    {
                        throw new FormatException($"bad labels in '{line}'");
                    }

                    string key = line[i..equals];
                    var value = new StringBuilder();
                    int j = equals + 2;
                    for (; j < line.Length && line[j] != '"'; j++)
                    {
                        if (line[j] == '\\' && j + 1 < line.Length)
                        {
                            j++;
                            value.Append(line[j] == 'n' ? '\n' : line[j]);
                        }
                        else
                        {
                            value.Append(line[j]);
                        }
                    }

                    if (j >= line.Length)
                    {
                        throw new FormatException($"unterminated label value in '{line}'");
                    }

                    labels[key] = value.ToString();
                    i = j + 1;
                    if (i < line.Length && line[i] == ',')
                    {
                        i++;
                    }
                }

                i++;
            }

            string[] rest = line[Math.Min(i, line.Length)..].Trim().Split(' ');
            if (name.Length == 0 || rest.Length == 0 || !TryParseValue(rest[0], out double number))
            {
                throw new FormatException($"not a sample: '{line}'");
            }

            samples.Add(new Sample(name, labels, number));
        }

        return samples;
    }

    private static bool TryParseValue(string text, out double value)
    {
        switch (text)
        {
            case "NaN":
                value = double.NaN;
                return true;
            case "+Inf":
                value = double.PositiveInfinity;
                return true;
            case "-Inf":
                value = double.NegativeInfinity;
                return true;
            default:
                return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
        }
    }

    private static double Sum(List<Sample> samples, string name, params (string Key, string Value)[] where) =>
        samples.Where(s => s.Name == name && where.All(w => s.Labels.TryGetValue(w.Key, out string? v) && v == w.Value)).Sum(s => s.Value);

    private static bool Has(List<Sample> samples, string name) => samples.Any(s => s.Name == name);

    /// <summary>
    /// dc_client's answer times from its histogram, all operations together: the mean, and the bound of the first
    /// bucket that holds 99% of the answers (the histogram knows no more precise a percentile).
    /// </summary>
    private static (double Mean, double P99Bound, double Count)? AnswerTimes(List<Sample> samples)
    {
        const string Name = "distcache_proxy_request_duration_seconds";
        double count = Sum(samples, Name + "_count");
        if (count <= 0)
        {
            return null;
        }

        (double Bound, double Count)[] buckets = [.. samples
            .Where(s => s.Name == Name + "_bucket" && s.Labels.ContainsKey("le"))
            .GroupBy(s => s.Labels["le"] == "+Inf" ? double.PositiveInfinity : double.Parse(s.Labels["le"], CultureInfo.InvariantCulture))
            .Select(g => (Bound: g.Key, Count: g.Sum(s => s.Value)))
            .OrderBy(b => b.Bound)];
        double p99 = buckets.FirstOrDefault(b => b.Count >= 0.99 * count, (Bound: double.PositiveInfinity, Count: count)).Bound;
        return (Sum(samples, Name + "_sum") / count, p99, count);
    }

    private static string N(double value) => value.ToString("0.##", CultureInfo.InvariantCulture);

    private static double? Ratio(double part, double whole) => whole > 0 ? part / whole : null;

    private static string Percent(double? ratio) => ratio is { } r ? (r * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%" : "n/a";

    private static string ServerText(Address endpoint, List<Sample> s)
    {
        double uptime = Sum(s, "distcache_server_uptime_seconds");
        double total = Sum(s, "distcache_server_operations_total");
        double hits = Sum(s, "distcache_server_operations_total", ("distcache_operation", "get"), ("distcache_outcome", "ok"));
        double misses = Sum(s, "distcache_server_operations_total", ("distcache_operation", "get"), ("distcache_outcome", "not_found"));
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"dc_server metrics at {endpoint}, up {N(uptime)} s\n");
        text.Append(CultureInfo.InvariantCulture, $"operations   {N(total)} ({N(uptime > 0 ? total / uptime : 0)}/s since start)\n");
        foreach (string op in Operations)
        {
            double Of(string outcome) => Sum(s, "distcache_server_operations_total", ("distcache_operation", op), ("distcache_outcome", outcome));
            string detail = op == "add"
                ? $"stored {N(Of("ok"))}, exists {N(Of("exists"))}"
                : $"found {N(Of("ok"))}, not found {N(Of("not_found"))}";
            text.Append(CultureInfo.InvariantCulture, $"  {op,-10} {N(Sum(s, "distcache_server_operations_total", ("distcache_operation", op)))}: {detail}, invalid {N(Of("invalid"))}, failed {N(Of("failed"))}\n");
        }

        text.Append(CultureInfo.InvariantCulture, $"hit ratio    {Percent(Ratio(hits, hits + misses))} ({N(hits)} hits, {N(misses)} misses)\n");
        text.Append(CultureInfo.InvariantCulture, $"sessions     {N(Sum(s, "distcache_server_sessions"))}");
        if (Has(s, "distcache_server_storage_usage_bytes"))
        {
            double limit = Sum(s, "distcache_server_sessions_limit");
            text.Append(CultureInfo.InvariantCulture, $" of {(limit > 0 ? N(limit) : "unlimited")}, {N(Sum(s, "distcache_server_storage_usage_bytes"))} of {N(Sum(s, "distcache_server_storage_limit_bytes"))} bytes\n");
            text.Append(CultureInfo.InvariantCulture, $"evictions    {N(Sum(s, "distcache_server_evictions_total"))} ({N(Sum(s, "distcache_server_evictions_total", ("distcache_eviction_reason", "sessions")))} at -sessions, {N(Sum(s, "distcache_server_evictions_total", ("distcache_eviction_reason", "memory")))} at -memory), {N(Sum(s, "distcache_server_expirations_total"))} expired\n");
        }
        else
        {
            text.Append(" (counted by the store)\n");
        }

        text.Append(CultureInfo.InvariantCulture, $"connections  {N(Sum(s, "distcache_server_connections_open"))} open, {N(Sum(s, "distcache_server_connections_accepted_total"))} accepted, {N(Sum(s, "distcache_server_connections_refused_total"))} refused\n");
        text.Append(CultureInfo.InvariantCulture, $"closed for   {N(Sum(s, "distcache_server_protocol_violations_total"))} protocol violations, timeouts: {N(Sum(s, "distcache_server_connections_timeouts_total", ("distcache_timeout", "message")))} message, {N(Sum(s, "distcache_server_connections_timeouts_total", ("distcache_timeout", "idle")))} idle, {N(Sum(s, "distcache_server_connections_timeouts_total", ("distcache_timeout", "write")))} write; {N(Sum(s, "distcache_server_tls_handshake_failures_total"))} TLS handshakes failed\n");
        return text.ToString();
    }

    private static string ProxyText(Address endpoint, List<Sample> s)
    {
        double uptime = Sum(s, "distcache_proxy_uptime_seconds");
        double requests = Sum(s, "distcache_proxy_requests_total");
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"dc_client metrics at {endpoint}, up {N(uptime)} s\n");
        text.Append(CultureInfo.InvariantCulture, $"requests     {N(requests)} ({N(uptime > 0 ? requests / uptime : 0)}/s since start), {N(Sum(s, "distcache_proxy_requests_forwarded_total"))} forwarded, {N(Sum(s, "distcache_proxy_requests_disconnected_total"))} answered DISCONNECTED\n");
        text.Append(CultureInfo.InvariantCulture, $"  by kind    {string.Join(", ", Operations.Select(op => $"{op} {N(Sum(s, "distcache_proxy_requests_total", ("distcache_operation", op)))}"))}\n");
        if (AnswerTimes(s) is { } times)
        {
            text.Append(CultureInfo.InvariantCulture, $"answer time  mean {N(times.Mean * 1000)} ms, 99% within {(double.IsPositiveInfinity(times.P99Bound) ? "more than the largest bucket" : N(times.P99Bound * 1000) + " ms")} ({N(times.Count)} answered by servers)\n");
        }

        text.Append(CultureInfo.InvariantCulture, $"responses    {N(Sum(s, "distcache_proxy_responses_total", ("distcache_outcome", "delivered")))} delivered, {N(Sum(s, "distcache_proxy_responses_total", ("distcache_outcome", "discarded")))} discarded, {N(Sum(s, "distcache_proxy_responses_total", ("distcache_outcome", "unknown")))} unknown\n");
        text.Append(CultureInfo.InvariantCulture, $"connections  {N(Sum(s, "distcache_proxy_connections_open"))} open, {N(Sum(s, "distcache_proxy_connections_accepted_total"))} accepted; dropped: {N(Sum(s, "distcache_proxy_connections_dropped_total", ("distcache_reason", "protocol_violation")))} protocol violations, {N(Sum(s, "distcache_proxy_connections_dropped_total", ("distcache_reason", "overflow")))} overflowed, {N(Sum(s, "distcache_proxy_connections_dropped_total", ("distcache_reason", "idle")))} idle\n");
        foreach (Sample link in s.Where(x => x.Name == "distcache_proxy_link_up"))
        {
            string server = link.Labels.TryGetValue("distcache_server", out string? name) ? name : "?";
            text.Append(CultureInfo.InvariantCulture, $"link         {server} {(link.Value > 0 ? "up" : "DOWN")}, {N(Sum(s, "distcache_proxy_link_connects_total", ("distcache_server", server)))} connects, {N(Sum(s, "distcache_proxy_link_losses_total", ("distcache_server", server)))} losses, {N(Sum(s, "distcache_proxy_link_in_flight", ("distcache_server", server)))} in flight\n");
        }

        return text.ToString();
    }

    private static string Json(Address endpoint, string tool, List<Sample> s)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("endpoint", endpoint.ToString());
            json.WriteString("tool", tool);
            json.WriteStartObject("summary");
            if (tool == "dc_server")
            {
                double uptime = Sum(s, "distcache_server_uptime_seconds");
                double total = Sum(s, "distcache_server_operations_total");
                double hits = Sum(s, "distcache_server_operations_total", ("distcache_operation", "get"), ("distcache_outcome", "ok"));
                double misses = Sum(s, "distcache_server_operations_total", ("distcache_operation", "get"), ("distcache_outcome", "not_found"));
                json.WriteNumber("uptime_seconds", uptime);
                json.WriteNumber("operations", total);
                json.WriteNumber("operations_per_second", uptime > 0 ? total / uptime : 0);
                json.WriteStartObject("operations_by_type");
                foreach (string op in Operations)
                {
                    json.WriteStartObject(op);
                    foreach (Sample sample in s.Where(x => x.Name == "distcache_server_operations_total" && x.Labels.GetValueOrDefault("distcache_operation") == op))
                    {
                        json.WriteNumber(sample.Labels.GetValueOrDefault("distcache_outcome", "?"), sample.Value);
                    }

                    json.WriteEndObject();
                }

                json.WriteEndObject();
                json.WriteNumber("hits", hits);
                json.WriteNumber("misses", misses);
                if (Ratio(hits, hits + misses) is { } ratio)
                {
                    json.WriteNumber("hit_ratio", ratio);
                }
                else
                {
                    json.WriteNull("hit_ratio");
                }

                json.WriteNumber("sessions", Sum(s, "distcache_server_sessions"));
                WriteIfPresent(json, s, "bytes", "distcache_server_storage_usage_bytes");
                WriteIfPresent(json, s, "evictions", "distcache_server_evictions_total");
                WriteIfPresent(json, s, "expirations", "distcache_server_expirations_total");
                json.WriteNumber("connections_open", Sum(s, "distcache_server_connections_open"));
                json.WriteNumber("connections_accepted", Sum(s, "distcache_server_connections_accepted_total"));
                json.WriteNumber("connections_refused", Sum(s, "distcache_server_connections_refused_total"));
                json.WriteNumber("protocol_violations", Sum(s, "distcache_server_protocol_violations_total"));
            }
            else
            {
                double uptime = Sum(s, "distcache_proxy_uptime_seconds");
                double requests = Sum(s, "distcache_proxy_requests_total");
                json.WriteNumber("uptime_seconds", uptime);
                json.WriteNumber("requests", requests);
                json.WriteNumber("requests_per_second", uptime > 0 ? requests / uptime : 0);
                json.WriteStartObject("requests_by_type");
                foreach (string op in Operations)
                {
                    json.WriteNumber(op, Sum(s, "distcache_proxy_requests_total", ("distcache_operation", op)));
                }

                json.WriteEndObject();
                if (AnswerTimes(s) is { } times)
                {
                    json.WriteNumber("answer_seconds_mean", times.Mean);
                    if (!double.IsPositiveInfinity(times.P99Bound))
                    {
                        json.WriteNumber("answer_seconds_p99_at_most", times.P99Bound);
                    }
                }

                json.WriteNumber("forwarded", Sum(s, "distcache_proxy_requests_forwarded_total"));
                json.WriteNumber("answered_disconnected", Sum(s, "distcache_proxy_requests_disconnected_total"));
                json.WriteNumber("connections_open", Sum(s, "distcache_proxy_connections_open"));
                json.WriteNumber("connections_accepted", Sum(s, "distcache_proxy_connections_accepted_total"));
                json.WriteStartArray("links");
                foreach (Sample link in s.Where(x => x.Name == "distcache_proxy_link_up"))
                {
                    string server = link.Labels.GetValueOrDefault("distcache_server", "?");
                    json.WriteStartObject();
                    json.WriteString("server", server);
                    json.WriteBoolean("up", link.Value > 0);
                    json.WriteNumber("connects", Sum(s, "distcache_proxy_link_connects_total", ("distcache_server", server)));
                    json.WriteNumber("losses", Sum(s, "distcache_proxy_link_losses_total", ("distcache_server", server)));
                    json.WriteNumber("in_flight", Sum(s, "distcache_proxy_link_in_flight", ("distcache_server", server)));
                    json.WriteEndObject();
                }

                json.WriteEndArray();
            }

            json.WriteEndObject();

            // Every sample as scraped, for figures the summary leaves out.
            json.WriteStartArray("metrics");
            foreach (Sample sample in s)
            {
                json.WriteStartObject();
                json.WriteString("name", sample.Name);
                json.WriteStartObject("labels");
                foreach ((string key, string value) in sample.Labels)
                {
                    json.WriteString(key, value);
                }

                json.WriteEndObject();
                if (double.IsFinite(sample.Value))
                {
                    json.WriteNumber("value", sample.Value);
                }
                else
                {
                    json.WriteString("value", sample.Value.ToString(CultureInfo.InvariantCulture));
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static void WriteIfPresent(Utf8JsonWriter json, List<Sample> s, string property, string metric)
    {
        if (Has(s, metric))
        {
            json.WriteNumber(property, Sum(s, metric));
        }
    }
}
