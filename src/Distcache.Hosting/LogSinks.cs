using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Distcache.Hosting;

/// <summary>Where a tool's log lines go: standard error, a file (<c>-log</c>), or syslog. Writes are serialised by the caller.</summary>
internal abstract class LogSink : IDisposable
{
    /// <summary>For messages: "standard error", "the file /var/log/x", "syslog at /dev/log".</summary>
    public abstract string Description { get; }

    /// <summary>Whether text lines need a timestamp of their own (syslog and the journal record the time themselves).</summary>
    public virtual bool TimestampsText => false;

    /// <summary>Writes one line (without its line end).</summary>
    /// <returns>Null when written, otherwise why not.</returns>
    public abstract string? Write(LogLevel level, string line);

    /// <summary>SIGHUP: opens the destination again (a file that logrotate renamed). Null when there is nothing to reopen.</summary>
    /// <returns>What was done, for the SIGHUP line.</returns>
    /// <exception cref="HostingException">It could not be opened again; the previous destination stays in use.</exception>
    public virtual string? Reopen() => null;

    public abstract void Dispose();
}

/// <summary>
/// Standard error, as before <c>-log</c> existed. When standard error is the journal's stream (systemd's
/// <c>JOURNAL_STREAM</c> names it), each line starts with its syslog severity, <c>&lt;4&gt;</c>, which journald
/// takes off and records as the entry's priority.
/// </summary>
internal sealed class StandardErrorSink(bool journalPrefixes) : LogSink
{
    public bool JournalPrefixes { get; } = journalPrefixes;

    public override string Description => JournalPrefixes ? "standard error (the journal)" : "standard error";

    public override string? Write(LogLevel level, string line)
    {
        try
        {
            Console.Error.WriteLine(JournalPrefixes ? Prefix(level) + line : line);
            return null;
        }
        catch (IOException e)
        {
            return e.Message;
        }
    }

    public override void Dispose()
    {
        // Standard error is not the log's to close.
    }

    public static string Prefix(LogLevel level) => "<" + LogLineFormat.SyslogSeverity(level).ToString(CultureInfo.InvariantCulture) + ">";
}

/// <summary>
/// <c>-log FILE</c>: appended to with <c>O_APPEND</c> (so a <c>copytruncate</c> rotation or a second writer never
/// leaves a gap or overwrites), created with mode 0640 (less the umask), reopened by name on SIGHUP.
/// </summary>
internal sealed class FileSink : LogSink
{
    // Linux's numbers (x86-64, arm64 and the other generic architectures).
    private const int OpenWriteOnly = 0x1;
    private const int OpenCreate = 0x40;
    private const int OpenAppend = 0x400;
    private const int OpenCloseOnExec = 0x80000;
    private const uint CreateMode = 0x1A0; // 0640: the owner writes, its group (adm, say) reads, others nothing.
    private const int Interrupted = 4; // EINTR

    private readonly string _path;
    private int _fd;

    private FileSink(string path, int fd)
    {
        _path = path;
        _fd = fd;
    }

    public override string Description => "the file " + _path;

    public override bool TimestampsText => true;

    /// <summary>Opens (creating if need be) the file.</summary>
    /// <exception cref="HostingException">It cannot be opened; the message names the flag, the path and the reason.</exception>
    public static FileSink Open(string path) => new(path, OpenDescriptor(path));

    public override string? Write(LogLevel level, string line)
    {
        var bytes = Encoding.UTF8.GetBytes(line + "\n");
        var written = 0;
        while (written < bytes.Length)
        {
            var chunk = written == 0 ? bytes : bytes[written..];
            var n = NativeMethods.Write(_fd, chunk, chunk.Length);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Interrupted)
                {
                    continue;
                }

                return $"cannot write to {_path}: {Networking.NativeMethods.ErrorText(errno)}";
            }

            written += (int)n;
        }

        return null;
    }

    public override string? Reopen()
    {
        // The new file is opened before the old one is closed: if it cannot be, logging carries on where it was.
        var fd = OpenDescriptor(_path);
        var old = _fd;
        _fd = fd;
        _ = NativeMethods.Close(old);
        return "reopened the log file " + _path;
    }

    public override void Dispose()
    {
        if (_fd >= 0)
        {
            _ = NativeMethods.Close(_fd);
            _fd = -1;
        }
    }

    private static int OpenDescriptor(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new HostingException($"-log {path}: log files need Linux");
        }

        var fd = NativeMethods.OpenWithMode(path, OpenWriteOnly | OpenCreate | OpenAppend | OpenCloseOnExec, CreateMode);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new HostingException($"-log {path}: cannot open it for appending: {Networking.NativeMethods.ErrorText(errno)}", errno);
        }

        return fd;
    }
}

/// <summary>
/// Syslog through the local socket (<c>/dev/log</c>): one datagram per line in the format of the C library's
/// <c>syslog()</c> (RFC 3164: <c>&lt;PRI&gt;Mmm dd hh:mm:ss TAG[PID]: message</c>), facility daemon. Sends never
/// block: a line the syslog daemon has no room for is dropped (and counted by the caller), since a stalled syslog
/// must not stall the server's threads.
/// </summary>
internal sealed class SyslogSink : LogSink
{
    /// <summary>The socket of the local syslog daemon (journald's, or rsyslog's).</summary>
    public const string DefaultSocket = "/dev/log";

    /// <summary>Names another socket instead of <see cref="DefaultSocket"/>; meant for tests, which bind their own.</summary>
    public const string SocketVariable = "DISTCACHE_SYSLOG_SOCKET";

    private const int FacilityDaemon = 3;

    // RFC 3164 timestamps use English month abbreviations and a space-padded day, whatever the locale.
    private static readonly string[] Months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

    private readonly string _path;
    private readonly string _tag;
    private Socket _socket;

    private SyslogSink(string path, string tag, Socket socket)
    {
        _path = path;
        _tag = tag;
        _socket = socket;
    }

    public override string Description => "syslog at " + _path;

    /// <summary>The syslog socket to use: <see cref="SocketVariable"/> if set, otherwise <see cref="DefaultSocket"/>.</summary>
    public static string SocketPath =>
        Environment.GetEnvironmentVariable(SocketVariable) is { Length: > 0 } path ? path : DefaultSocket;

    /// <summary>Connects to the syslog socket.</summary>
    /// <exception cref="HostingException">There is none, or nothing receives on it; the message tells the operator to give -log.</exception>
    public static SyslogSink Open(string path, string tag)
    {
        if (!File.Exists(path))
        {
            throw new HostingException(
                $"-daemon without -log sends the log to syslog, but there is no syslog socket at {path} (no syslog daemon or journald runs here): give -log FILE");
        }

        try
        {
            return new SyslogSink(path, tag, Connect(path));
        }
        catch (SocketException e)
        {
            throw new HostingException($"-daemon without -log sends the log to syslog, but its socket {path} does not take messages ({e.Message}): give -log FILE", e);
        }
    }

    /// <summary>The datagram for one line.</summary>
    public static byte[] Datagram(LogLevel level, string line, string tag, int pid, DateTime localTime)
    {
        var priority = (FacilityDaemon * 8) + LogLineFormat.SyslogSeverity(level);
        var header = string.Create(CultureInfo.InvariantCulture,
            $"<{priority}>{Months[localTime.Month - 1]} {localTime.Day,2} {localTime:HH':'mm':'ss} {tag}[{pid}]: ");
        return Encoding.UTF8.GetBytes(header + line);
    }

    public override string? Write(LogLevel level, string line)
    {
        var datagram = Datagram(level, line, _tag, Environment.ProcessId, DateTime.Now);
        try
        {
            _socket.Send(datagram);
            return null;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.NotConnected or SocketError.Shutdown)
        {
            // The syslog daemon restarted and bound a new socket at the same path: connect to that one.
            try
            {
                var fresh = Connect(_path);
                _socket.Dispose();
                _socket = fresh;
                _socket.Send(datagram);
                return null;
            }
            catch (SocketException again)
            {
                return $"syslog at {_path}: {again.Message}";
            }
        }
        catch (SocketException e)
        {
            // Full (WouldBlock, NoBufferSpaceAvailable) or too long: this line is lost, the next may pass.
            return $"syslog at {_path}: {e.Message}";
        }
    }

    public override void Dispose() => _socket.Dispose();

    private static Socket Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            socket.Blocking = false;
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
