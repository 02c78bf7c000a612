using Distcache.Protocol;
using Distcache.Protocol.Tests.Support;

namespace Distcache.Protocol.Tests;

/// <summary>
/// One test per framing rule of PROTOCOL.md section 1: the offending bytes, fed whole and byte by byte, give
/// the named violation, and byte by byte it is reported as soon as the offending byte arrives.
/// </summary>
public sealed class ViolationTests
{
    private static readonly byte[] FullContinuation = Frames.Header(uid: 7, operation: (byte)Operation.Add, complete: 0, dataLength: 2048);

    public static TheoryData<string, byte[], MessageDirection, ProtocolViolationKind, int> Cases()
    {
        var data = new TheoryData<string, byte[], MessageDirection, ProtocolViolationKind, int>
        {
            { "version high byte", Frames.Header(protoLevel: 0x0111_0000), MessageDirection.Requests, ProtocolViolationKind.WrongVersion, 0 },
            { "version low byte", Frames.Header(protoLevel: 0x0012_0000), MessageDirection.Requests, ProtocolViolationKind.WrongVersion, 1 },
            { "is_response 2", Frames.Header(isResponse: 2), MessageDirection.Requests, ProtocolViolationKind.InvalidResponseFlag, 4 },
            { "response sent to a server", Frames.Header(isResponse: 1), MessageDirection.Requests, ProtocolViolationKind.UnexpectedDirection, 4 },
            { "request sent to a client", Frames.Header(isResponse: 0), MessageDirection.Responses, ProtocolViolationKind.UnexpectedDirection, 4 },
            { "op_class 1", Frames.Header(opClass: 1), MessageDirection.Requests, ProtocolViolationKind.UnknownOpClass, 9 },
            { "operation 4", Frames.Header(operation: 4), MessageDirection.Requests, ProtocolViolationKind.UnknownOperation, 10 },
            { "operation 255", Frames.Header(operation: 255), MessageDirection.Requests, ProtocolViolationKind.UnknownOperation, 10 },
            { "complete 2", Frames.Header(complete: 2), MessageDirection.Requests, ProtocolViolationKind.InvalidCompleteFlag, 11 },
            { "data_len 2049", Frames.Header(dataLength: 2049), MessageDirection.Requests, ProtocolViolationKind.FrameTooLong, 13 },
            { "data_len 0x0900", Frames.Header(dataLength: 0x0900), MessageDirection.Requests, ProtocolViolationKind.FrameTooLong, 12 },
            { "data_len 65535", Frames.Header(dataLength: 0xFFFF), MessageDirection.Requests, ProtocolViolationKind.FrameTooLong, 12 },
            { "non-final frame of 2047", Frames.Header(complete: 0, dataLength: 2047), MessageDirection.Requests, ProtocolViolationKind.ShortNonFinalFrame, 12 },
            { "non-final frame of 0x0801", Frames.Header(complete: 0, dataLength: 0x0801), MessageDirection.Requests, ProtocolViolationKind.FrameTooLong, 13 },
            { "non-final frame of 0x0810", Frames.Header(complete: 0, dataLength: 0x0810), MessageDirection.Requests, ProtocolViolationKind.FrameTooLong, 13 },
            { "non-final frame of 1", Frames.Header(complete: 0, dataLength: 1), MessageDirection.Requests, ProtocolViolationKind.ShortNonFinalFrame, 12 },
            { "non-final frame of 0", Frames.Header(complete: 0, dataLength: 0), MessageDirection.Requests, ProtocolViolationKind.ShortNonFinalFrame, 12 },
            {
                "continuation with another uid",
                Frames.Concat(Frames.Frame(FullContinuation, 2048), Frames.Header(uid: 8, operation: (byte)Operation.Add, dataLength: 5)),
                MessageDirection.Requests, ProtocolViolationKind.UidChangedWithinMessage, 2062 + 8
            },
            {
                "continuation with another uid, high byte",
                Frames.Concat(Frames.Frame(FullContinuation, 2048), Frames.Header(uid: 0x0100_0007, operation: (byte)Operation.Add, dataLength: 5)),
                MessageDirection.Requests, ProtocolViolationKind.UidChangedWithinMessage, 2062 + 5
            },
            {
                "continuation with another operation",
                Frames.Concat(Frames.Frame(FullContinuation, 2048), Frames.Header(uid: 7, operation: (byte)Operation.Get, dataLength: 5)),
                MessageDirection.Requests, ProtocolViolationKind.OperationChangedWithinMessage, 2062 + 10
            },
            {
                // 16 full non-final frames are 32768 bytes: the first byte of a 17th frame is already too much.
                "17 frames",
                Frames.Concat([.. Enumerable.Repeat(Frames.Frame(FullContinuation, 2048), 16), Frames.Header(uid: 7, operation: (byte)Operation.Add, dataLength: 0)]),
                MessageDirection.Requests, ProtocolViolationKind.MessageTooLarge, 16 * 2062
            },
            {
                // A second message that follows a complete first one starts afresh: it is checked as a first frame.
                "bad version in the second message",
                Frames.Concat(Frames.Frame(Frames.Header(dataLength: 3), 3), Frames.Header(protoLevel: 0)),
                MessageDirection.Requests, ProtocolViolationKind.WrongVersion, 17 + 1
            },
        };
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Violation_is_reported_whole(string name, byte[] stream, MessageDirection direction, ProtocolViolationKind kind, int offendingByte)
    {
        var result = Decode.All(stream, direction);
        Assert.True(result.Violation is not null, name);
        Assert.Equal(kind, result.Violation!.Value.Kind);
        Assert.Equal(offendingByte, result.ViolationAtByte);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Violation_is_reported_byte_by_byte_as_soon_as_the_offending_byte_arrives(string name, byte[] stream, MessageDirection direction, ProtocolViolationKind kind, int offendingByte)
    {
        var result = Decode.ByteByByte(stream, direction);
        Assert.True(result.Violation is not null, name);
        Assert.Equal(kind, result.Violation!.Value.Kind);
        Assert.Equal(offendingByte, result.ViolationAtByte);
        Assert.Equal(offendingByte + 1, result.DetectedAfterBytes);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Violation_is_reported_across_segment_boundaries(string name, byte[] stream, MessageDirection direction, ProtocolViolationKind kind, int offendingByte)
    {
        var result = Decode.All(stream, direction, Enumerable.Range(1, stream.Length).Where(i => i % 3 == 0));
        Assert.True(result.Violation is not null, name);
        Assert.Equal(kind, result.Violation!.Value.Kind);
        Assert.Equal(offendingByte, result.ViolationAtByte);
    }

    [Fact]
    public void Patch_level_is_accepted_whatever_its_value()
    {
        var stream = Frames.Frame(Frames.Header(protoLevel: 0x0011_FFFF, dataLength: 4), 4);
        var result = Decode.ByteByByte(stream, MessageDirection.Requests);
        Assert.Null(result.Violation);
        var message = Assert.Single(result.Messages);
        Assert.Equal(0x0011_FFFFu, message.ProtoLevel);
    }

    [Fact]
    public void A_violation_consumes_nothing()
    {
        var stream = Frames.Concat(Frames.Frame(Frames.Header(dataLength: 2), 2), Frames.Header(opClass: 9));
        var result = Decode.All(stream, MessageDirection.Requests);
        Assert.Single(result.Messages);
        Assert.Equal(ProtocolConstants.FrameHeaderSize, result.LeftOver);
    }

    [Fact]
    public void Any_direction_accepts_both()
    {
        var stream = Frames.Concat(Frames.Frame(Frames.Header(isResponse: 0, dataLength: 1), 1), Frames.Frame(Frames.Header(isResponse: 1, dataLength: 1), 1));
        var result = Decode.All(stream, MessageDirection.Any);
        Assert.Null(result.Violation);
        Assert.Equal([false, true], result.Messages.Select(m => m.IsResponse));
    }

    [Fact]
    public void Truncated_stream_is_reported_by_the_caller_from_leftover_bytes()
    {
        var stream = Frames.Frame(Frames.Header(dataLength: 10), 10)[..20];
        var result = Decode.All(stream, MessageDirection.Requests);
        Assert.Null(result.Violation);
        Assert.Empty(result.Messages);
        Assert.True(MessageDecoder.IsTruncated(new System.Buffers.ReadOnlySequence<byte>(stream.AsMemory(stream.Length - result.LeftOver))));
        Assert.False(MessageDecoder.IsTruncated(System.Buffers.ReadOnlySequence<byte>.Empty));
    }

    [Fact]
    public void Every_violation_kind_describes_itself()
    {
        foreach (var kind in Enum.GetValues<ProtocolViolationKind>())
        {
            Assert.NotEqual(kind.ToString(), kind.Describe());
        }
    }
}
