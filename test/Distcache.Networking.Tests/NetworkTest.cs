using System.Buffers;
using System.IO.Pipelines;
using System.Text;

namespace Distcache.Networking.Tests;

/// <summary>
/// Base of the socket tests: a per-test deadline, a per-test temporary directory for unix sockets, and
/// disposal of everything a test opened, even when it fails.
/// </summary>
public abstract class NetworkTest : IAsyncLifetime
{
    private readonly CancellationTokenSource _deadline;
    private readonly List<IAsyncDisposable> _cleanup = [];
    private readonly Dictionary<NetworkListener, System.Threading.Channels.Channel<NetworkConnection>> _acceptLoops = [];
    private string? _tempDirectory;

    protected NetworkTest()
    {
        _deadline = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        _deadline.CancelAfter(TimeSpan.FromSeconds(20));
    }

    /// <summary>Canceled when the test runs out of time; every wait in a test uses it.</summary>
    protected CancellationToken Ct => _deadline.Token;

    /// <summary>A fresh directory, short enough that socket paths in it stay far below the 107-byte limit.</summary>
    protected string TempDirectory
    {
        get
        {
            if (_tempDirectory is null)
            {
                var root = Path.GetTempPath().Length <= 40 ? Path.GetTempPath() : "/tmp";
                _tempDirectory = Path.Combine(root, "dcn-" + Guid.NewGuid().ToString("N")[..10]);
                Directory.CreateDirectory(_tempDirectory);
            }

            return _tempDirectory;
        }
    }

    protected string TempPath(string name) => Path.Combine(TempDirectory, name);

    protected T Track<T>(T disposable)
        where T : IAsyncDisposable
    {
        _cleanup.Add(disposable);
        return disposable;
    }

    /// <summary>
    /// True to serve the connections that <see cref="Listen"/>'s listeners accept, and those that
    /// <see cref="ConnectAsync"/> makes, on the native transport, so that a derived class runs the same tests over
    /// both transports.
    /// </summary>
    protected virtual bool NativeTransport => false;

    protected NetworkListener Listen(string address, ListenerOptions? options = null) =>
        Track(NetworkListener.Listen(Address.Parse(address), NativeTransport ? WithNativeTransport(options) : options));

    private static ListenerOptions WithNativeTransport(ListenerOptions? options) =>
        options is null
            ? new ListenerOptions { NativeTransport = true }
            : new ListenerOptions
            {
                Backlog = options.Backlog,
                UnixSocketOwner = options.UnixSocketOwner,
                UnixSocketGroup = options.UnixSocketGroup,
                UnixSocketMode = options.UnixSocketMode,
                AllowedPeerUserIds = options.AllowedPeerUserIds,
                AllowedPeerGroupIds = options.AllowedPeerGroupIds,
                Logger = options.Logger,
                NativeTransport = true,
            };

    protected async Task<NetworkConnection> ConnectAsync(Address address, ConnectionOptions? options = null) =>
        Track(await NetworkConnection.ConnectAsync(address, NativeTransport ? WithNativeTransport(options) : options ?? ConnectionOptions.Default, Ct));

    /// <summary>The options <see cref="ConnectAsync"/> uses by default, for tests that call <see cref="NetworkConnection.ConnectAsync(Address, ConnectionOptions, CancellationToken)"/> themselves.</summary>
    protected ConnectionOptions ConnectOptions => NativeTransport ? WithNativeTransport((ConnectionOptions?)null) : ConnectionOptions.Default;

    private static ConnectionOptions WithNativeTransport(ConnectionOptions? options) =>
        new() { StreamWrapper = options?.StreamWrapper, Logger = options?.Logger, NativeTransport = true };

    /// <summary>
    /// The listener's next connection. With <see cref="NativeTransport"/>, accepted the way the servers accept: by
    /// <see cref="NetworkListener.AcceptLoopAsync(Action{NetworkConnection}, Action{Exception}, CancellationToken)"/>
    /// on the event loops, so that every test of a native suite runs over natively accepted connections.
    /// </summary>
    protected async Task<NetworkConnection> AcceptAsync(NetworkListener listener) =>
        Track(NativeTransport ? await AcceptedBy(listener).ReadAsync(Ct) : await listener.AcceptAsync(Ct));

    /// <summary>Connects to the listener and accepts the connection, returning both ends.</summary>
    protected async Task<(NetworkConnection Client, NetworkConnection Server)> ConnectPairAsync(NetworkListener listener, Address? target = null)
    {
        var accept = AcceptAsync(listener);
        var client = await ConnectAsync(target ?? listener.LocalAddress);
        var server = await accept;
        return (client, server);
    }

    // One accept loop per listener, started at its first accept, handing connections over through a channel. The
    // connections nobody took are closed with the test.
    private System.Threading.Channels.ChannelReader<NetworkConnection> AcceptedBy(NetworkListener listener)
    {
        lock (_acceptLoops)
        {
            if (!_acceptLoops.TryGetValue(listener, out var channel))
            {
                channel = System.Threading.Channels.Channel.CreateUnbounded<NetworkConnection>();
                _acceptLoops[listener] = channel;
                var writer = channel.Writer;
                _ = listener.AcceptLoopAsync(c => writer.TryWrite(c), e => writer.TryComplete(e), Ct)
                    .ContinueWith(_ => writer.TryComplete(), TaskScheduler.Default);
                _cleanup.Add(new DrainOnDispose(channel.Reader));
            }

            return channel.Reader;
        }
    }

    private sealed class DrainOnDispose(System.Threading.Channels.ChannelReader<NetworkConnection> reader) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            while (reader.TryRead(out var left))
            {
                await left.DisposeAsync();
            }
        }
    }

    /// <summary>Sends text both ways and checks it arrives intact.</summary>
    protected async Task ExchangeAsync(NetworkConnection client, NetworkConnection server)
    {
        await SendAsync(client.Output, "ping from client");
        Assert.Equal("ping from client", await ReceiveAsync(server.Input, "ping from client".Length));
        await SendAsync(server.Output, "pong from server");
        Assert.Equal("pong from server", await ReceiveAsync(client.Input, "pong from server".Length));
    }

    protected async Task SendAsync(PipeWriter output, string text)
    {
        var result = await output.WriteAsync(Encoding.UTF8.GetBytes(text), Ct);
        Assert.False(result.IsCanceled);
    }

    /// <summary>Reads exactly <paramref name="length"/> bytes; fails if the stream ends first.</summary>
    protected async Task<string> ReceiveAsync(PipeReader input, int length)
    {
        while (true)
        {
            var result = await input.ReadAsync(Ct);
            var buffer = result.Buffer;
            if (buffer.Length >= length)
            {
                var text = Encoding.UTF8.GetString(buffer.Slice(0, length));
                input.AdvanceTo(buffer.GetPosition(length));
                return text;
            }

            if (result.IsCompleted || result.IsCanceled)
            {
                throw new EndOfStreamException($"stream ended after {buffer.Length} of {length} bytes");
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Reads until the peer closes its side, returning everything read.</summary>
    protected async Task<string> ReadToEndAsync(PipeReader input)
    {
        while (true)
        {
            var result = await input.ReadAsync(Ct);
            if (result.IsCompleted)
            {
                var text = Encoding.UTF8.GetString(result.Buffer);
                input.AdvanceTo(result.Buffer.End);
                return text;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        for (var i = _cleanup.Count - 1; i >= 0; i--)
        {
            await _cleanup[i].DisposeAsync();
        }

        if (_tempDirectory is not null && Directory.Exists(_tempDirectory))
        {
            Directory.Delete(_tempDirectory, recursive: true);
        }

        _deadline.Dispose();
        GC.SuppressFinalize(this);
    }
}
