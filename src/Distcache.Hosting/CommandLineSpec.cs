using System.Text;

namespace Distcache.Hosting;

/// <summary>
/// The command line of one program in the 1.5.1 style: single-dash words, each followed by its value when it
/// takes one (<c>-listen UNIX:/tmp/x -sessions 1000 -daemon</c>). Every option is also accepted GNU-style as
/// <c>--listen value</c> or <c>--listen=value</c>. <c>-h</c>, <c>-help</c>, <c>-?</c> (and their <c>--</c>
/// forms) ask for the usage.
/// </summary>
/// <remarks>
/// As in 1.5.1 the word after an option is always its value, even when it starts with a dash, and the first
/// error or help request ends parsing. There are no positional arguments: a word that is not an option is an error.
/// </remarks>
public sealed class CommandLineSpec
{
    private const int MinimumColumn = 20;
    private const int MaximumColumn = 30;

    private readonly Dictionary<string, CommandLineOption> _byName = new(StringComparer.Ordinal);

    /// <summary>Creates the spec.</summary>
    /// <param name="programName">The name shown in the usage, for example <c>dc_server</c>.</param>
    /// <param name="options">The options, in the order the usage lists them.</param>
    /// <exception cref="ArgumentException">The program name is empty, an option appears twice, or two options share a name or alias.</exception>
    public CommandLineSpec(string programName, IEnumerable<CommandLineOption> options)
    {
        ArgumentException.ThrowIfNullOrEmpty(programName);
        ArgumentNullException.ThrowIfNull(options);
        ProgramName = programName;
        Options = [.. options];
        foreach (var option in Options)
        {
            ArgumentNullException.ThrowIfNull(option, nameof(options));
            foreach (var name in option.AllNames)
            {
                if (!_byName.TryAdd(name, option))
                {
                    throw new ArgumentException($"The option name \"{name}\" is used twice.", nameof(options));
                }
            }
        }
    }

    /// <summary>The name shown in the usage.</summary>
    public string ProgramName { get; }

    /// <summary>The options, in usage order.</summary>
    public IReadOnlyList<CommandLineOption> Options { get; }

    /// <summary>Lines printed after the option list, such as examples; null for none.</summary>
    public string? Epilogue { get; init; }

    /// <summary>
    /// Parses the arguments. Never throws for bad input: the first problem becomes a result with
    /// <see cref="ParseStatus.Error"/> and a message worded as 1.5.1 words it.
    /// </summary>
    /// <param name="args">The arguments, without the program name.</param>
    /// <returns>The options given, a help request, or the first error.</returns>
    public ParseResult Parse(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var given = new Dictionary<CommandLineOption, List<object?>>();
        for (var i = 0; i < args.Count; i++)
        {
            var argument = args[i] ?? string.Empty;
            if (!TrySplit(argument, out var name, out var spelling, out var inlineValue))
            {
                return Failure($"Error, \"{argument}\" not recognised");
            }

            if (CommandLineOption.HelpNames.Contains(name, StringComparer.Ordinal))
            {
                return inlineValue is null
                    ? new ParseResult(this, ParseStatus.HelpRequested, null, [])
                    : Failure($"Error, {spelling} given an invalid argument");
            }

            if (!_byName.TryGetValue(name, out var option))
            {
                return Failure($"Error, \"{argument}\" not recognised");
            }

            object? value = null;
            if (option.TakesValue)
            {
                if (inlineValue is null)
                {
                    if (i + 1 >= args.Count)
                    {
                        return Failure($"Error, {spelling} requires an argument");
                    }

                    inlineValue = args[++i] ?? string.Empty;
                }

                if (!option.TryParseValue(inlineValue, out value))
                {
                    return Failure($"Error, {spelling} given an invalid argument");
                }
            }
            else if (inlineValue is not null)
            {
                return Failure($"Error, {spelling} given an invalid argument");
            }

            if (!given.TryGetValue(option, out var values))
            {
                given.Add(option, values = []);
            }
            else if (!option.Repeatable)
            {
                values.Clear();
            }

            values.Add(value);
        }

        return new ParseResult(this, ParseStatus.Success, null, given);
    }

    /// <summary>
    /// Parses the arguments and handles everything that ends the program early, so that a Main stays short:
    /// on a help request the usage goes to <paramref name="output"/> and <paramref name="exitCode"/> is 0; on an
    /// error the message and then the usage go to <paramref name="error"/> and <paramref name="exitCode"/> is 1.
    /// </summary>
    /// <param name="args">The arguments, without the program name.</param>
    /// <param name="result">The parse result, whatever the status.</param>
    /// <param name="exitCode">When false is returned, the code the program should exit with.</param>
    /// <param name="output">Where the usage goes on request; <see cref="Console.Out"/> when null.</param>
    /// <param name="error">Where errors go; <see cref="Console.Error"/> when null.</param>
    /// <returns>True when the program should go on; false when it should return <paramref name="exitCode"/>.</returns>
    public bool TryParse(IReadOnlyList<string> args, out ParseResult result, out int exitCode, TextWriter? output = null, TextWriter? error = null)
    {
        result = Parse(args);
        switch (result.Status)
        {
            case ParseStatus.Success:
                exitCode = 0;
                return true;
            case ParseStatus.HelpRequested:
                WriteUsage(output ?? Console.Out);
                exitCode = 0;
                return false;
            default:
                error ??= Console.Error;
                error.WriteLine(result.ErrorMessage);
                WriteUsage(error);
                exitCode = 1;
                return false;
        }
    }

    /// <summary>Writes the usage message: one line per option with its value, help text, aliases and default.</summary>
    /// <param name="writer">Where to write it.</param>
    public void WriteUsage(TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        const string helpEntry = "-<h|help|?>";
        var entries = Options.Select(option => (Left: option.TakesValue ? $"-{option.Name} <{option.ValueName}>" : $"-{option.Name}", Option: option)).ToList();
        var column = Math.Clamp(entries.Select(e => e.Left.Length).Append(helpEntry.Length).Max() + 2, MinimumColumn, MaximumColumn);

        var text = new StringBuilder();
        text.Append("Usage: ").Append(ProgramName).AppendLine(" [options]     where 'options' are from;");
        foreach (var (left, option) in entries)
        {
            AppendEntry(text, left, column, Describe(option));
        }

        AppendEntry(text, helpEntry, column, "display this usage message");
        text.AppendLine("Every option may also be written --option, and --option=value.");
        if (Epilogue is not null)
        {
            text.AppendLine().AppendLine(Epilogue.TrimEnd('\n'));
        }

        writer.Write(text.ToString());
        writer.Flush();
    }

    private static void AppendEntry(StringBuilder text, string left, int column, string description)
    {
        text.Append("  ").Append(left);
        // A name too long for the column still gets a gap before its description rather than running into it.
        text.Append(' ', Math.Max(2, column - left.Length));
        text.Append('(').Append(description).AppendLine(")");
    }

    private static string Describe(CommandLineOption option)
    {
        var description = new StringBuilder(option.Help);
        if (option.Aliases.Count > 0)
        {
            description.Append("; also ").AppendJoin(", ", option.Aliases.Select(alias => "-" + alias));
        }

        if (option.DefaultDisplay is { } shown)
        {
            description.Append("; default: ").Append(shown);
        }

        if (option.Repeatable)
        {
            description.Append("; may be repeated");
        }

        return description.ToString();
    }

    /// <summary>
    /// Splits <c>-name</c>, <c>--name</c> and <c>--name=value</c>. The single-dash form never carries an inline
    /// value: 1.5.1 had none, and <c>-name=value</c> is reported as not recognised rather than guessed at.
    /// </summary>
    private static bool TrySplit(string argument, out string name, out string spelling, out string? inlineValue)
    {
        inlineValue = null;
        if (argument.Length > 2 && argument.StartsWith("--", StringComparison.Ordinal))
        {
            var body = argument[2..];
            var equals = body.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                inlineValue = body[(equals + 1)..];
                body = body[..equals];
            }

            name = body;
            spelling = "--" + body;
            return body.Length > 0;
        }

        if (argument.Length > 1 && argument[0] == '-' && argument[1] != '-')
        {
            name = argument[1..];
            spelling = argument;
            return true;
        }

        name = spelling = argument;
        return false;
    }

    private ParseResult Failure(string message) => new(this, ParseStatus.Error, message, []);
}
