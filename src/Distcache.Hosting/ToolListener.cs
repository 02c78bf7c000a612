using Distcache.Networking;
using Microsoft.Extensions.Logging;

namespace Distcache.Hosting;

/// <summary>
/// The listening socket of a tool: the unix-socket flags read into <see cref="ListenerOptions"/>, and a listen that
/// turns every way it can fail into the tools' one-line error. dc_server, dc_client and dc_snoop share it; each
/// keeps its own option objects, because their help texts differ as 1.5.1's did.
/// </summary>
public static class ToolListener
{
    /// <summary>The unix-socket options given on the command line (absent flags leave the defaults).</summary>
    /// <param name="options">The parsed command line.</param>
    /// <param name="owner">-sockowner.</param>
    /// <param name="group">-sockgroup.</param>
    /// <param name="mode">-sockperms.</param>
    /// <param name="allowUid">-allow-uid.</param>
    /// <param name="allowGid">-allow-gid.</param>
    /// <param name="logger">The listener's logger.</param>
    /// <param name="nativeTransport">Serve connections on <see cref="ListenerOptions.NativeTransport"/>.</param>
    /// <returns>Options for <see cref="TryListenAsync"/>.</returns>
    public static ListenerOptions ReadOptions(
        ParseResult options,
        ValueOption<string> owner,
        ValueOption<string> group,
        ValueOption<UnixFileMode> mode,
        ValueOption<uint[]> allowUid,
        ValueOption<uint[]> allowGid,
        ILogger logger,
        bool nativeTransport = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new ListenerOptions
        {
            UnixSocketOwner = options.TryGetValue(owner, out string? user) ? user : null,
            UnixSocketGroup = options.TryGetValue(group, out string? name) ? name : null,
            UnixSocketMode = options.TryGetValue(mode, out UnixFileMode permissions) ? permissions : null,
            AllowedPeerUserIds = options.TryGetValue(allowUid, out uint[]? uids) ? uids : null,
            AllowedPeerGroupIds = options.TryGetValue(allowGid, out uint[]? gids) ? gids : null,
            Logger = logger,
            NativeTransport = nativeTransport,
        };
    }

    /// <summary>
    /// Where to listen, given the <c>-listen</c> flag and the sockets systemd may have passed (a socket unit, the
    /// <c>LISTEN_FDS</c> protocol). A passed socket is used when <c>-listen</c> is left out or names it
    /// (<c>FD:3</c>); any other combination is refused rather than leaving one of the two unused.
    /// </summary>
    /// <param name="tool">The tool's name, for messages.</param>
    /// <param name="given">The <c>-listen</c> address, or null when it was not given.</param>
    /// <param name="daemon">Whether <c>-daemon</c> was given.</param>
    /// <param name="address">Where to listen; null when neither names a place (the tool's own default, or error, applies).</param>
    /// <returns>Null, or what is wrong (the text after <c>Error, </c>).</returns>
    public static string? ChooseAddress(string tool, Address? given, bool daemon, out Address? address)
    {
        address = given;
        var passed = Systemd.TakeListenSockets(out var problem);
        if (problem is not null)
        {
            return problem;
        }

        if (passed == 0)
        {
            return null;
        }

        if (daemon)
        {
            return "-daemon does not go with a listening socket passed by systemd (LISTEN_FDS): run in the foreground, as a Type=notify service";
        }

        if (passed > 1)
        {
            return $"systemd passed {passed} listening sockets (LISTEN_FDS={passed}) and {tool} listens on one: give the socket unit a single Listen line";
        }

        if (given is null)
        {
            address = Address.Parse("FD:" + Systemd.FirstListenDescriptor.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return null;
        }

        return given is { Kind: AddressKind.FileDescriptor, FileDescriptor: Systemd.FirstListenDescriptor }
            ? null
            : $"-listen {given} was given, but systemd passed a listening socket (LISTEN_FDS=1): leave -listen out, or give -listen FD:3";
    }

    /// <summary>Listens on <paramref name="address"/>; on failure writes "Error, failed to listen on ADDRESS: why"
    /// to standard error (see <see cref="Reason"/>) and returns null.</summary>
    /// <param name="address">Where to listen.</param>
    /// <param name="options">Socket options (owner, group and mode are applied before listen(2)).</param>
    /// <param name="log">The tool's log, which gets the error line too; standard error only when null.</param>
    /// <returns>The listener, or null if it could not be created.</returns>
    public static async Task<NetworkListener?> TryListenAsync(Address address, ListenerOptions options, ToolLog? log = null)
    {
        try
        {
            return NetworkListener.Listen(address, options);
        }
        catch (Exception e) when (e is NetworkException or ArgumentException or IOException or UnauthorizedAccessException
            or System.Net.Sockets.SocketException or PlatformNotSupportedException)
        {
            var problem = $"failed to listen on {address}: {Reason(address, e)}";
            if (log is null)
            {
                await Console.Error.WriteLineAsync("Error, " + problem).ConfigureAwait(false);
            }
            else
            {
                log.Error(problem);
            }

            return null;
        }
    }

    /// <summary>
    /// Why listening failed, in the user's terms. bind(2) on a unix socket path whose directory is missing fails
    /// with ENOENT, which the runtime reports as "Cannot assign requested address"; the path is what to fix.
    /// </summary>
    /// <param name="address">The address that could not be listened on.</param>
    /// <param name="failure">What listening threw.</param>
    /// <returns>The reason to print after the address.</returns>
    public static string Reason(Address address, Exception failure)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(failure);
        // A directory that cannot be searched also looks missing from here; permission is then the real cause.
        bool denied = failure is NetworkException { SocketError: System.Net.Sockets.SocketError.AccessDenied }
            or System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.AccessDenied }
            or UnauthorizedAccessException;
        if (!denied && address.Kind == AddressKind.Unix && address.Path is { Length: > 0 } path)
        {
            string directory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
            string shown = Path.GetDirectoryName(path) is { Length: > 0 } written ? written : directory;
            if (File.Exists(directory))
            {
                return $"{shown} is a file, not a directory";
            }

            if (!Directory.Exists(directory))
            {
                return $"the directory {shown} does not exist";
            }
        }

        return failure.Message;
    }
}
