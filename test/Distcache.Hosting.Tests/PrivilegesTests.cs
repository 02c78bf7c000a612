using Distcache.Hosting.Tests.Support;

namespace Distcache.Hosting.Tests;

/// <summary>User and group lookups, and -user. The switch itself only ever runs in a child process.</summary>
public sealed class PrivilegesTests : IDisposable
{
    private const string Unknown = "no-such-user-dc-hosting";
    private readonly TestAppHarness _app = new();

    public void Dispose() => _app.Dispose();

    [Theory]
    [InlineData("root")]
    [InlineData("0")]
    public void Root_resolves_by_name_and_by_number(string text)
    {
        Assert.True(Privileges.TryGetUserId(text, out var uid));
        Assert.Equal(0u, uid);
        Assert.True(Privileges.TryGetGroupId(text, out var gid));
        Assert.Equal(0u, gid);
        Assert.True(Privileges.TryGetUser(text, out var account));
        Assert.Equal(new UserAccount("root", 0, 0), account);
    }

    [Theory]
    [InlineData(Unknown)]
    [InlineData("")]
    [InlineData("4294967295")]
    [InlineData("-1")]
    public void Unknown_names_and_impossible_ids_do_not_resolve(string text)
    {
        Assert.False(Privileges.TryGetUserId(text, out var uid));
        Assert.Equal(0u, uid);
        Assert.False(Privileges.TryGetGroupId(text, out var gid));
        Assert.Equal(0u, gid);
        Assert.False(Privileges.TryGetUser(text, out var account));
        Assert.Null(account);
    }

    [Fact]
    public void A_number_is_an_id_even_without_a_database_entry_but_not_an_account()
    {
        Assert.True(Privileges.TryGetUserId("3999999", out var uid));
        Assert.Equal(3999999u, uid);
        Assert.True(Privileges.TryGetGroupId("3999999", out var gid));
        Assert.Equal(3999999u, gid);
        Assert.False(Privileges.TryGetUser("3999999", out _));
    }

    [Theory]
    [InlineData(Unknown)]
    [InlineData("3999999")]
    public void Switching_to_an_unknown_user_fails_before_changing_anything(string user)
    {
        var before = File.ReadAllText("/proc/self/status");

        var error = Assert.Throws<HostingException>(() => Privileges.SwitchUser(user));

        Assert.Equal($"cannot switch to user \"{user}\": no such user", error.Message);
        Assert.Equal(0, error.ErrorNumber);
        Assert.Equal(Uids(before), Uids(File.ReadAllText("/proc/self/status")));
    }

    [Fact]
    public async Task Root_switches_every_thread_to_the_user_with_its_groups()
    {
        Assert.SkipUnless(IsRoot(), "only root can switch user");
        Assert.SkipUnless(Privileges.TryGetUser("nobody", out var nobody), "there is no user 'nobody'");

        var run = await _app.RunAsync("-user", "nobody", "-sleep", "0");

        Assert.Equal(0, run.ExitCode);
        var ids = $"{nobody.UserId}\t{nobody.UserId}\t{nobody.UserId}\t{nobody.UserId}";
        var groups = $"{nobody.GroupId}\t{nobody.GroupId}\t{nobody.GroupId}\t{nobody.GroupId}";
        Assert.StartsWith($"switched to nobody: uid={ids} gid={groups} groups=", run.Output, StringComparison.Ordinal);
        // One distinct Uid line across all threads: glibc applied setuid to the runtime's threads too.
        Assert.Contains($"thread-uids={ids}\n", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_failed_call_reports_the_step_and_the_system_error()
    {
        Assert.SkipUnless(IsRoot(), "only root can switch user in the first place");
        Assert.SkipUnless(Privileges.TryGetUser("nobody", out _), "there is no user 'nobody'");

        var run = await _app.RunAsync("-user", "nobody", "-user", "root", "-sleep", "0");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("Error, cannot set the supplementary groups of user \"root\": Operation not permitted\n", run.Error);
    }

    private static bool IsRoot() => Uids(File.ReadAllText("/proc/self/status")).StartsWith("0\t", StringComparison.Ordinal);

    private static string Uids(string status) =>
        status.Split('\n').First(line => line.StartsWith("Uid:", StringComparison.Ordinal))[4..].Trim();
}
