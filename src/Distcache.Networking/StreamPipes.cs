using System.IO.Pipelines;

namespace Distcache.Networking;

/// <summary>
/// The runtime's transport: a <see cref="PipeReader"/> and a <see cref="PipeWriter"/> over the connection's stream,
/// which is the socket's <see cref="System.Net.Sockets.NetworkStream"/> (the runtime's socket engine underneath),
/// what <see cref="NetworkConnection.WrapStreamAsync"/> put in its place (TLS), or the stream of
/// <see cref="NetworkConnection.FromStream"/>.
/// </summary>
/// <remarks>
/// The pipes never own the stream, so that the connection can order flush, TLS shutdown and close itself. Closing
/// the socket or the stream wakes whatever waits on the pipes, so there is nothing to detach or fail.
/// </remarks>
internal sealed class StreamPipes : ConnectionTransport
{
    // The size of the output pipe's buffer segments: one system call sends at most one.
    private const int WriteSegmentSize = 32 * 1024;

    // Zero-byte reads let an idle connection wait without holding a receive buffer: a cache server keeps a
    // connection per client process open for long idle stretches, so most of them are idle at any moment.
    // Reads of up to 16 KiB take a client's whole pipeline of ADDs (1 KB sessions, 16 in flight) in one
    // system call; the 4 KiB default took four or five, and cost 20% more server CPU per operation.
    private static readonly StreamPipeReaderOptions ReaderOptions = new(bufferSize: 16 * 1024, minimumReadSize: 2048, leaveOpen: true, useZeroByteReads: true);

    // The writer sends each buffer segment with its own system call, so segments of 32 KiB (not the default
    // 4 KiB) let a flush of a whole pipeline of answers (16 sessions of 1 KB) go out in one send, not four.
    // The segments go back to the pool once flushed, so an idle connection holds none.
    private static readonly StreamPipeWriterOptions WriterOptions = new(minimumBufferSize: WriteSegmentSize, leaveOpen: true);

    /// <summary>Makes the pipes over <paramref name="stream"/>.</summary>
    public StreamPipes(Stream stream)
    {
        Output = PipeWriter.Create(stream, WriterOptions);
        Input = PipeReader.Create(stream, ReaderOptions);
    }

    /// <inheritdoc/>
    public override PipeReader Input { get; }

    /// <inheritdoc/>
    public override PipeWriter Output { get; }
}
