using System.Buffers.Binary;

namespace Distcache.TicketKeys.Tests;

public class TicketKeyTests
{
    private const uint Period = 3600;

    private static TicketKey Sample(long period = 42)
    {
        byte[] secret = new byte[TicketKey.SecretSize];
        for (int i = 0; i < secret.Length; i++)
        {
            secret[i] = (byte)(i + 1);
        }

        return new TicketKey(period, Period, secret);
    }

    [Fact]
    public void A_record_reads_back_as_the_same_key()
    {
        TicketKey key = TicketKey.Create(7, Period);
        byte[] record = key.ToRecord();
        Assert.Equal(TicketKey.RecordSize, record.Length);
        Assert.True(TicketKey.TryParse(record, 7, Period, out TicketKey? back, out string? reason), reason);
        Assert.Equal(key, back);
        Assert.NotEqual(key, TicketKey.Create(7, Period));
    }

    public static TheoryData<string, int, byte, string> Damage => new()
    {
        { "magic", 0, (byte)'X', "wrong magic" },
        { "version", 4, 2, "format version is 2" },
        { "reserved byte", 6, 1, "checksum" },
        { "key byte", 50, 0xFF, "checksum" },
        { "checksum", TicketKey.RecordSize - 1, 0, "checksum" },
    };

    [Theory]
    [MemberData(nameof(Damage))]
    public void A_damaged_record_is_refused_with_the_reason(string what, int offset, byte value, string reason)
    {
        byte[] record = Sample().ToRecord();
        Assert.NotEqual(value, record[offset]);
        record[offset] = value;
        Assert.False(TicketKey.TryParse(record, 42, Period, out TicketKey? key, out string? why), what);
        Assert.Null(key);
        Assert.Contains(reason, why, StringComparison.Ordinal);
    }

    [Fact]
    public void A_record_of_another_size_period_or_period_length_is_refused()
    {
        byte[] record = Sample(42).ToRecord();
        Assert.False(TicketKey.TryParse(record.AsSpan(1), 42, Period, out _, out string? why));
        Assert.Equal($"it is {TicketKey.RecordSize - 1} bytes, not {TicketKey.RecordSize}", why);
        Assert.False(TicketKey.TryParse([.. record, 0], 42, Period, out _, out why));
        Assert.False(TicketKey.TryParse(record, 43, Period, out _, out why));
        Assert.Equal("it is the key of period 42, not of period 43", why);
        Assert.False(TicketKey.TryParse(record, 42, Period * 2, out _, out why));
        Assert.Equal("it was made for periods of 3600 s, not 7200 s", why);
        Assert.True(TicketKey.TryParse(record, null, Period, out TicketKey? any, out _));
        Assert.Equal(42, any.Period);
    }

    [Theory]
    [InlineData(0, 16)]
    [InlineData(16, 32)]
    [InlineData(48, 32)]
    public void A_record_with_a_zero_name_or_key_is_refused_even_with_a_good_checksum(int start, int length)
    {
        byte[] secret = new byte[TicketKey.SecretSize];
        Array.Fill(secret, (byte)7);
        Array.Clear(secret, start, length);
        byte[] record = new TicketKey(1, Period, secret).ToRecord();
        Assert.False(TicketKey.TryParse(record, 1, Period, out _, out string? why));
        Assert.Equal("its key name, HMAC key or AES key is all zeros", why);
    }

    [Fact]
    public void The_record_names_its_period_and_length_in_network_order()
    {
        byte[] record = Sample(0x0102030405).ToRecord();
        Assert.Equal("DCTK"u8.ToArray(), record[..4]);
        Assert.Equal(1, record[4]);
        Assert.Equal(Period, BinaryPrimitives.ReadUInt32BigEndian(record.AsSpan(8)));
        Assert.Equal(0x0102030405, BinaryPrimitives.ReadInt64BigEndian(record.AsSpan(12)));
    }

    [Fact]
    public void Nginx_gets_name_hmac_aes_and_haproxy_name_aes_hmac()
    {
        TicketKey key = Sample();
        byte[] nginx = key.ToNginx();
        Assert.Equal(80, nginx.Length);
        Assert.Equal(Enumerable.Range(1, 80).Select(i => (byte)i), nginx);

        byte[] haproxy = Convert.FromBase64String(key.ToHAProxyLine());
        Assert.Equal(80, haproxy.Length);
        Assert.Equal(nginx[..16], haproxy[..16]);
        Assert.Equal(nginx[48..80], haproxy[16..48]);
        Assert.Equal(nginx[16..48], haproxy[48..80]);
    }

    [Fact]
    public void Apache_gets_48_bytes_of_its_own_derived_from_the_key()
    {
        TicketKey key = Sample();
        byte[] apache = key.ToApache();
        Assert.Equal(48, apache.Length);
        Assert.Equal(apache, Sample().ToApache());
        Assert.NotEqual(apache, TicketKey.Create(42, Period).ToApache());

        // Its name is not the 80-byte forms' name, so a server never tries one form's ticket with the other's cipher.
        Assert.NotEqual(key.ToNginx()[..16], apache[..16]);
        Assert.False(key.ToNginx().AsSpan().IndexOf(apache.AsSpan(16, 16)) >= 0);
    }

    [Fact]
    public void The_label_is_the_start_of_the_public_name_and_nothing_secret()
    {
        TicketKey key = Sample();
        Assert.Equal("01020304", key.Label);
        Assert.Equal("period 42 (key 01020304)", key.ToString());
    }
}
