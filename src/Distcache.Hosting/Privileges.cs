using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using Distcache.Networking;

namespace Distcache.Hosting;

/// <summary>A user of the system's user database.</summary>
/// <param name="Name">The login name.</param>
/// <param name="UserId">The numeric user id.</param>
/// <param name="GroupId">The user's primary group id.</param>
public sealed record UserAccount(string Name, uint UserId, uint GroupId);

/// <summary>
/// User and group lookups through libc (so NSS sources such as LDAP count, not only <c>/etc/passwd</c>), and
/// dropping root privileges for <c>-user</c>. Unix only.
/// </summary>
/// <remarks>
/// A text that is a valid name is looked up as a name first, as <c>chown</c> does, so a user literally named
/// <c>123</c> wins over uid 123; only when no such name exists is a decimal text taken as an id.
/// </remarks>
public static class Privileges
{
    /// <summary>Finds a user by name, or by decimal uid when there is no user of that name.</summary>
    /// <param name="nameOrUid">A login name or a decimal user id.</param>
    /// <param name="account">The user when found.</param>
    /// <returns>False when there is no such user or the user database cannot be read.</returns>
    public static bool TryGetUser(string nameOrUid, [NotNullWhen(true)] out UserAccount? account) =>
        LookUpUser(nameOrUid, out account, out _) == LookupStatus.Found;

    /// <summary>
    /// Resolves a user name to its uid. A decimal number is accepted as a uid even when no user has it, because
    /// the kernel needs no database entry to own a file or run a process.
    /// </summary>
    /// <param name="nameOrNumber">A login name or a decimal user id.</param>
    /// <param name="uid">The user id.</param>
    /// <returns>False for an unknown name, an id out of range, or an unreadable user database.</returns>
    public static bool TryGetUserId(string nameOrNumber, out uint uid)
    {
        uid = 0;
        if (string.IsNullOrEmpty(nameOrNumber))
        {
            return false;
        }

        switch (Networking.NativeMethods.GetUserByName(nameOrNumber, out var entry, out _))
        {
            case LookupStatus.Found:
                uid = entry.UserId;
                return true;
            case LookupStatus.NotFound:
                return TryParseId(nameOrNumber, out uid);
            default:
                return false;
        }
    }

    /// <summary>Resolves a group name to its gid; a decimal number is accepted as a gid even when no group has it.</summary>
    /// <param name="nameOrNumber">A group name or a decimal group id.</param>
    /// <param name="gid">The group id.</param>
    /// <returns>False for an unknown name, an id out of range, or an unreadable group database.</returns>
    public static bool TryGetGroupId(string nameOrNumber, out uint gid)
    {
        gid = 0;
        if (string.IsNullOrEmpty(nameOrNumber))
        {
            return false;
        }

        switch (Networking.NativeMethods.GetGroupByName(nameOrNumber, out var found, out _))
        {
            case LookupStatus.Found:
                gid = found;
                return true;
            case LookupStatus.NotFound:
                return TryParseId(nameOrNumber, out gid);
            default:
                return false;
        }
    }

    /// <summary>
    /// Makes the process run as <paramref name="userNameOrUid"/> for good: supplementary groups from the group
    /// database (<c>initgroups</c>), then the primary group (<c>setgid</c>), then the user (<c>setuid</c>) - in
    /// that order, because after <c>setuid</c> the process no longer has the right to change its groups. As root
    /// this changes real, effective and saved ids, so root cannot be regained; that is checked afterwards.
    /// </summary>
    /// <remarks>
    /// <para>
    /// The kernel keeps credentials per thread, but glibc's <c>setuid</c>, <c>setgid</c> and <c>setgroups</c>
    /// apply the change to every thread of the process (the .NET runtime's own threads included), so the whole
    /// process is switched. Call it after binding privileged ports or files and before serving anything.
    /// </para>
    /// <para>
    /// A uid without a user database entry is refused: its primary group and supplementary groups would be
    /// unknown, and keeping root's groups would defeat the point. Switching to the user the process already
    /// runs as (not root) does nothing, since an unprivileged process may not call <c>initgroups</c>.
    /// </para>
    /// </remarks>
    /// <param name="userNameOrUid">A login name or a decimal user id.</param>
    /// <returns>The user the process now runs as.</returns>
    /// <exception cref="HostingException">
    /// The user is unknown, the user database cannot be read, or a call failed (typically "Operation not
    /// permitted" when the process is not root); the message names the step and the system's error text, and
    /// <see cref="HostingException.ErrorNumber"/> holds errno. After a failure the process may have changed its
    /// groups but not yet its user: treat it as fatal.
    /// </exception>
    public static UserAccount SwitchUser(string userNameOrUid)
    {
        ArgumentNullException.ThrowIfNull(userNameOrUid);
        switch (LookUpUser(userNameOrUid, out var account, out var error))
        {
            case LookupStatus.NotFound:
                throw new HostingException($"cannot switch to user \"{userNameOrUid}\": no such user");
            case LookupStatus.Failed:
                throw new HostingException($"cannot switch to user \"{userNameOrUid}\": cannot read the user database: {error}");
        }

        if (NativeMethods.GetEUid() != 0
            && NativeMethods.GetUid() == account!.UserId && NativeMethods.GetEUid() == account.UserId
            && NativeMethods.GetGid() == account.GroupId && NativeMethods.GetEGid() == account.GroupId)
        {
            return account;
        }

        if (NativeMethods.GetEUid() == 0)
        {
            PreloadApplicationAssemblies();
        }

        Check(NativeMethods.InitGroups(account!.Name, account.GroupId), $"cannot set the supplementary groups of user \"{account.Name}\"");
        Check(NativeMethods.SetGid(account.GroupId), $"cannot change the group to {account.GroupId}");
        Check(NativeMethods.SetUid(account.UserId), $"cannot change the user to \"{account.Name}\" ({account.UserId})");

        // A setuid that only changed the effective id (as for a set-user-id binary run by someone else) would
        // let the process switch back; a real drop makes this fail.
        if (account.UserId != 0 && NativeMethods.SetUid(0) == 0)
        {
            throw new HostingException($"switched to user \"{account.Name}\" but root privileges could still be regained");
        }

        return account;
    }

    private static LookupStatus LookUpUser(string nameOrUid, out UserAccount? account, out string? error)
    {
        account = null;
        error = null;
        if (string.IsNullOrEmpty(nameOrUid))
        {
            return LookupStatus.NotFound;
        }

        var status = Networking.NativeMethods.GetUserByName(nameOrUid, out var entry, out error);
        if (status == LookupStatus.NotFound && TryParseId(nameOrUid, out var uid))
        {
            status = Networking.NativeMethods.GetUserById(uid, out entry, out error);
        }

        if (status == LookupStatus.Found)
        {
            account = new UserAccount(entry.Name, entry.UserId, entry.GroupId);
        }

        return status;
    }

    private static bool TryParseId(string text, out uint id)
    {
        // (uid_t)-1 means "leave unchanged" to chown and setreuid; it is never a real id.
        var ok = ValueParsers.TryParseUnsigned(text, out var number) && number < uint.MaxValue;
        id = ok ? (uint)number : 0;
        return ok;
    }

    private static void Check(int result, string step)
    {
        if (result != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new HostingException($"{step}: {Networking.NativeMethods.ErrorText(errno)}", errno);
        }
    }

    // .NET loads an assembly on its first use, from the application's directory. After the switch that directory
    // may not be readable by the new user (a root-owned install with mode 0700, a home directory), and the first
    // connection would then fail to load the code that serves it: seen as connections reset right after start-up.
    // Loading every assembly of the application while still privileged avoids that; the shared framework lives in
    // a world-readable directory.
    private static void PreloadApplicationAssemblies()
    {
        string[] paths;
        try
        {
            paths = Directory.GetFiles(AppContext.BaseDirectory, "*.dll");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Unreadable even now: the switch itself will go on, and loading will fail as it would have.
            return;
        }

        foreach (string path in paths)
        {
            try
            {
                AssemblyLoadContext.Default.LoadFromAssemblyName(AssemblyName.GetAssemblyName(path));
            }
            catch (Exception e) when (e is BadImageFormatException or IOException or UnauthorizedAccessException)
            {
                // A native library or an assembly this application does not bind to: nothing to preload.
            }
        }
    }
}
