using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Distcache.Testing;

/// <summary>
/// Real redis-server processes on free loopback ports, for tests: one server, or a three-node cluster.
/// Every process is killed and its directory removed on dispose.
/// </summary>
public sealed class RedisServers : IAsyncDisposable
{
    private readonly List<Process> _processes = [];
    private readonly string _directory = Directory.CreateTempSubdirectory("distcache-redis-").FullName;
    private string[] _extraArgs = [];

    /// <summary>The ports the servers listen on.</summary>
    public List<int> Ports { get; } = [];

    /// <summary>host:port of every server.</summary>
    public IEnumerable<string> Endpoints => Ports.Select(p => $"127.0.0.1:{p}");

    /// <summary>Starts one standalone server, with <paramref name="extraArgs"/> added to its command line.</summary>
    public static async Task<RedisServers> StartAsync(params string[] extraArgs)
    {
        var servers = new RedisServers { _extraArgs = extraArgs };
        try
        {
            await servers.StartServerAsync(cluster: false);
            return servers;
        }
        catch
        {
            await servers.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts three cluster-enabled servers, joins them into one cluster without replicas and waits until
    /// the cluster says it is ok.</summary>
    public static async Task<RedisServers> StartClusterAsync()
    {
        var servers = new RedisServers();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                await servers.StartServerAsync(cluster: true);
            }

            string[] create = ["--cluster", "create", .. servers.Endpoints, "--cluster-replicas", "0", "--cluster-yes"];
            (int code, string output) = await RunCliAsync(create);
            if (code != 0)
            {
                throw new InvalidOperationException($"redis-cli --cluster create failed ({code}): {output}");
            }

            var deadline = Stopwatch.StartNew();
            foreach (int port in servers.Ports)
            {
                while (true)
                {
                    (_, string info) = await RunCliAsync(["-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "cluster", "info"]);
                    if (info.Contains("cluster_state:ok", StringComparison.Ordinal))
                    {
                        break;
                    }

                    if (deadline.Elapsed > TimeSpan.FromSeconds(60))
                    {
                        throw new TimeoutException($"The Redis cluster did not become ok: {info}");
                    }

                    await Task.Delay(100);
                }
            }

            return servers;
        }
        catch
        {
            await servers.DisposeAsync();
            throw;
        }
    }

    /// <summary>Kills the server on <paramref name="port"/> (to test outages).</summary>
    public void Kill(int port)
    {
        Process process = _processes[Ports.IndexOf(port)];
        process.Kill(entireProcessTree: true);
        process.WaitForExit(10_000);
    }

    /// <summary>Starts the server on <paramref name="port"/> again after <see cref="Kill"/>, on the same port.</summary>
    public async Task RestartAsync(int port)
    {
        int index = Ports.IndexOf(port);
        _processes[index].Dispose();
        _processes[index] = await LaunchAsync(port, cluster: false);
    }

    private async Task StartServerAsync(bool cluster)
    {
        for (int attempt = 0; ; attempt++)
        {
            int port = FreePort(needsBusPort: cluster);
            try
            {
                Process process = await LaunchAsync(port, cluster);
                _processes.Add(process);
                Ports.Add(port);
                return;
            }
            catch (InvalidOperationException) when (attempt < 5)
            {
                // Another process took the port between the probe and the bind: try another.
            }
        }
    }

    private async Task<Process> LaunchAsync(int port, bool cluster)
    {
        string p = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var start = new ProcessStartInfo("redis-server")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = _directory,
        };
        foreach (string arg in (string[])["--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", _directory, "--protected-mode", "no"])
        {
            start.ArgumentList.Add(arg);
        }

        foreach (string arg in _extraArgs)
        {
            start.ArgumentList.Add(arg);
        }

        if (cluster)
        {
            foreach (string arg in (string[])["--cluster-enabled", "yes", "--cluster-config-file", $"nodes-{p}.conf", "--cluster-node-timeout", "2000"])
            {
                start.ArgumentList.Add(arg);
            }
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        var output = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var waited = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                string text;
                lock (output)
                {
                    text = output.ToString();
                }

                process.Dispose();
                throw new InvalidOperationException($"redis-server on port {p} exited: {text}");
            }

            (_, string pong) = await RunCliAsync(["-p", p, "ping"]);
            // A server with a password answers NOAUTH: it is up all the same.
            if (pong.Contains("PONG", StringComparison.Ordinal) || pong.Contains("NOAUTH", StringComparison.Ordinal))
            {
                return process;
            }

            if (waited.Elapsed > TimeSpan.FromSeconds(30))
            {
                process.Kill(entireProcessTree: true);
                process.Dispose();
                throw new TimeoutException($"redis-server on port {p} did not answer PING");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>A loopback port that was free a moment ago.</summary>
    public static int FreePort() => FreePort(needsBusPort: false);

    private static int FreePort(bool needsBusPort)
    {
        while (true)
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            int port = ((IPEndPoint)probe.LocalEndPoint!).Port;
            if (!needsBusPort)
            {
                return port;
            }

            // A cluster node also listens on port + 10000 for its bus.
            if (port + 10000 > 65535)
            {
                continue;
            }

            try
            {
                using var bus = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                bus.Bind(new IPEndPoint(IPAddress.Loopback, port + 10000));
                return port;
            }
            catch (SocketException)
            {
            }
        }
    }

    /// <summary>Runs redis-cli with a deadline; returns its exit code and output.</summary>
    public static async Task<(int Code, string Output)> RunCliAsync(IEnumerable<string> args)
    {
        var start = new ProcessStartInfo("redis-cli") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("redis-cli " + string.Join(' ', start.ArgumentList));
        }

        return (process.ExitCode, await stdout + await stderr);
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        foreach (Process process in _processes)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit(10_000);
                }
            }
            catch (InvalidOperationException)
            {
            }

            process.Dispose();
        }

        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }

        return ValueTask.CompletedTask;
    }
}
