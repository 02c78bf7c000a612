using System.Buffers;
using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using Distcache.Protocol;
using Distcache.Server;
using Distcache.Storage;

namespace Distcache.Benchmarks;

/// <summary>
/// The server's whole request path without the socket: a pipelined batch of requests goes into the connection's
/// input pipe, <see cref="DistcacheServer.ServeAsync"/> decodes them, applies them to the memory store and writes
/// the responses, and the benchmark reads the responses back out. Allocated bytes per operation are the figure
/// that matters: the steady-state path should allocate nothing (the baseline is in bench/baselines).
/// </summary>
[MemoryDiagnoser]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "Disposed in [GlobalCleanup], BenchmarkDotNet's lifecycle.")]
public class ServerRequestPathBenchmarks
{
    private const int Batch = 128;
    private const int Sessions = 1024;

    private readonly Pipe _toServer = new(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
    private readonly Pipe _toClient = new(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
    private MemorySessionStore _store = null!;
    private CancellationTokenSource _shutdown = null!;
    private Task _serving = null!;
    private byte[] _getBatch = [];
    private byte[] _haveBatch = [];
    private byte[] _addRemoveBatch = [];
    private long _getResponseBytes;
    private long _statusResponseBytes;

    [GlobalSetup]
    public void Setup()
    {
        _store = new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 0, MaxBytes = 1L << 30 });
        var data = new byte[1000];
        for (int i = 0; i < Sessions; i++)
        {
            _store.AddAsync(Id(i), data, TimeSpan.FromHours(1)).AsTask().GetAwaiter().GetResult();
        }

        _getBatch = Encode(w =>
        {
            for (int i = 0; i < Batch; i++)
            {
                Requests.WriteIdRequest(w, (uint)i + 1, Operation.Get, Id(i * 31 % Sessions));
            }
        });
        _haveBatch = Encode(w =>
        {
            for (int i = 0; i < Batch; i++)
            {
                Requests.WriteIdRequest(w, (uint)i + 1, Operation.Have, Id(i * 17 % Sessions));
            }
        });
        _addRemoveBatch = Encode(w =>
        {
            for (int i = 0; i < Batch / 2; i++)
            {
                byte[] id = Id(Sessions + i);
                Requests.WriteAdd(w, (uint)(2 * i) + 1, 3_600_000, id, data);
                Requests.WriteIdRequest(w, (uint)(2 * i) + 2, Operation.Remove, id);
            }
        });
        _getResponseBytes = Batch * (long)MessageWriter.EncodedLength(1000);
        _statusResponseBytes = Batch * (long)MessageWriter.EncodedLength(1);

        _shutdown = new CancellationTokenSource();
        var server = new DistcacheServer(_store);
        _serving = server.ServeAsync(new Duplex(_toServer.Reader, _toClient.Writer), "benchmark", _shutdown.Token);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _shutdown.Cancel();
        _toServer.Writer.Complete();
        _serving.GetAwaiter().GetResult();
        _store.Dispose();
        _shutdown.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public Task Get() => RoundTripAsync(_getBatch, _getResponseBytes);

    [Benchmark(OperationsPerInvoke = Batch)]
    public Task Have() => RoundTripAsync(_haveBatch, _statusResponseBytes);

    [Benchmark(OperationsPerInvoke = Batch)]
    public Task AddThenRemove() => RoundTripAsync(_addRemoveBatch, _statusResponseBytes);

    private async Task RoundTripAsync(byte[] requests, long responseBytes)
    {
        await _toServer.Writer.WriteAsync(requests).ConfigureAwait(false);
        long received = 0;
        while (received < responseBytes)
        {
            ReadResult read = await _toClient.Reader.ReadAsync().ConfigureAwait(false);
            received += read.Buffer.Length;
            _toClient.Reader.AdvanceTo(read.Buffer.End);
        }
    }

    private static byte[] Id(int i)
    {
        var id = new byte[32];
        BitConverter.TryWriteBytes(id, i);
        return id;
    }

    private static byte[] Encode(Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        return buffer.WrittenSpan.ToArray();
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
