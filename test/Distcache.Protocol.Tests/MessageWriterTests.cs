using Distcache.Protocol;

namespace Distcache.Protocol.Tests;

public sealed class MessageWriterTests
{
    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(2048, 1)]
    [InlineData(2049, 2)]
    [InlineData(32768, 16)]
    public void Frame_count(int payload, int frames) => Assert.Equal(frames, MessageWriter.FrameCount(payload));

    [Fact]
    public void Non_final_frames_are_exactly_2048_bytes()
    {
        var stream = Frames.Encode(w => Responses.WriteData(w, 1, Operation.Get, new byte[6000]));
        Assert.Equal(2048, (stream[12] << 8) | stream[13]);
        Assert.Equal(0, stream[11]);
        Assert.Equal(2048, (stream[2062 + 12] << 8) | stream[2062 + 13]);
        Assert.Equal(1, stream[(2 * 2062) + 11]);
        Assert.Equal(6000 - 4096, (stream[(2 * 2062) + 12] << 8) | stream[(2 * 2062) + 13]);
    }

    [Fact]
    public void Payload_written_in_pieces_equals_payload_written_at_once()
    {
        var payload = Frames.Random(9000, 4);
        var once = Frames.Encode(w => Responses.WriteData(w, 2, Operation.Get, payload));
        var pieces = Frames.Encode(w =>
        {
            var writer = new MessageWriter(w, true, 2, Operation.Get, payload.Length);
            int at = 0;
            foreach (int size in new[] { 1, 2047, 2, 3000, 13 })
            {
                writer.Write(payload.AsSpan(at, size));
                at += size;
            }

            writer.Write(payload.AsSpan(at));
            writer.Complete();
        });
        Assert.Equal(once, pieces);
    }

    [Fact]
    public void Writing_more_or_less_than_declared_throws()
    {
        Assert.Throws<InvalidOperationException>(() => Frames.Encode(w =>
        {
            var writer = new MessageWriter(w, false, 1, Operation.Get, 2);
            writer.Write([1, 2, 3]);
        }));
        Assert.Throws<InvalidOperationException>(() => Frames.Encode(w =>
        {
            var writer = new MessageWriter(w, false, 1, Operation.Get, 2);
            writer.Write([1]);
            writer.Complete();
        }));
    }

    [Fact]
    public void Writes_into_a_small_segment_buffer_writer()
    {
        // A writer that hands out exactly the size asked for catches an encoder that writes past its request.
        var small = new TinySpanWriter();
        var payload = Frames.Random(3000, 9);
        Responses.WriteData(small, 3, Operation.Get, payload);
        Assert.Equal(Frames.Encode(w => Responses.WriteData(w, 3, Operation.Get, payload)), small.Written.ToArray());
    }

    private sealed class TinySpanWriter : System.Buffers.IBufferWriter<byte>
    {
        private readonly List<byte> _written = [];
        private byte[] _current = [];

        public IReadOnlyList<byte> Written => _written;

        public void Advance(int count) => _written.AddRange(_current.AsSpan(0, count).ToArray());

        public Memory<byte> GetMemory(int sizeHint = 0) => _current = new byte[Math.Max(1, sizeHint)];

        public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;
    }
}
