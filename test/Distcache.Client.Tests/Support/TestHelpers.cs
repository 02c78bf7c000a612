using System.Diagnostics;
using Distcache.Networking;
using Microsoft.Extensions.Logging;

namespace Distcache.Client.Tests.Support;

internal static class TestHelpers
{
    /// <summary>Client options for tests: short timeouts and fast reconnects so that failures show quickly.</summary>
    public static DistcacheClientOptions Options(Address address, int timeoutMs = 5000, ILoggerFactory? logging = null) => new()
    {
        Address = address,
        OperationTimeout = TimeSpan.FromMilliseconds(timeoutMs),
        ConnectTimeout = TimeSpan.FromSeconds(5),
        ReconnectMinDelay = TimeSpan.FromMilliseconds(20),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(200),
        LoggerFactory = logging,
    };

    public static byte[] Bytes(string text) => System.Text.Encoding.UTF8.GetBytes(text);

    /// <summary>
    /// Retries <paramref name="operation"/> while it fails with a connection error (the client is reconnecting),
    /// for at most <paramref name="timeout"/>, with no help from the test: this is how an application sees the
    /// client recover by itself.
    /// </summary>
    /// <param name="operation">The operation to retry.</param>
    /// <param name="timeout">How long to keep trying (default 10 s).</param>
    /// <param name="retryTimeouts">Also retry requests that timed out: right after a fault is lifted the first request
    /// on a fresh link may take longer than a short test timeout on a busy machine.</param>
    public static async Task<T> EventuallyAsync<T>(Func<Task<T>> operation, TimeSpan? timeout = null, bool retryTimeouts = false)
    {
        var clock = Stopwatch.StartNew();
        var limit = timeout ?? TimeSpan.FromSeconds(10);
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return await operation();
            }
            catch (Exception e) when ((e is DistcacheConnectionException || (retryTimeouts && e is TimeoutException)) && clock.Elapsed < limit && attempt < 1000)
            {
                await Task.Delay(20);
            }
        }
    }

    /// <summary>
    /// Runs a sync call on a dedicated thread and measures it there, so that the time is the call's own: measured
    /// through the thread pool it would include any pool starvation caused by other tests blocking pool threads.
    /// </summary>
    public static async Task<(TException Exception, TimeSpan Elapsed)> TimedThrowsOnThreadAsync<TException>(Action call)
        where TException : Exception
    {
        var run = Task.Factory.StartNew(
            () =>
            {
                var clock = Stopwatch.StartNew();
                var exception = Record.Exception(call);
                return (exception, clock.Elapsed);
            },
            TaskCreationOptions.LongRunning);
        var (thrown, elapsed) = await run.WaitAsync(TimeSpan.FromSeconds(20));
        return (Assert.IsAssignableFrom<TException>(thrown), elapsed);
    }

    /// <summary>Measures how long an awaited failure takes, and returns the exception.</summary>
    public static async Task<(TException Exception, TimeSpan Elapsed)> TimedThrowsAsync<TException>(Func<Task> operation)
        where TException : Exception
    {
        var clock = Stopwatch.StartNew();
        var exception = await Assert.ThrowsAnyAsync<TException>(operation);
        return (exception, clock.Elapsed);
    }
}
