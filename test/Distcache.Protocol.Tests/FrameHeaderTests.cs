using Distcache.Protocol;

namespace Distcache.Protocol.Tests;

public sealed class FrameHeaderTests
{
    [Fact]
    public void Layout_matches_the_specification_byte_for_byte()
    {
        var header = new FrameHeader(0x0011_0000, true, 0x01020304, 0, Operation.Remove, true, 0x0102);
        var bytes = new byte[14];
        header.Write(bytes);
        Assert.Equal(new byte[] { 0x00, 0x11, 0x00, 0x00, 1, 0x01, 0x02, 0x03, 0x04, 0, 2, 1, 0x01, 0x02 }, bytes);
        Assert.Equal(header, FrameHeader.Read(bytes));
    }

    [Fact]
    public void Validate_accepts_every_prefix_of_a_good_header()
    {
        var header = Frames.Header(uid: 0xFFFFFFFF, operation: 3, complete: 0, dataLength: 2048);
        for (int n = 0; n <= header.Length; n++)
        {
            Assert.True(FrameHeader.Validate(header.AsSpan(0, n), new FrameRules(MessageDirection.Requests), out _, out _));
        }
    }

    [Fact]
    public void Status_and_operation_names_match_1_5_1()
    {
        Assert.Equal("ADD_ERR_MATCHING_SESSION", StatusCode.AddErrMatchingSession.ToWireName());
        Assert.Equal("DISCONNECTED", StatusCode.Disconnected.ToWireName());
        Assert.Equal("REMOVE", Operation.Remove.ToWireName());
        Assert.Equal("7", ((StatusCode)7).ToWireName());
        Assert.Equal(100, (int)StatusCode.AddErrCorrupt);
        Assert.Equal(104, (int)StatusCode.AddErrDataRange);
    }
}
