using System.Globalization;

namespace Distcache.Hosting.Tests;

/// <summary>Writing and removing the -pidfile.</summary>
public sealed class PidFileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("dc-pidfile-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static string OwnPidLine => Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n";

    [Fact]
    public void Holds_the_process_id_in_decimal_with_a_newline_and_leaves_no_temporary_behind()
    {
        var path = Path.Combine(_directory, "dc.pid");

        using var pidFile = PidFile.Create(path);

        Assert.Equal(OwnPidLine, File.ReadAllText(path));
        Assert.Equal(path, pidFile.Path);
        Assert.Equal(Environment.ProcessId, pidFile.ProcessId);
        Assert.Equal(["dc.pid"], Directory.GetFiles(_directory).Select(Path.GetFileName));
        Assert.True(PidFile.TryRead(path, out var read));
        Assert.Equal(Environment.ProcessId, read);
    }

    [Fact]
    public void Replaces_a_stale_file()
    {
        var path = Path.Combine(_directory, "dc.pid");
        File.WriteAllText(path, "99999999 and some junk that is longer than a pid\n");

        using var pidFile = PidFile.Create(path);

        Assert.Equal(OwnPidLine, File.ReadAllText(path));
    }

    [Fact]
    public void A_relative_path_is_made_absolute_once_at_creation()
    {
        var path = Path.Combine(_directory, "relative.pid");
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, path);

        using var pidFile = PidFile.Create(relative);

        Assert.Equal(path, pidFile.Path);
        Assert.True(File.Exists(path));
    }

    [Fact]
    public void Is_removed_on_dispose_and_only_once()
    {
        var path = Path.Combine(_directory, "dc.pid");
        var pidFile = PidFile.Create(path);

        Assert.True(pidFile.Remove());
        Assert.False(File.Exists(path));
        Assert.False(pidFile.Remove());
        pidFile.Dispose();
    }

    [Fact]
    public void Dispose_removes_it()
    {
        var path = Path.Combine(_directory, "dc.pid");

        PidFile.Create(path).Dispose();

        Assert.False(File.Exists(path));
    }

    [Fact]
    public void A_file_taken_over_by_another_process_is_left_alone()
    {
        var path = Path.Combine(_directory, "dc.pid");
        var pidFile = PidFile.Create(path);
        File.WriteAllText(path, "1\n");

        Assert.False(pidFile.Remove());
        pidFile.Dispose();

        Assert.Equal("1\n", File.ReadAllText(path));
    }

    [Fact]
    public void A_file_that_vanished_is_not_an_error()
    {
        var path = Path.Combine(_directory, "dc.pid");
        using var pidFile = PidFile.Create(path);
        File.Delete(path);

        Assert.False(pidFile.Remove());
    }

    [Fact]
    public void A_missing_directory_fails_and_leaves_nothing_behind()
    {
        var path = Path.Combine(_directory, "missing", "dc.pid");

        Assert.ThrowsAny<IOException>(() => PidFile.Create(path));

        Assert.Empty(Directory.GetFileSystemEntries(_directory));
    }

    [Theory]
    [InlineData("")]
    [InlineData("abc\n")]
    [InlineData("-5\n")]
    [InlineData("12 34\n")]
    [InlineData("99999999999999\n")]
    public void TryRead_rejects_anything_but_a_number(string content)
    {
        var path = Path.Combine(_directory, "odd.pid");
        File.WriteAllText(path, content);

        Assert.False(PidFile.TryRead(path, out _));
        Assert.False(PidFile.TryRead(Path.Combine(_directory, "absent.pid"), out _));
    }
}
