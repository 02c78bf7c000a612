using System.Collections.Concurrent;
using System.Diagnostics;
using Distcache.Hosting;
using Distcache.Networking;
using Microsoft.Extensions.Logging;

namespace Distcache.Apps.Snoop;

/// <summary>
/// dc_snoop: a transparent relay that shows the distcache traffic passing through it. Put it between a client and a
/// server (<c>-listen</c> where the client connects, <c>-server</c> where the real server is) and it prints one line
/// per message, while the bytes pass unchanged.
/// </summary>
internal static class Program
{
    private static readonly ValueOption<Address> ListenOption = new("listen", "address", "where to accept connections (IP:port, IP:host:port, UNIX:/path)", AddressParsers.Listen);
    private static readonly ValueOption<Address> ServerOption = new("server", "address", "where to forward each accepted connection", AddressParsers.Connect) { Aliases = ["connect"] };
    private static readonly FlagOption JsonFlag = new("json", "print one JSON object per message instead of a line of text");

    private static readonly CommandLineSpec Spec = new("dc_snoop", [ListenOption, ServerOption, JsonFlag])
    {
        Epilogue = """
            '-listen' and '-server' are required. Each accepted connection gets its own connection to the server; bytes
            are forwarded unchanged both ways and each decoded message is printed on stdout:
                  0.002341 #1 -> uid=2 ADD len=2611 frames=2 id=5c1f... timeout=61234ms data=2550
                  0.002597 #1 <- uid=2 ADD len=1 status=OK time=0.256ms
            A stream that does not decode is reported once and still forwarded. Errors go to stderr.
            """,
    };

    private static async Task<int> Main(string[] args)
    {
        if (!Spec.TryParse(args, out ParseResult options, out int exitCode))
        {
            return exitCode;
        }

        if (!options.TryGetValue(ListenOption, out Address? listenAddress))
        {
            return Spec.ReportError("must provide -listen");
        }

        if (!options.TryGetValue(ServerOption, out Address? serverAddress))
        {
            return Spec.ReportError("must provide -server");
        }

        using ILoggerFactory loggerFactory = ToolLogging.CreateFactory();
        ILogger logger = loggerFactory.CreateLogger("dc_snoop");

        using var shutdown = new CancellationTokenSource();
        using SignalHandlers signals = SignalHandlers.Register(shutdown, killable: false, logger);

        NetworkListener? listener = await ToolListener.TryListenAsync(listenAddress, new ListenerOptions { Logger = loggerFactory.CreateLogger<NetworkListener>() }).ConfigureAwait(false);
        if (listener is null)
        {
            return 1;
        }

        var sink = new OutputSink(Console.OpenStandardOutput(), logger);
        await using (listener.ConfigureAwait(false))
        {
            await AcceptLoopAsync(listener, serverAddress, sink, options.IsSet(JsonFlag), logger, shutdown.Token).ConfigureAwait(false);
        }

        await sink.CompleteAsync().ConfigureAwait(false);
        return 0;
    }

    private static async Task AcceptLoopAsync(NetworkListener listener, Address serverAddress, OutputSink sink, bool json, ILogger logger, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        var running = new ConcurrentDictionary<long, Task>();
        long number = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            NetworkConnection client;
            try
            {
                client = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            catch (NetworkException e)
            {
                // Typically out of descriptors; connections that close will free some, so wait and try again.
                Log.AcceptFailed(logger, listener.ToString(), e);
                await Task.Delay(TimeSpan.FromMilliseconds(100), CancellationToken.None).ConfigureAwait(false);
                continue;
            }

            long id = ++number;
            var session = new SnoopSession(id, client, serverAddress, sink, start, json, logger);

            // Registered before it starts, so that a session that ends at once cannot be removed before it is added.
            var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            running[id] = finished.Task;
            _ = Task.Run(async () =>
            {
                try
                {
                    await session.RunAsync(cancellationToken).ConfigureAwait(false);
                }
#pragma warning disable CA1031 // One connection's unexpected failure is logged; the snoop and its other connections go on.
                catch (Exception e)
#pragma warning restore CA1031
                {
                    Log.ConnectionError(logger, id, e);
                }
                finally
                {
                    running.TryRemove(id, out _);
                    finished.SetResult();
                }
            }, CancellationToken.None);
        }

        // Shutdown has reset every open connection (through the token); let their closing lines be written.
        await Task.WhenAll(running.Values).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
    }
}
