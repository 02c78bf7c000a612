using System.Diagnostics.CodeAnalysis;

namespace Distcache.Hosting;

/// <summary>What <see cref="CommandLineSpec.Parse"/> concluded.</summary>
public enum ParseStatus
{
    /// <summary>Every argument was understood; the options can be queried.</summary>
    Success,

    /// <summary><c>-h</c>, <c>-help</c>, <c>-?</c> or <c>--help</c> was given: print the usage to stdout and exit 0.</summary>
    HelpRequested,

    /// <summary><c>-version</c> or <c>--version</c> was given: print the version line to stdout and exit 0.</summary>
    VersionRequested,

    /// <summary>An argument was wrong; <see cref="ParseResult.ErrorMessage"/> says which, in the 1.5.1 wording, and why.</summary>
    Error,
}

/// <summary>
/// The outcome of parsing a command line: either the options that were given, a request for help, or the first
/// error. Options are queried with the same <see cref="CommandLineOption"/> objects the spec was built from.
/// </summary>
public sealed class ParseResult
{
    private readonly CommandLineSpec _spec;
    private readonly Dictionary<CommandLineOption, List<object?>> _given;

    internal ParseResult(CommandLineSpec spec, ParseStatus status, string? errorMessage, Dictionary<CommandLineOption, List<object?>> given)
    {
        _spec = spec;
        Status = status;
        ErrorMessage = errorMessage;
        _given = given;
    }

    /// <summary>Whether the command line was understood, asked for help, or was wrong.</summary>
    public ParseStatus Status { get; }

    /// <summary>
    /// For <see cref="ParseStatus.Error"/>, the line to print on stderr: 1.5.1's first words, then the reason, for
    /// example <c>Error, -sessions given an invalid argument: 'abc' is not a number from 0 to 1000</c>; otherwise null.
    /// </summary>
    public string? ErrorMessage { get; }

    /// <summary>Whether the option was given at least once.</summary>
    /// <param name="option">An option of the spec that produced this result.</param>
    /// <returns>True when it appeared on the command line.</returns>
    /// <exception cref="InvalidOperationException">The parse did not succeed.</exception>
    /// <exception cref="ArgumentException">The option does not belong to the spec.</exception>
    public bool IsSet(CommandLineOption option) => Occurrences(option).Count > 0;

    /// <summary>The value given last for the option, or its <see cref="ValueOption{T}.DefaultValue"/> when it was not given.</summary>
    /// <typeparam name="T">The option's value type.</typeparam>
    /// <param name="option">An option of the spec that produced this result.</param>
    /// <returns>The value.</returns>
    /// <exception cref="InvalidOperationException">The parse did not succeed.</exception>
    /// <exception cref="ArgumentException">The option does not belong to the spec.</exception>
    public T? GetValue<T>(ValueOption<T> option) => TryGetValue(option, out var value) ? value : option.DefaultValue;

    /// <summary>The value given last for the option, if it was given.</summary>
    /// <typeparam name="T">The option's value type.</typeparam>
    /// <param name="option">An option of the spec that produced this result.</param>
    /// <param name="value">The value when it was given.</param>
    /// <returns>True when the option appeared on the command line.</returns>
    /// <exception cref="InvalidOperationException">The parse did not succeed.</exception>
    /// <exception cref="ArgumentException">The option does not belong to the spec.</exception>
    public bool TryGetValue<T>(ValueOption<T> option, [MaybeNullWhen(false)] out T value)
    {
        var occurrences = Occurrences(option);
        if (occurrences.Count == 0)
        {
            value = default;
            return false;
        }

        value = (T)occurrences[^1]!;
        return true;
    }

    /// <summary>
    /// Every value given for the option, in command-line order; empty when it was not given (the default is not
    /// included). A non-<see cref="CommandLineOption.Repeatable"/> option has at most one.
    /// </summary>
    /// <typeparam name="T">The option's value type.</typeparam>
    /// <param name="option">An option of the spec that produced this result.</param>
    /// <returns>The values.</returns>
    /// <exception cref="InvalidOperationException">The parse did not succeed.</exception>
    /// <exception cref="ArgumentException">The option does not belong to the spec.</exception>
    public IReadOnlyList<T> GetValues<T>(ValueOption<T> option) => [.. Occurrences(option).Cast<T>()];

    private List<object?> Occurrences(CommandLineOption option)
    {
        ArgumentNullException.ThrowIfNull(option);
        if (Status != ParseStatus.Success)
        {
            throw new InvalidOperationException($"The command line was not parsed successfully ({Status}); there are no option values.");
        }

        if (!_spec.Options.Contains(option))
        {
            throw new ArgumentException($"-{option.Name} is not an option of {_spec.ProgramName}.", nameof(option));
        }

        return _given.TryGetValue(option, out var list) ? list : [];
    }
}
