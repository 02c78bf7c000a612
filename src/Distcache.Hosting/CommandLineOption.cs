using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Distcache.Hosting;

/// <summary>
/// Turns the text given after an option into its value. Returns false when the text is not acceptable (not a
/// number, out of range, ...), with the reason; the command line then reports
/// <c>Error, -X given an invalid argument: REASON</c>.
/// </summary>
/// <typeparam name="T">The type of the parsed value.</typeparam>
/// <param name="text">The text exactly as given on the command line.</param>
/// <param name="value">The value when the text is acceptable.</param>
/// <param name="reason">
/// When the text is refused, why, as a clause that quotes the text and states the rule, for example
/// <c>'abc' is not a number from 0 to 1000</c>; null when it is accepted.
/// </param>
/// <returns>True when <paramref name="text"/> is acceptable.</returns>
public delegate bool ValueParser<T>(string text, [MaybeNullWhen(false)] out T value, [NotNullWhen(false)] out string? reason);

/// <summary>
/// One option of a command line in the 1.5.1 style: a single-dash word (<c>-daemon</c>, <c>-listen</c>), which is
/// also accepted as <c>--word</c>. Create a <see cref="FlagOption"/> or a <see cref="ValueOption{T}"/> and pass
/// it to a <see cref="CommandLineSpec"/>; the same object is the key used to query the <see cref="ParseResult"/>.
/// </summary>
public abstract class CommandLineOption
{
    /// <summary>The words <c>-h</c>, <c>-help</c> and <c>-?</c> always ask for the usage; no option may use them.</summary>
    internal static readonly IReadOnlyList<string> HelpNames = ["h", "help", "?"];

    /// <summary>The word <c>-version</c> always asks for the version line; no option may use it.</summary>
    internal const string VersionName = "version";

    private protected CommandLineOption(string name, string help)
    {
        ValidateName(name, nameof(name));
        ArgumentNullException.ThrowIfNull(help);
        Name = name;
        Help = help;
    }

    /// <summary>The option's name without the dash, for example <c>listen</c>.</summary>
    public string Name { get; }

    /// <summary>Other names accepted for the same option (without dashes), for example <c>server</c> for <c>connect</c>.</summary>
    /// <exception cref="ArgumentException">On set: a name is empty, starts with a dash, contains '=' or white space, or is a help word.</exception>
    public IReadOnlyList<string> Aliases
    {
        get;
        init
        {
            ArgumentNullException.ThrowIfNull(value);
            foreach (var alias in value)
            {
                ValidateName(alias, nameof(Aliases));
            }

            field = [.. value];
        }
    } = [];

    /// <summary>
    /// Whether every occurrence is kept (<c>-server A -server B</c>). When false, giving the option twice is an
    /// error: 1.5.1 silently kept the last one, which hides a mistake in a long command line.
    /// </summary>
    public bool Repeatable { get; init; }

    /// <summary>The one-line description shown in the usage.</summary>
    public string Help { get; }

    /// <summary>Whether the option is followed by a value.</summary>
    public abstract bool TakesValue { get; }

    /// <summary>The placeholder for the value in the usage (<c>addr</c> shows as <c>&lt;addr&gt;</c>); null for a flag.</summary>
    public abstract string? ValueName { get; }

    /// <summary>The default as shown in the usage, or null to show none.</summary>
    public abstract string? DefaultDisplay { get; }

    /// <summary>Every name of the option: <see cref="Name"/> first, then the aliases.</summary>
    internal IEnumerable<string> AllNames => Aliases.Prepend(Name);

    /// <summary>Parses the text given for this option; always false for a flag, which takes no value.</summary>
    internal abstract bool TryParseValue(string text, out object? value, [NotNullWhen(false)] out string? reason);

    private static void ValidateName(string name, string parameterName)
    {
        ArgumentException.ThrowIfNullOrEmpty(name, parameterName);
        if (name[0] == '-' || name.Contains('=', StringComparison.Ordinal) || name.Any(char.IsWhiteSpace))
        {
            throw new ArgumentException($"\"{name}\" is not a usable option name: give it without dashes, '=' or spaces.", parameterName);
        }

        if (HelpNames.Contains(name, StringComparer.Ordinal) || name == VersionName)
        {
            throw new ArgumentException($"\"{name}\" is reserved for the usage message and the version line.", parameterName);
        }
    }
}

/// <summary>An option that takes no value, such as <c>-daemon</c>; query it with <see cref="ParseResult.IsSet"/>.</summary>
/// <param name="name">The name without the dash.</param>
/// <param name="help">The one-line description for the usage.</param>
/// <exception cref="ArgumentException">The name is empty, starts with a dash, contains '=' or white space, or is a help word.</exception>
public sealed class FlagOption(string name, string help) : CommandLineOption(name, help)
{
    /// <inheritdoc/>
    public override bool TakesValue => false;

    /// <inheritdoc/>
    public override string? ValueName => null;

    /// <inheritdoc/>
    public override string? DefaultDisplay => null;

    internal override bool TryParseValue(string text, out object? value, [NotNullWhen(false)] out string? reason)
    {
        value = null;
        reason = $"-{Name} takes no value, and '{text}' was given";
        return false;
    }
}

/// <summary>An option followed by a value, such as <c>-sessions 1000</c>.</summary>
/// <typeparam name="T">The type its <see cref="Parser"/> produces.</typeparam>
public sealed class ValueOption<T> : CommandLineOption
{
    private readonly bool _hasDefaultValue;

    /// <summary>Creates the option.</summary>
    /// <param name="name">The name without the dash.</param>
    /// <param name="valueName">The placeholder shown in the usage, without angle brackets.</param>
    /// <param name="help">The one-line description for the usage.</param>
    /// <param name="parser">Checks and converts the given text; see <see cref="ValueParsers"/> for the common ones.</param>
    /// <exception cref="ArgumentException">The name is empty, starts with a dash, contains '=' or white space, or is a help word; or the value name is empty.</exception>
    public ValueOption(string name, string valueName, string help, ValueParser<T> parser)
        : base(name, help)
    {
        ArgumentException.ThrowIfNullOrEmpty(valueName);
        ArgumentNullException.ThrowIfNull(parser);
        ValueName = valueName;
        Parser = parser;
    }

    /// <inheritdoc/>
    public override bool TakesValue => true;

    /// <inheritdoc/>
    public override string ValueName { get; }

    /// <summary>Checks and converts the given text.</summary>
    public ValueParser<T> Parser { get; }

    /// <summary>What <see cref="ParseResult.GetValue{T}"/> returns when the option was not given; <c>default(T)</c> unless set.</summary>
    public T? DefaultValue
    {
        get;
        init
        {
            field = value;
            _hasDefaultValue = true;
        }
    }

    /// <summary>How the default is shown in the usage; when null, <see cref="DefaultValue"/> is formatted if it was set and is not null.</summary>
    public string? DefaultText { get; init; }

    /// <inheritdoc/>
    public override string? DefaultDisplay
    {
        get
        {
            if (DefaultText is not null)
            {
                return DefaultText;
            }

            // An unset default of a value type is 0 or None only by accident of the language: show nothing.
            if (!_hasDefaultValue)
            {
                return null;
            }

            return DefaultValue switch
            {
                null => null,
                IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
                var other => other.ToString(),
            };
        }
    }

    internal override bool TryParseValue(string text, out object? value, [NotNullWhen(false)] out string? reason)
    {
        if (Parser(text, out var parsed, out reason))
        {
            value = parsed;
            return true;
        }

        value = null;
        // A parser that forgets its reason still yields a message that says what was refused.
        reason ??= $"'{text}' is not accepted";
        return false;
    }
}
