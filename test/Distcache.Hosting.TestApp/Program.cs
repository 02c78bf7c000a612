using System.Globalization;
using Distcache.Hosting;

namespace Distcache.Hosting.TestApp;

/// <summary>
/// A stand-in for dc_server that the hosting tests run as a real process: it detaches, writes a pid file,
/// handles signals and switches user exactly as a distcache tool's Main would, and has switches to fail or hang
/// during start-up. It stops by itself after -sleep seconds so that a test that goes wrong leaves nothing behind.
/// </summary>
internal static class Program
{
    private static readonly FlagOption DaemonFlag = new("daemon", "detach and run in the background");
    private static readonly ValueOption<string> PidFileOption = new("pidfile", "path", "write the process id here", ValueParsers.NonEmptyText);
    private static readonly ValueOption<uint> SleepOption = new("sleep", "secs", "run this long, then exit", ValueParsers.UInt32InRange(0, 3600)) { DefaultValue = 60 };
    private static readonly FlagOption KillableFlag = new("killable", "let SIGUSR1 and SIGUSR2 stop the process");
    private static readonly ValueOption<string> FailOption = new("fail", "text", "fail during start-up with this message", ValueParsers.Text);
    private static readonly FlagOption HangFlag = new("hang", "never report start-up as finished");
    private static readonly ValueOption<uint> ReadyTimeoutOption = new("ready-timeout", "secs", "how long the parent waits for start-up", ValueParsers.UInt32InRange(1, 300)) { DefaultValue = 30 };
    private static readonly ValueOption<string> UserOption = new("user", "name", "switch to this user", ValueParsers.NonEmptyText) { Repeatable = true };
    private static readonly ValueOption<string> HupFileOption = new("hupfile", "path", "append a line here on every SIGHUP", ValueParsers.NonEmptyText);
    private static readonly ValueOption<string> SayOption = new("say", "text", "print this during start-up", ValueParsers.Text) { Aliases = ["print"] };

    private static readonly CommandLineSpec Spec = new("hosting-testapp",
    [
        DaemonFlag, PidFileOption, SleepOption, KillableFlag, FailOption, HangFlag, ReadyTimeoutOption, UserOption, HupFileOption, SayOption,
    ]);

    private static int Main(string[] args)
    {
        if (!Spec.TryParse(args, out var options, out var exitCode))
        {
            return exitCode;
        }

        if (options.IsSet(DaemonFlag) && !Daemon.IsDaemonChild)
        {
            return Daemon.RunDetached(args, TimeSpan.FromSeconds(options.GetValue(ReadyTimeoutOption)));
        }

        try
        {
            if (Daemon.IsDaemonChild)
            {
                Daemon.StartSession();
            }

            using var shutdown = new CancellationTokenSource();
            using var signals = SignalHandlers.Register(shutdown, options.IsSet(KillableFlag));
            if (options.TryGetValue(HupFileOption, out var hupFile))
            {
                signals.Hangup += (_, _) => File.AppendAllText(hupFile, "hup\n");
            }

            if (options.TryGetValue(SayOption, out var text))
            {
                Console.WriteLine(text);
            }

            if (options.TryGetValue(FailOption, out var failure))
            {
                Console.Error.WriteLine("Error, " + failure);
                return 3;
            }

            foreach (var user in options.GetValues(UserOption))
            {
                var account = Privileges.SwitchUser(user);
                Console.WriteLine($"switched to {account.Name}: {DescribeCredentials()}");
            }

            using var pidFile = options.TryGetValue(PidFileOption, out var pidPath) ? PidFile.Create(pidPath) : null;
            Timer? chatter = null;
            if (!options.IsSet(HangFlag))
            {
                Daemon.NotifyReady();

                // Keep writing after start-up: a daemon whose parent has gone must not die of a broken pipe.
                chatter = new Timer(_ =>
                {
                    Console.WriteLine("tick");
                    Console.Error.WriteLine("tock");
                }, null, TimeSpan.Zero, TimeSpan.FromMilliseconds(100));
            }

            using var stopChatter = chatter;

            shutdown.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(options.GetValue(SleepOption)));
            Console.WriteLine(signals.ShutdownSignal is { } signal ? $"stopping on {signal}" : "stopping after -sleep");
            return 0;
        }
        catch (HostingException e)
        {
            Console.Error.WriteLine("Error, " + e.Message);
            return 1;
        }
    }

    /// <summary>The ids from /proc, and whether every thread of the process carries the same user ids.</summary>
    private static string DescribeCredentials()
    {
        string Field(string status, string name) =>
            status.Split('\n').First(line => line.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim();

        var own = File.ReadAllText("/proc/self/status");
        var threadUids = Directory.GetDirectories("/proc/self/task")
            .Select(task => { try { return Field(File.ReadAllText(Path.Combine(task, "status")), "Uid"); } catch (IOException) { return null; } })
            .OfType<string>()
            .Distinct()
            .ToList();
        return string.Create(CultureInfo.InvariantCulture,
            $"uid={Field(own, "Uid")} gid={Field(own, "Gid")} groups={Field(own, "Groups")} thread-uids={string.Join('|', threadUids)}");
    }
}
