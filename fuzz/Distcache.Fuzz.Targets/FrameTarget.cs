using System.Buffers;
using System.Buffers.Binary;
using Distcache.Protocol;

namespace Distcache.Fuzz;

/// <summary>
/// Target "frame": <see cref="FrameHeader.Validate"/> and <see cref="FrameReader.TryRead"/>.
/// </summary>
/// <remarks>
/// Input: byte 0 chooses the rules (bits 0-1 the direction, 3 meaning Any as well; bit 2 "continues a message";
/// bits 3-7 where a second read of the same bytes is cut in two). When the frame continues a message, bytes 1-4
/// are that message's uid and byte 5 its operation. The rest is a stream of frames.
/// Checks: validating a header byte by byte gives the same verdict as validating it whole (a byte once rejected
/// stays rejected, and is the byte that just arrived); a frame read from one segment and from two gives the same
/// answer; an accepted header obeys every rule and writes back to the same 14 bytes; a reader that did not
/// complete did not move; NeedMoreData is only said when the frame really is incomplete.
/// </remarks>
public static class FrameTarget
{
    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }

        byte selector = input[0];
        var direction = (MessageDirection)Math.Min(selector & 3, 2);
        bool continues = (selector & 4) != 0;
        int cut = selector >> 3;
        var rules = new FrameRules(direction);
        ReadOnlySpan<byte> stream = input[1..];
        if (continues)
        {
            if (input.Length < 6)
            {
                return;
            }

            rules = rules with { ContinuesMessage = true, Uid = BinaryPrimitives.ReadUInt32BigEndian(input[1..]), Operation = (Operation)(input[5] & 3) };
            stream = input[6..];
        }

        byte[] bytes = stream.ToArray();
        CheckPrefixes(bytes, rules);

        var whole = new SegmentChain();
        whole.Append(bytes);
        int at = Math.Min(cut, bytes.Length);
        var split = new SegmentChain();
        split.Append(bytes.AsSpan(0, at).ToArray());
        split.Append(bytes.AsSpan(at).ToArray());

        var one = new SequenceReader<byte>(whole.From(0));
        var two = new SequenceReader<byte>(split.From(0));
        while (true)
        {
            long start = one.Consumed;
            long allocation = Allocation.Start();
            DecodeStatus status = FrameReader.TryRead(ref one, rules, out FrameHeader header, out ReadOnlySequence<byte> data, out ProtocolViolation violation);
            Allocation.End(allocation, "FrameReader.TryRead");
            DecodeStatus status2 = FrameReader.TryRead(ref two, rules, out FrameHeader header2, out ReadOnlySequence<byte> data2, out ProtocolViolation violation2);

            Check.Equal(status, status2, "status with the frame split across two segments");
            Check.Equal(violation, violation2, "violation with the frame split across two segments");
            Check.Equal(one.Consumed, two.Consumed, "bytes consumed with the frame split across two segments");
            ReadOnlySpan<byte> rest = bytes.AsSpan((int)start);
            if (status != DecodeStatus.Complete)
            {
                Check.Equal(start, one.Consumed, "reader position after an incomplete or rejected frame");
                if (status == DecodeStatus.Violation)
                {
                    Check.That(violation.Offset >= 0 && violation.Offset < Math.Min(rest.Length, ProtocolConstants.FrameHeaderSize), $"violation offset {violation.Offset} outside the header bytes present ({rest.Length})");
                    Check.That(Enum.IsDefined(violation.Kind), $"undefined violation kind {violation.Kind}");
                }
                else
                {
                    Check.That(
                        rest.Length < ProtocolConstants.FrameHeaderSize || rest.Length < ProtocolConstants.FrameHeaderSize + BinaryPrimitives.ReadUInt16BigEndian(rest[12..]),
                        "NeedMoreData for a frame that is all there");
                }

                return;
            }

            Check.Equal(header, header2, "header with the frame split across two segments");
            Check.That(data.ToArray().AsSpan().SequenceEqual(data2.ToArray()), "payload with the frame split across two segments");
            CheckAccepted(header, rules, rest);
            Check.Equal((long)header.DataLength, data.Length, "payload length");
            Check.Equal(start + ProtocolConstants.FrameHeaderSize + header.DataLength, one.Consumed, "bytes consumed by a frame");
            Check.That(data.ToArray().AsSpan().SequenceEqual(rest.Slice(ProtocolConstants.FrameHeaderSize, header.DataLength)), "payload is not the bytes after the header");
        }
    }

    // Validating the header as it arrives must agree with validating it whole.
    private static void CheckPrefixes(ReadOnlySpan<byte> bytes, in FrameRules rules)
    {
        int n = Math.Min(bytes.Length, ProtocolConstants.FrameHeaderSize);
        bool rejected = false;
        ProtocolViolationKind firstKind = 0;
        int firstIndex = -1;
        for (int length = 0; length <= n; length++)
        {
            bool ok = FrameHeader.Validate(bytes[..length], rules, out ProtocolViolationKind kind, out int index);
            if (rejected)
            {
                Check.That(!ok, $"a header rejected at {firstIndex} is accepted once {length} bytes are in");
                Check.Equal(firstKind, kind, "violation kind as more header bytes arrive");
                Check.Equal(firstIndex, index, "offending index as more header bytes arrive");
            }
            else if (!ok)
            {
                rejected = true;
                firstKind = kind;
                firstIndex = index;
                Check.Equal(length - 1, index, "a header is rejected by a byte other than the one that just arrived");
                Check.That(kind != 0, "rejected without a violation kind");
            }
            else
            {
                Check.Equal(-1, index, "offending index of an accepted header");
            }
        }
    }

    private static void CheckAccepted(in FrameHeader header, in FrameRules rules, ReadOnlySpan<byte> raw)
    {
        Check.Equal(ProtocolConstants.Version, (ushort)(header.ProtoLevel >> 16), "version of an accepted frame");
        Check.Equal((byte)0, header.OpClass, "op_class of an accepted frame");
        Check.That(header.Operation.IsDefined(), $"accepted an undefined operation {header.Operation}");
        Check.That(header.DataLength <= ProtocolConstants.MaxFrameData, $"accepted data_len {header.DataLength}");
        Check.That(header.Complete || header.DataLength == ProtocolConstants.MaxFrameData, $"accepted a non-final frame of {header.DataLength} bytes");
        Check.That(rules.Accept switch { MessageDirection.Requests => !header.IsResponse, MessageDirection.Responses => header.IsResponse, _ => true }, "accepted a frame in the wrong direction");
        if (rules.ContinuesMessage)
        {
            Check.Equal(rules.Uid, header.RequestUid, "uid of an accepted continuation frame");
            Check.Equal(rules.Operation, header.Operation, "operation of an accepted continuation frame");
        }

        Span<byte> written = stackalloc byte[ProtocolConstants.FrameHeaderSize];
        header.Write(written);
        Check.That(written.SequenceEqual(raw[..ProtocolConstants.FrameHeaderSize]), "an accepted header does not write back to the same bytes");
    }
}
