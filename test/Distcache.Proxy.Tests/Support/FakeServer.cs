using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Channels;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Proxy.Tests.Support;

/// <summary>
/// A scripted stand-in for dc_server on loopback TCP: the test sees each link the proxy opens and decides what
/// (if anything) goes back on it.
/// </summary>
internal sealed class FakeServer : IAsyncDisposable
{
    private readonly NetworkListener _listener;
    private readonly Channel<FakeLink> _accepted = Channel.CreateUnbounded<FakeLink>();
    private readonly List<FakeLink> _links = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _accepting = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _acceptLoop;

    /// <summary>Starts listening; with <paramref name="accepting"/> false, nothing is accepted until <see cref="StartAccepting"/>.</summary>
    public FakeServer(int backlog = 511, bool accepting = true)
    {
        _listener = NetworkListener.Listen(Address.Parse("IP:127.0.0.1:0"), new ListenerOptions { Backlog = backlog });
        if (accepting)
        {
            _accepting.SetResult();
        }

        _acceptLoop = AcceptLoopAsync();
    }

    public Address Address => _listener.LocalAddress;

    public int Accepted
    {
        get
        {
            lock (_links)
            {
                return _links.Count;
            }
        }
    }

    public void StartAccepting() => _accepting.TrySetResult();

    public async Task<FakeLink> NextLinkAsync(TimeSpan? timeout = null) =>
        await _accepted.Reader.ReadAsync().AsTask().WaitAsync(timeout ?? TestClient.DefaultTimeout);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _acceptLoop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        List<FakeLink> links;
        lock (_links)
        {
            links = [.. _links];
        }

        foreach (FakeLink link in links)
        {
            await link.DisposeAsync();
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        await _accepting.Task.WaitAsync(_stop.Token);
        while (!_stop.IsCancellationRequested)
        {
            NetworkConnection connection = await _listener.AcceptAsync(_stop.Token);
            var link = new FakeLink(connection);
            lock (_links)
            {
                _links.Add(link);
            }

            _accepted.Writer.TryWrite(link);
        }
    }
}

/// <summary>One link from the proxy, as the fake server sees it.</summary>
internal sealed class FakeLink(NetworkConnection connection) : IAsyncDisposable
{
    private readonly MessageDecoder _decoder = new(MessageDirection.Requests);

    public NetworkConnection Connection { get; } = connection;

    /// <summary>The next request the proxy forwarded; fails after the timeout or if the link closes.</summary>
    public async Task<Received> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TestClient.DefaultTimeout);
        PipeReader input = Connection.Input;
        while (true)
        {
            ReadResult read = await input.ReadAsync(cts.Token);
            if (TryDecode(read.Buffer, out Received? message, out SequencePosition consumed))
            {
                input.AdvanceTo(consumed);
                return message!;
            }

            input.AdvanceTo(read.Buffer.Start, read.Buffer.End);
            if (read.IsCompleted)
            {
                throw new EndOfStreamException("the proxy closed the link");
            }
        }
    }

    /// <summary>True if the proxy closes (or resets) the link within the time.</summary>
    public async Task<bool> ClosesWithinAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        PipeReader input = Connection.Input;
        try
        {
            while (true)
            {
                ReadResult read = await input.ReadAsync(cts.Token);
                input.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted)
                {
                    return true;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    public async Task SendAsync(byte[] bytes)
    {
        using var cts = new CancellationTokenSource(TestClient.DefaultTimeout);
        await Connection.Output.WriteAsync(bytes, cts.Token);
    }

    public ValueTask DisposeAsync()
    {
        Connection.Abort();
        return Connection.DisposeAsync();
    }

    private bool TryDecode(ReadOnlySequence<byte> buffer, out Received? message, out SequencePosition consumed)
    {
        var reader = new SequenceReader<byte>(buffer);
        DecodeStatus status = _decoder.TryDecode(ref reader, out Message decoded, out ProtocolViolation violation);
        if (status == DecodeStatus.Violation)
        {
            throw new InvalidDataException("the proxy forwarded a bad frame: " + violation.Describe());
        }

        consumed = reader.Position;
        if (status != DecodeStatus.Complete)
        {
            message = null;
            return false;
        }

        message = new Received(decoded.ProtoLevel, decoded.RequestUid, decoded.Operation, decoded.Payload.ToArray(), buffer.Slice(0, reader.Consumed).ToArray());
        return true;
    }
}
