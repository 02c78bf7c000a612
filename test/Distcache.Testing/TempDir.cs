namespace Distcache.Testing;

/// <summary>A temporary folder for sockets and pid files, removed at the end of the test.</summary>
public sealed class TempDir : IDisposable
{
    /// <summary>Creates the folder.</summary>
    public TempDir()
    {
        // Short and under /tmp: unix socket paths are limited to 107 bytes.
        Path = Directory.CreateTempSubdirectory("dc-").FullName;
    }

    /// <summary>The folder.</summary>
    public string Path { get; }

    /// <summary>The path of a file in the folder.</summary>
    /// <param name="name">The file's name.</param>
    /// <returns>Its path.</returns>
    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Removes the folder and everything in it.</summary>
    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
