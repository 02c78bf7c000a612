using Distcache.Hosting;

namespace Distcache.Hosting.Tests;

public sealed class SocketEngineTests
{
    [Fact]
    public void Inline_completions_are_requested_unless_the_operator_said_otherwise()
    {
        string? saved = Environment.GetEnvironmentVariable(SocketEngine.InlineCompletionsVariable);
        try
        {
            Environment.SetEnvironmentVariable(SocketEngine.InlineCompletionsVariable, null);
            Assert.True(SocketEngine.UseInlineCompletions());
            Assert.Equal("1", Environment.GetEnvironmentVariable(SocketEngine.InlineCompletionsVariable));

            // An operator who turned it off keeps it off.
            Environment.SetEnvironmentVariable(SocketEngine.InlineCompletionsVariable, "0");
            Assert.False(SocketEngine.UseInlineCompletions());
            Assert.Equal("0", Environment.GetEnvironmentVariable(SocketEngine.InlineCompletionsVariable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SocketEngine.InlineCompletionsVariable, saved);
        }
    }
}
