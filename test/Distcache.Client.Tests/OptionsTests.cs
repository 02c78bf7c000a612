using Distcache.Networking;

namespace Distcache.Client.Tests;

/// <summary>The connection-string form and option checks.</summary>
public sealed class OptionsTests
{
    [Fact]
    public void An_address_alone_keeps_the_defaults()
    {
        var options = DistcacheClientOptions.Parse("UNIX:/tmp/scache");
        Assert.Equal(Address.Parse("UNIX:/tmp/scache"), options.Address);
        Assert.Equal(TimeSpan.FromSeconds(5), options.OperationTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), options.ConnectTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(100), options.ReconnectMinDelay);
        Assert.Equal(TimeSpan.FromSeconds(5), options.ReconnectMaxDelay);
    }

    [Fact]
    public void Keys_are_case_insensitive_milliseconds()
    {
        var options = DistcacheClientOptions.Parse("IP:cache1:9001, timeout=2000,CONNECTTIMEOUT=300 ,reconnectMin=10,reconnectmax=40");
        Assert.Equal(Address.Parse("IP:cache1:9001"), options.Address);
        Assert.Equal(TimeSpan.FromMilliseconds(2000), options.OperationTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(300), options.ConnectTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(10), options.ReconnectMinDelay);
        Assert.Equal(TimeSpan.FromMilliseconds(40), options.ReconnectMaxDelay);
    }

    [Fact]
    public void ToString_round_trips_through_Parse()
    {
        var options = DistcacheClientOptions.Parse("IPv6:[::1]:9001,timeout=1234,reconnectMax=999");
        var again = DistcacheClientOptions.Parse(options.ToString());
        Assert.Equal(options.ToString(), again.ToString());
        Assert.Equal("IPv6:[::1]:9001,timeout=1234,connectTimeout=5000,reconnectMin=100,reconnectMax=999", options.ToString());
    }

    [Theory]
    [InlineData("", "Invalid distcache address")]
    [InlineData("TCP:host:1", "Invalid distcache address")]
    [InlineData("IP:host:1,timeout", "Expected key=value")]
    [InlineData("IP:host:1,timeout=abc", "positive number of milliseconds")]
    [InlineData("IP:host:1,timeout=0", "positive number of milliseconds")]
    [InlineData("IP:host:1,timeout=-5", "positive number of milliseconds")]
    [InlineData("IP:host:1,retries=3", "Unknown key 'retries'")]
    [InlineData("IP:host:1,timeout=1,Timeout=2", "appears twice")]
    public void Bad_connection_strings_name_the_offending_part(string text, string message)
    {
        var exception = Assert.Throws<ArgumentException>(() => DistcacheClientOptions.Parse(text));
        Assert.Contains(message, exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_client_refuses_options_it_cannot_use()
    {
        Assert.Throws<ArgumentException>(() => DistcacheClient.Connect(new DistcacheClientOptions()));
        var listenOnly = Assert.Throws<ArgumentException>(() => DistcacheClient.Connect("IP:9001"));
        Assert.Contains("cannot be connected to", listenOnly.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => DistcacheClient.Connect(new DistcacheClientOptions
        {
            Address = Address.Parse("UNIX:/tmp/x"),
            OperationTimeout = TimeSpan.Zero,
        }));
        Assert.Throws<ArgumentOutOfRangeException>(() => DistcacheClient.Connect(new DistcacheClientOptions
        {
            Address = Address.Parse("UNIX:/tmp/x"),
            ReconnectMinDelay = TimeSpan.FromSeconds(2),
            ReconnectMaxDelay = TimeSpan.FromSeconds(1),
        }));
        Assert.Throws<ArgumentException>(() => DcContext.Create("IP:9001", DcContextFlags.None));
    }

    [Fact]
    public async Task A_client_keeps_a_copy_of_its_options()
    {
        var options = new DistcacheClientOptions { Address = Address.Parse("UNIX:/nonexistent/dc.sock"), OperationTimeout = TimeSpan.FromSeconds(1) };
        await using var client = DistcacheClient.Connect(options);
        options.Address = Address.Parse("UNIX:/elsewhere.sock");
        Assert.Equal(Address.Parse("UNIX:/nonexistent/dc.sock"), client.Address);
    }
}
