namespace Distcache.Compare;

/// <summary>Entry point: <c>load</c> drives dc_server, memcached or Redis, <c>cpu</c> prints a process's CPU seconds,
/// <c>rss</c> its resident set in KiB, <c>report</c> turns a results directory into a table and an SVG chart.</summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        if (args.Length == 0)
        {
            await Console.Error.WriteLineAsync("Usage: Distcache.Compare load|cpu PID|rss PID|report DIR MD SVG [options]");
            return 1;
        }

        try
        {
            return args[0] switch
            {
                "load" => await LoadGenerator.RunAsync(LoadOptions.Parse(args.AsSpan(1))),
                "cpu" => Print(ProcStat.CpuSeconds(int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture)).ToString("F2", System.Globalization.CultureInfo.InvariantCulture)),
                "rss" => Print(ProcStat.RssKiB(int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture)).ToString(System.Globalization.CultureInfo.InvariantCulture)),
                "report" => Report.Run(args[1], args[2], args[3]),
                _ => throw new ArgumentException($"unknown command {args[0]}"),
            };
        }
        catch (Exception e) when (e is ArgumentException or FormatException or IOException or IndexOutOfRangeException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            await Console.Error.WriteLineAsync($"Error, {e.Message}");
            return 1;
        }
    }

    private static int Print(string text)
    {
        Console.WriteLine(text);
        return 0;
    }
}
