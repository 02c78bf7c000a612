namespace Distcache.Hosting.Tests;

/// <summary>Replacing a file that another program reads (ticket keys, saved state) whole or not at all.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class AtomicFileTests : IDisposable
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private readonly string _directory = Directory.CreateTempSubdirectory("dc-atomic-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Writes_the_content_with_exactly_the_mode_asked_and_leaves_no_temporary_behind()
    {
        string path = Path.Combine(_directory, "current.key");
        Assert.True(AtomicFile.WriteIfChanged(path, "secret"u8, OwnerOnly));
        Assert.Equal("secret"u8.ToArray(), File.ReadAllBytes(path));
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(path));
        Assert.Equal([path], Directory.GetFiles(_directory));
    }

    [Fact]
    public void The_same_content_is_not_written_again_and_a_new_content_replaces_the_file()
    {
        string path = Path.Combine(_directory, "k");
        AtomicFile.WriteIfChanged(path, "one"u8, OwnerOnly);
        DateTime written = new FileInfo(path).LastWriteTimeUtc;
        long before = Inode(path);
        Assert.False(AtomicFile.WriteIfChanged(path, "one"u8, OwnerOnly));
        Assert.Equal(before, Inode(path));
        Assert.Equal(written, new FileInfo(path).LastWriteTimeUtc);

        // A new file renamed over the old one: a reader that opened the old one keeps reading it whole.
        using var reader = File.OpenRead(path);
        Assert.True(AtomicFile.WriteIfChanged(path, "two!"u8, OwnerOnly));
        Assert.NotEqual(before, Inode(path));
        Assert.Equal("one", new StreamReader(reader).ReadToEnd());
        Assert.Equal("two!", File.ReadAllText(path));
    }

    [Fact]
    public void A_file_with_the_right_bytes_but_a_wider_mode_is_written_again()
    {
        string path = Path.Combine(_directory, "k");
        File.WriteAllText(path, "same");
        File.SetUnixFileMode(path, OwnerOnly | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        Assert.True(AtomicFile.WriteIfChanged(path, "same"u8, OwnerOnly));
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(path));
    }

    [Fact]
    public void A_symbolic_link_is_followed_and_the_file_behind_it_replaced()
    {
        string behind = Directory.CreateDirectory(Path.Combine(_directory, "tmpfs")).FullName;
        string target = Path.Combine(behind, "current.key");
        File.WriteAllText(target, "old");
        string link = Path.Combine(_directory, "current.key");
        File.CreateSymbolicLink(link, target);

        Assert.True(AtomicFile.WriteIfChanged(link, "new"u8, OwnerOnly));
        Assert.Equal(target, new FileInfo(link).LinkTarget);
        Assert.Equal("new", File.ReadAllText(target));
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(target));
        Assert.False(AtomicFile.WriteIfChanged(link, "new"u8, OwnerOnly));
        Assert.Single(Directory.GetFiles(behind));

        // A link to a file not made yet: the file is made behind it.
        string dangling = Path.Combine(_directory, "next.key");
        File.CreateSymbolicLink(dangling, Path.Combine(behind, "next.key"));
        Assert.True(AtomicFile.WriteIfChanged(dangling, "next"u8, OwnerOnly));
        Assert.Equal("next", File.ReadAllText(Path.Combine(behind, "next.key")));
        Assert.NotNull(new FileInfo(dangling).LinkTarget);
    }

    [Fact]
    public void A_missing_directory_fails_and_leaves_nothing()
    {
        string path = Path.Combine(_directory, "no", "k");
        Assert.Throws<DirectoryNotFoundException>(() => AtomicFile.WriteIfChanged(path, "x"u8, OwnerOnly));
        Assert.Empty(Directory.GetFileSystemEntries(_directory));
    }

    private static long Inode(string path)
    {
        var result = Distcache.Testing.Tool.RunProgramAsync("stat", ["-c", "%i", path], TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
        return long.Parse(result.Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
