using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Hosting;

/// <summary>
/// The signal behaviour of the 1.5.1 tools. SIGTERM and SIGINT request a clean shutdown. SIGUSR1 and SIGUSR2
/// request one too with <c>-killable</c>, and are ignored without it (left alone they would terminate a .NET
/// process on the spot). SIGHUP raises <see cref="Hangup"/>, for reloading, and is otherwise ignored with a log
/// line. Dispose restores the default handling.
/// </summary>
/// <remarks>
/// <para>
/// "Request a shutdown" means cancelling the given <see cref="CancellationTokenSource"/> and telling the runtime
/// not to act on the signal itself, so the program's own shutdown (closing listeners, removing the pid file) runs.
/// A second shutdown signal is left to the default action - termination - so that a shutdown that hangs can still
/// be cut short with another Ctrl-C or <c>kill</c>.
/// </para>
/// <para>
/// Handlers run on a runtime thread, not the thread that registered them. The registrations live as long as this
/// object is not disposed, even if the caller drops its reference: a registration that was garbage-collected would
/// silently bring back the default action.
/// </para>
/// <para>
/// A signal that was already ignored when the process started stays ignored, whatever is registered here: the
/// runtime honours that Unix convention. A background job of a non-interactive shell (<c>dc_server &amp;</c> in
/// a script) therefore ignores SIGINT - SIGTERM is the signal to stop it with - and under <c>nohup</c> SIGHUP
/// never reaches <see cref="Hangup"/>. The daemon child inherits this from the command that started it.
/// </para>
/// </remarks>
public sealed class SignalHandlers : IDisposable
{
    // Registrations must stay reachable until disposed; a static root makes that independent of the caller.
    private static readonly HashSet<SignalHandlers> Active = [];

    private readonly CancellationTokenSource _shutdown;
    private readonly ILogger _logger;
    private readonly List<PosixSignalRegistration> _registrations = [];
    private int _shutdownRequests;
    private int _disposed;

    private SignalHandlers(CancellationTokenSource shutdown, bool killable, ILogger logger)
    {
        _shutdown = shutdown;
        _logger = logger;
        Killable = killable;
    }

    /// <summary>
    /// Raised on SIGHUP, on a runtime thread; a later feature reloads certificates here. An exception a handler
    /// throws is logged, not propagated, so a failed reload leaves the server running. Without handlers SIGHUP is
    /// logged and ignored.
    /// </summary>
    public event EventHandler? Hangup;

    /// <summary>SIGUSR1 on Linux (10); the BSDs and macOS number it 30.</summary>
    public static PosixSignal UserSignal1 { get; } = (PosixSignal)(OperatingSystem.IsLinux() ? 10 : 30);

    /// <summary>SIGUSR2 on Linux (12); the BSDs and macOS number it 31.</summary>
    public static PosixSignal UserSignal2 { get; } = (PosixSignal)(OperatingSystem.IsLinux() ? 12 : 31);

    /// <summary>Whether SIGUSR1 and SIGUSR2 request a shutdown (<c>-killable</c>) rather than being ignored.</summary>
    public bool Killable { get; }

    /// <summary>The signal that first requested the shutdown, or null while none has.</summary>
    public PosixSignal? ShutdownSignal { get; private set; }

    /// <summary>Installs the handlers. Keep the returned object until shutdown and dispose it then.</summary>
    /// <param name="shutdown">Cancelled when a shutdown is requested.</param>
    /// <param name="killable">Whether SIGUSR1 and SIGUSR2 request a shutdown (<c>-killable</c>) or are ignored.</param>
    /// <param name="logger">Where to log signals; nothing is logged when null.</param>
    /// <returns>The installed handlers.</returns>
    /// <exception cref="PlatformNotSupportedException">The platform has no POSIX signals.</exception>
    public static SignalHandlers Register(CancellationTokenSource shutdown, bool killable, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(shutdown);
        var handlers = new SignalHandlers(shutdown, killable, logger ?? NullLogger.Instance);
        try
        {
            handlers.Add(PosixSignal.SIGTERM, "SIGTERM", handlers.RequestShutdown);
            handlers.Add(PosixSignal.SIGINT, "SIGINT", handlers.RequestShutdown);
            handlers.Add(UserSignal1, "SIGUSR1", killable ? handlers.RequestShutdown : handlers.IgnoreUserSignal);
            handlers.Add(UserSignal2, "SIGUSR2", killable ? handlers.RequestShutdown : handlers.IgnoreUserSignal);
            handlers.Add(PosixSignal.SIGHUP, "SIGHUP", handlers.OnHangup);
        }
        catch
        {
            handlers.Dispose();
            throw;
        }

        lock (Active)
        {
            Active.Add(handlers);
        }

        return handlers;
    }

    /// <summary>Removes the handlers; the signals get their default action again. Calling it again does nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }

        lock (Active)
        {
            Active.Remove(this);
        }
    }

    private void Add(PosixSignal signal, string name, Action<PosixSignalContext, string> handler) =>
        _registrations.Add(PosixSignalRegistration.Create(signal, context => handler(context, name)));

    private void RequestShutdown(PosixSignalContext context, string name)
    {
        if (Interlocked.Increment(ref _shutdownRequests) > 1)
        {
            Log.ForcedExit(_logger, name);
            context.Cancel = false;
            return;
        }

        context.Cancel = true;
        ShutdownSignal = context.Signal;
        Log.ShutdownRequested(_logger, name);
        try
        {
            _shutdown.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The program is past its shutdown already.
        }
        catch (AggregateException e)
        {
            // A cancellation callback failed; the shutdown it requested is still under way.
            Log.CancellationCallbackFailed(_logger, e);
        }
    }

    private void IgnoreUserSignal(PosixSignalContext context, string name)
    {
        context.Cancel = true;
        Log.UserSignalIgnored(_logger, name);
    }

    private void OnHangup(PosixSignalContext context, string _)
    {
        context.Cancel = true;
        var handlers = Hangup;
        if (handlers is null)
        {
            Log.HangupIgnored(_logger);
            return;
        }

        foreach (var handler in handlers.GetInvocationList().Cast<EventHandler>())
        {
            try
            {
                handler(this, EventArgs.Empty);
            }
#pragma warning disable CA1031 // A reload that fails for any reason must not take the running server down with it.
            catch (Exception e)
#pragma warning restore CA1031
            {
                Log.HangupHandlerFailed(_logger, e);
            }
        }
    }
}
