using System.Globalization;
using System.Security.Cryptography.X509Certificates;

namespace Distcache.Server;

/// <summary>What one authenticated client may see and do.</summary>
/// <param name="Identity">The client certificate's subject, as logged.</param>
/// <param name="Partition">The name of the client's partition: sessions stored by one partition are invisible to every other.</param>
/// <param name="ReadOnly">True when ADD and REMOVE are refused (answered with the protocol's failure code).</param>
public sealed record ClientAccess(string Identity, string Partition, bool ReadOnly);

/// <summary>
/// Maps a verified client certificate to its <see cref="ClientAccess"/>: either every subject gets a partition of
/// its own (<see cref="PartitionBySubject"/>), or a mapping file says which subjects share which partition and which
/// are read-only (<see cref="Load"/>).
/// </summary>
/// <remarks>
/// <para>The mapping file has one line per certificate subject: the partition name, <c>rw</c> or <c>ro</c>, then the
/// subject written as <c>openssl x509 -noout -subject -nameopt RFC2253</c> prints it, or as dc_server logs it (spaces
/// after the commas and around the equals signs do not matter). Blank lines and lines starting with <c>#</c> are ignored:</para>
/// <code>
/// # partition  access  subject
/// shop         rw      CN=web1.shop.example,O=Shop
/// shop         ro      CN=reports.shop.example,O=Shop
/// </code>
/// <para>A subject the file does not list is refused: with a mapping, access is granted explicitly.</para>
/// </remarks>
public sealed class ClientAccessPolicy
{
    private readonly string? _file;
    private IReadOnlyDictionary<string, (string Partition, bool ReadOnly)>? _map;

    private ClientAccessPolicy(string? file, IReadOnlyDictionary<string, (string, bool)>? map)
    {
        _file = file;
        _map = map;
    }

    /// <summary>Each certificate subject is its own partition, with read and write access.</summary>
    public static ClientAccessPolicy PartitionBySubject { get; } = new(null, null);

    /// <summary>The mapping file this policy was loaded from, or null for <see cref="PartitionBySubject"/>.</summary>
    public string? File => _file;

    /// <summary>Reads a mapping file (format in the remarks).</summary>
    /// <param name="path">The file.</param>
    /// <returns>The policy.</returns>
    /// <exception cref="FormatException">A line is malformed or a subject repeats; the message names the file and line.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file cannot be read.</exception>
    public static ClientAccessPolicy Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return new ClientAccessPolicy(path, Parse(path, System.IO.File.ReadAllLines(path)));
    }

    /// <summary>Reads the mapping file again; on failure the previous mapping stays in force. Does nothing for
    /// <see cref="PartitionBySubject"/>.</summary>
    /// <exception cref="FormatException">See <see cref="Load"/>.</exception>
    /// <exception cref="IOException">See <see cref="Load"/>.</exception>
    /// <exception cref="UnauthorizedAccessException">See <see cref="Load"/>.</exception>
    public void Reload()
    {
        if (_file is not null)
        {
            Volatile.Write(ref _map, Parse(_file, System.IO.File.ReadAllLines(_file)));
        }
    }

    /// <summary>The access of a client whose certificate has been verified, or null if it is not allowed in.</summary>
    /// <param name="certificate">The client's certificate.</param>
    /// <returns>Its access, or null.</returns>
    public ClientAccess? Resolve(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        string subject = NormalizeSubject(certificate.SubjectName.Name);
        var map = Volatile.Read(ref _map);
        if (map is null)
        {
            return new ClientAccess(subject, subject, ReadOnly: false);
        }

        return map.TryGetValue(subject, out var entry) ? new ClientAccess(subject, entry.Partition, entry.ReadOnly) : null;
    }

    /// <summary>Parses the lines of a mapping file; <paramref name="source"/> names it in errors.</summary>
    internal static Dictionary<string, (string, bool)> Parse(string source, IEnumerable<string> lines)
    {
        var map = new Dictionary<string, (string, bool)>(StringComparer.Ordinal);
        int number = 0;
        foreach (string raw in lines)
        {
            number++;
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            string[] fields = line.Split((char[]?)null, 3, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 3)
            {
                throw Bad(source, number, "expected: partition rw|ro subject");
            }

            bool readOnly = fields[1] switch
            {
                "ro" => true,
                "rw" => false,
                _ => throw Bad(source, number, $"access must be rw or ro, not '{fields[1]}'"),
            };

            string subject = NormalizeSubject(fields[2]);
            if (!subject.Contains('=', StringComparison.Ordinal))
            {
                throw Bad(source, number, $"'{fields[2]}' is not a certificate subject (expected for example CN=web1.example.com,O=Example)");
            }

            if (!map.TryAdd(subject, (fields[0], readOnly)))
            {
                throw Bad(source, number, $"subject '{subject}' is listed twice");
            }
        }

        return map;
    }

    /// <summary>
    /// One spelling for a subject: its attributes in the order written, separated by a comma and a space, without
    /// spaces around them. openssl's RFC 2253 form (<c>CN=a,O=b</c>) and .NET's (<c>CN=a, O=b</c>) list the attributes
    /// in the same order, so both become <c>CN=a, O=b</c>.
    /// </summary>
    internal static string NormalizeSubject(string subject)
    {
        var parts = new List<string>();
        var current = new System.Text.StringBuilder();
        bool quoted = false;
        for (int i = 0; i < subject.Length; i++)
        {
            char c = subject[i];
            if (c == '\\' && i + 1 < subject.Length)
            {
                current.Append(c).Append(subject[++i]);
                continue;
            }

            if (c == '"')
            {
                quoted = !quoted;
            }

            if (c == ',' && !quoted)
            {
                parts.Add(current.ToString().Trim());
                current.Clear();
                continue;
            }

            current.Append(c);
        }

        parts.Add(current.ToString().Trim());
        return string.Join(", ", parts.Where(p => p.Length > 0).Select(p =>
        {
            int equals = p.IndexOf('=', StringComparison.Ordinal);
            return equals < 0 ? p : p[..equals].Trim() + "=" + p[(equals + 1)..].Trim();
        }));
    }

    private static FormatException Bad(string source, int line, string problem) =>
        new(string.Create(CultureInfo.InvariantCulture, $"{source} line {line}: {problem}"));
}
