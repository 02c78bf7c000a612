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
/// error, help or version request ends parsing. There are no positional arguments: a word that is not an option is
/// an error; an option given twice counts once, with its last value (as in 1.5.1), unless it is
/// <see cref="CommandLineOption.Repeatable"/>. Errors keep
/// 1.5.1's first words (<c>Error, -X given an invalid argument</c>, which scripts match on) and add the reason.
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

    /// <summary>The line that follows every command-line error, pointing at the usage instead of printing it.</summary>
    public string HelpPointer => $"Run {ProgramName} -h for the options.";

    /// <summary>
    /// Parses the arguments. Never throws for bad input: the first problem becomes a result with
    /// <see cref="ParseStatus.Error"/> and a message that starts with 1.5.1's words and goes on to say why.
    /// </summary>
    /// <param name="args">The arguments, without the program name.</param>
    /// <returns>The options given, a help or version request, or the first error.</returns>
    public ParseResult Parse(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var given = new Dictionary<CommandLineOption, List<object?>>();
        CommandLineOption? previousFlag = null;
        for (var i = 0; i < args.Count; i++)
        {
            var argument = args[i] ?? string.Empty;
            if (!TrySplit(argument, out var name, out var spelling, out var inlineValue))
            {
                return Failure($"Error, \"{argument}\" not recognised: {(previousFlag is null
                    ? "every word must be an option (-name) or the value that follows one"
                    : $"-{previousFlag.Name} takes no value")}");
            }

            var isHelp = CommandLineOption.HelpNames.Contains(name, StringComparer.Ordinal);
            if (isHelp || name == CommandLineOption.VersionName)
            {
                return inlineValue is null
                    ? new ParseResult(this, isHelp ? ParseStatus.HelpRequested : ParseStatus.VersionRequested, null, [])
                    : Failure($"Error, {spelling} given an invalid argument: {spelling} takes no value, and '{inlineValue}' was given");
            }

            if (!_byName.TryGetValue(name, out var option))
            {
                return Failure($"Error, \"{argument}\" not recognised: {Unrecognised(argument, name)}");
            }

            object? value = null;
            if (option.TakesValue)
            {
                if (inlineValue is null)
                {
                    if (i + 1 >= args.Count)
                    {
                        return Failure($"Error, {spelling} requires an argument: {spelling} <{option.ValueName}>");
                    }

                    inlineValue = args[++i] ?? string.Empty;
                }

                if (!option.TryParseValue(inlineValue, out value, out var reason))
                {
                    // 1.5.1 took the word after an option as its value whatever it was; say so when that word
                    // looks like the next option, which is how a forgotten value usually shows.
                    if (TrySplit(inlineValue, out var valueName, out _, out _) && _byName.ContainsKey(valueName))
                    {
                        reason += $" (if {inlineValue} was meant as the next option, {spelling} is missing its value)";
                    }

                    return Failure($"Error, {spelling} given an invalid argument: {reason}");
                }
            }
            else if (inlineValue is not null)
            {
                return Failure($"Error, {spelling} given an invalid argument: {spelling} takes no value, and '{inlineValue}' was given");
            }

            if (!given.TryGetValue(option, out var values))
            {
                given.Add(option, values = []);
            }
            else if (!option.Repeatable)
            {
                // As in 1.5.1, the last one counts: scripts that wrap the tools put their defaults first and let the
                // caller's flags override them.
                values.Clear();
            }

            values.Add(value);
            previousFlag = option.TakesValue ? null : option;
        }

        return new ParseResult(this, ParseStatus.Success, null, given);
    }

    /// <summary>
    /// Parses the arguments and handles everything that ends the program early, so that a Main stays short:
    /// on a help request the usage goes to <paramref name="output"/>, on a version request the version line
    /// (<see cref="ToolVersion"/>), and <paramref name="exitCode"/> is 0; on an error the message and then
    /// <see cref="HelpPointer"/> go to <paramref name="error"/> and <paramref name="exitCode"/> is 1.
    /// </summary>
    /// <param name="args">The arguments, without the program name.</param>
    /// <param name="result">The parse result, whatever the status.</param>
    /// <param name="exitCode">When false is returned, the code the program should exit with.</param>
    /// <param name="output">Where the usage and version go on request; <see cref="Console.Out"/> when null.</param>
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
            case ParseStatus.VersionRequested:
                output ??= Console.Out;
                output.WriteLine(ToolVersion.Describe(ProgramName));
                output.Flush();
                exitCode = 0;
                return false;
            default:
                exitCode = ReportError(result.ErrorMessage!["Error, ".Length..], error);
                return false;
        }
    }

    /// <summary>
    /// Reports a command line that parsed but cannot be used (a required option missing, two options that exclude
    /// each other, ...): writes <c>Error, </c> and <paramref name="problem"/>, then <see cref="HelpPointer"/>.
    /// </summary>
    /// <param name="problem">What is wrong, naming the options, for example <c>must provide -listen</c>.</param>
    /// <param name="error">Where to write; <see cref="Console.Error"/> when null.</param>
    /// <returns>1, the exit code for a command-line error.</returns>
    public int ReportError(string problem, TextWriter? error = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(problem);
        error ??= Console.Error;
        error.WriteLine("Error, " + problem);
        error.WriteLine(HelpPointer);
        error.Flush();
        return 1;
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
        AppendEntry(text, "-" + CommandLineOption.VersionName, column, "print the version, commit and runtime, and exit");
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

    /// <summary>Why an option word is not one of ours, with the nearest real option when there is one.</summary>
    private string Unrecognised(string argument, string name)
    {
        // -name=value: 1.5.1 had no inline values, so the single-dash form does not take one (see TrySplit).
        var equals = name.IndexOf('=', StringComparison.Ordinal);
        if (argument[0] == '-' && argument[1] != '-' && equals > 0 && _byName.TryGetValue(name[..equals], out var meant))
        {
            return meant.TakesValue
                ? $"write -{name[..equals]} {name[(equals + 1)..]} or --{name}"
                : $"-{name[..equals]} takes no value";
        }

        var nearest = _byName.Keys
            .Select(known => (Name: known, Distance: EditDistance(name.ToLowerInvariant(), known.ToLowerInvariant())))
            .Where(candidate => candidate.Distance <= Math.Max(1, Math.Min(2, candidate.Name.Length / 3)))
            .OrderBy(candidate => candidate.Distance)
            .ThenBy(candidate => candidate.Name, StringComparer.Ordinal)
            .Select(candidate => candidate.Name)
            .FirstOrDefault();
        return nearest is null ? $"{ProgramName} has no such option" : $"did you mean -{nearest}?";
    }

    /// <summary>
    /// How many characters to insert, delete, replace or swap with their neighbour to turn one word into the other
    /// (the optimal string alignment distance): a swapped pair is the commonest typing slip, and counts as one.
    /// </summary>
    private static int EditDistance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++)
        {
            d[i, 0] = i;
        }

        for (var j = 0; j <= b.Length; j++)
        {
            d[0, j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
                }
            }
        }

        return d[a.Length, b.Length];
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
