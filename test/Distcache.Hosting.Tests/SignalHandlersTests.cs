using System.Runtime.InteropServices;

namespace Distcache.Hosting.Tests;

/// <summary>The parts of SignalHandlers that can be checked without signalling the test process itself.</summary>
public sealed class SignalHandlersTests
{
    [Fact]
    public void The_user_signals_have_their_Linux_numbers()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the numbers are Linux's");
        Assert.Equal(10, (int)SignalHandlers.UserSignal1);
        Assert.Equal(12, (int)SignalHandlers.UserSignal2);
    }

    [Fact]
    public void Registering_and_disposing_leaves_no_shutdown_requested()
    {
        using var shutdown = new CancellationTokenSource();

        var handlers = SignalHandlers.Register(shutdown, killable: true);

        Assert.True(handlers.Killable);
        Assert.Null(handlers.ShutdownSignal);
        handlers.Dispose();
        handlers.Dispose();
        Assert.False(shutdown.IsCancellationRequested);
    }

    [Fact]
    public void A_missing_token_source_is_a_programming_error()
    {
        Assert.Throws<ArgumentNullException>(() => SignalHandlers.Register(null!, killable: false));
    }

    [Fact]
    public void Raw_signal_numbers_are_accepted_by_the_runtime()
    {
        using var registration = PosixSignalRegistration.Create(SignalHandlers.UserSignal2, context => context.Cancel = true);
        Assert.NotNull(registration);
    }
}
