using System.Buffers;
using System.IO.Pipelines;
using Distcache.Protocol;
using Distcache.Server;
using Distcache.Storage;

namespace Distcache.Server.Tests;

/// <summary>A server connection over in-memory pipes: the test plays the client by writing raw bytes.</summary>
internal sealed class InProcess : IAsyncDisposable
{
    private readonly Pipe _toServer = new();
    private readonly Pipe _toClient = new();
    private readonly CancellationTokenSource _shutdown = new();

    public InProcess(DistcacheServer? server = null)
    {
        Server = server ?? new DistcacheServer(new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 0 }));
        Served = Task.Run(() => Server.ServeAsync(new DuplexPipe(_toServer.Reader, _toClient.Writer), "test-peer", _shutdown.Token));
    }

    public DistcacheServer Server { get; }

    public Task<ProtocolViolation?> Served { get; }

    public PipeReader FromServer => _toClient.Reader;

    public async Task SendAsync(byte[] bytes)
    {
        await _toServer.Writer.WriteAsync(bytes);
    }

    public async Task SendAsync(Action<IBufferWriter<byte>> write)
    {
        write(_toServer.Writer);
        await _toServer.Writer.FlushAsync();
    }

    public void CloseClientSide() => _toServer.Writer.Complete();

    public void Shutdown() => _shutdown.Cancel();

    /// <summary>Reads exactly <paramref name="count"/> bytes from the server, or fails after 5 seconds.</summary>
    public async Task<byte[]> ReceiveAsync(int count)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        while (true)
        {
            var read = await FromServer.ReadAsync(timeout.Token);
            if (read.Buffer.Length >= count)
            {
                var bytes = read.Buffer.Slice(0, count).ToArray();
                FromServer.AdvanceTo(read.Buffer.GetPosition(count));
                return bytes;
            }

            if (read.IsCompleted)
            {
                throw new EndOfStreamException($"server closed after {read.Buffer.Length} of {count} bytes");
            }

            FromServer.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }
    }

    /// <summary>Decodes the next response.</summary>
    public async Task<(uint Uid, Operation Op, byte[] Payload)> ReceiveMessageAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var decoder = new MessageDecoder(MessageDirection.Responses);
        while (true)
        {
            var read = await FromServer.ReadAsync(timeout.Token);
            var reader = new SequenceReader<byte>(read.Buffer);
            var status = decoder.TryDecode(ref reader, out var message, out var violation);
            if (status == DecodeStatus.Complete)
            {
                var result = (message.RequestUid, message.Operation, message.Payload.ToArray());
                FromServer.AdvanceTo(reader.Position);
                return result;
            }

            Assert.NotEqual(DecodeStatus.Violation, status);
            if (read.IsCompleted)
            {
                throw new EndOfStreamException("server closed mid-response");
            }

            FromServer.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _shutdown.Cancel();
        _toServer.Writer.Complete();
        await Served.WaitAsync(TimeSpan.FromSeconds(5));
        _shutdown.Dispose();
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
