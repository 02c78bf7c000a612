using Distcache.Fuzz;
using Distcache.Protocol;

namespace Distcache.Fuzz.Tests;

/// <summary>The targets themselves: they accept what is right, and what they check really is checked.</summary>
public sealed class TargetTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2048)]
    [InlineData(2049)]
    [InlineData(ProtocolConstants.MaxMessagePayload)]
    public void Valid_messages_of_any_size_pass_every_target(int payloadLength)
    {
        byte[] payload = [.. Enumerable.Range(0, payloadLength).Select(i => (byte)i)];
        var requests = new System.Buffers.ArrayBufferWriter<byte>();
        var writer = new MessageWriter(requests, false, 7, Operation.Get, payloadLength);
        writer.Write(payload);
        writer.Complete();
        var responses = new System.Buffers.ArrayBufferWriter<byte>();
        Responses.WriteData(responses, 7, Operation.Get, payload);

        // Cut inside the first header, at a frame boundary and one byte later.
        int[] cuts = [3, 2062, 1];
        FuzzTargets.Get("frame")([0, .. requests.WrittenSpan]);
        FuzzTargets.Get("reassembly")(SplitInput.Encode(0, cuts, requests.WrittenSpan));
        FuzzTargets.Get("reassembly")(SplitInput.Encode(1, cuts, responses.WrittenSpan));
        FuzzTargets.Get("payload")([(byte)Operation.Get, .. payload]);
        FuzzTargets.Get("response")(SplitInput.Encode(0, cuts, responses.WrittenSpan));
    }

    [Fact]
    public void A_valid_add_is_stored_read_back_and_removed()
    {
        // timeout 60000 ms, id_len 10, the id, 3000 bytes of data: two frames on the wire.
        byte[] payload = [0, 0, 0xEA, 0x60, 0, 0, 0, 10, .. "session-id"u8, .. new byte[3000]];
        Assert.Equal(AddRequestParseResult.Valid, AddRequest.TryParse(payload, out _));

        // Twice: the target leaves the store empty, so the second ADD is stored afresh, not refused as a duplicate.
        FuzzTargets.Get("payload")([(byte)Operation.Add, .. payload]);
        FuzzTargets.Get("payload")([(byte)Operation.Add, .. payload]);
    }

    [Fact]
    public void Split_input_cuts_where_it_says()
    {
        byte[] input = SplitInput.Encode(2, [3, 0, 100], "abcdefgh"u8);
        Assert.Equal((2 << 4) | 3, input[0]);
        var parsed = SplitInput.Parse(input);
        Assert.Equal(2, parsed.Selector);
        Assert.Equal("abcdefgh"u8.ToArray(), parsed.Data);
        // 100 is taken modulo the 5 bytes left plus one: 100 % 6 = 4.
        Assert.Equal([3, 0, 4, 1], parsed.Segments.Select(s => s.Length));
    }

    [Fact]
    public void Allocation_over_the_budget_is_a_failure()
    {
        long start = Allocation.Start();
        GC.KeepAlive(new byte[Allocation.Budget]);
        Assert.Throws<FuzzFailureException>(() => Allocation.End(start, "a test allocation"));
    }

    [Fact]
    public void A_broken_check_is_a_failure()
    {
        var e = Assert.Throws<FuzzFailureException>(() => Check.Equal(1, 2, "one and two"));
        Assert.Contains("one and two", e.Message, StringComparison.Ordinal);
    }
}
