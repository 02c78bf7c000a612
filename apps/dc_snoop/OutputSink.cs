using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Distcache.Apps.Snoop;

/// <summary>
/// The one writer of stdout. Forwarding loops hand it finished batches of lines and go straight back to moving
/// bytes, so a slow terminal or pipe reader never holds traffic up; batches keep the order they were handed in.
/// </summary>
internal sealed class OutputSink
{
    private readonly Channel<byte[]> _batches = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Stream _output;
    private readonly ILogger _logger;
    private readonly Task _writing;

    public OutputSink(Stream output, ILogger logger)
    {
        _output = output;
        _logger = logger;
        _writing = WriteLoopAsync();
    }

    /// <summary>Queues a batch of complete lines. Never blocks.</summary>
    public void Write(byte[] batch) => _batches.Writer.TryWrite(batch);

    /// <summary>Writes what is queued and stops.</summary>
    public async Task CompleteAsync()
    {
        _batches.Writer.TryComplete();
        await _writing.ConfigureAwait(false);
    }

    private async Task WriteLoopAsync()
    {
        bool failed = false;
        var reader = _batches.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out byte[]? batch))
            {
                if (failed)
                {
                    continue;
                }

                try
                {
                    await _output.WriteAsync(batch).ConfigureAwait(false);
                }
                catch (IOException e)
                {
                    // The reader of a pipe went away (| head): keep draining the queue so memory stays bounded,
                    // and keep forwarding, which is the part the endpoints depend on.
                    failed = true;
                    Log.OutputFailed(_logger, e.Message);
                }
            }

            // Flush only when the queue is empty, so a burst of traffic costs one write per burst, while a single
            // line still appears at once for someone watching.
            if (!failed)
            {
                try
                {
                    await _output.FlushAsync().ConfigureAwait(false);
                }
                catch (IOException e)
                {
                    failed = true;
                    Log.OutputFailed(_logger, e.Message);
                }
            }
        }
    }
}
