using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Distcache.Protocol;

namespace Distcache.Apps.Test.Load;

/// <summary>The share of each operation in the load, as relative weights (<c>get=90,add=10</c>).</summary>
internal sealed class OperationMix
{
    private const int MaxWeight = 1_000_000;

    private readonly int[] _weights;
    private readonly int[] _thresholds;

    private OperationMix(int[] weights)
    {
        _weights = weights;
        _thresholds = new int[weights.Length];
        int sum = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            sum += weights[i];
            _thresholds[i] = sum;
        }

        Total = sum;
    }

    public static OperationMix Default { get; } = new([10, 90, 0, 0]);

    /// <summary>-check's default: every operation, so that stores, removals and reads interleave on each key.</summary>
    public static OperationMix CheckDefault { get; } = new([30, 40, 15, 15]);

    public int Total { get; }

    public int WeightOf(Operation operation) => _weights[(int)operation];

    /// <summary>Parses <c>name=weight</c> pairs separated by commas; names are get, add, remove, have (any case).
    /// Operations not named get weight 0; at least one weight must be positive.</summary>
    public static bool TryParse(string text, [MaybeNullWhen(false)] out OperationMix mix, [NotNullWhen(false)] out string? reason)
    {
        mix = null;
        var weights = new int[4];
        var named = new bool[4];
        // Which part of a longer list is wrong; a single pair is quoted whole already.
        string where = text.Contains(',', StringComparison.Ordinal) ? $" in '{text}'" : string.Empty;
        foreach (string part in text.Split(','))
        {
            string[] pair = part.Split('=');
            if (pair.Length != 2)
            {
                reason = $"'{part}'{where} is not name=weight (as in get=90,add=10)";
                return false;
            }

            if (!TryParseOperation(pair[0].Trim(), out Operation operation))
            {
                reason = $"'{pair[0].Trim()}'{where} is not an operation (get, add, remove, have)";
                return false;
            }

            if (named[(int)operation])
            {
                reason = $"'{text}' names {pair[0].Trim()} twice";
                return false;
            }

            if (!int.TryParse(pair[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int weight) || weight > MaxWeight)
            {
                reason = string.Create(CultureInfo.InvariantCulture, $"the weight '{pair[1].Trim()}' of {pair[0].Trim()}{where} is not a number from 0 to {MaxWeight}");
                return false;
            }

            named[(int)operation] = true;
            weights[(int)operation] = weight;
        }

        if (weights.Sum() == 0)
        {
            reason = $"the weights in '{text}' add up to 0; at least one must be positive";
            return false;
        }

        mix = new OperationMix(weights);
        reason = null;
        return true;
    }

    /// <summary>Picks an operation for a draw in [0, <see cref="Total"/>).</summary>
    public Operation Pick(int draw)
    {
        // Four entries: a linear scan beats anything cleverer.
        for (int i = 0; i < _thresholds.Length - 1; i++)
        {
            if (draw < _thresholds[i])
            {
                return (Operation)i;
            }
        }

        return Operation.Have;
    }

    /// <summary>The operations in the order people list them: reads first.</summary>
    public static IReadOnlyList<Operation> DisplayOrder { get; } = [Operation.Get, Operation.Add, Operation.Remove, Operation.Have];

    public override string ToString() => string.Join(',',
        DisplayOrder.Where(o => _weights[(int)o] > 0).Select(o => $"{o.ToWireName().ToLowerInvariant()}={_weights[(int)o]}"));

    private static bool TryParseOperation(string name, out Operation operation)
    {
        foreach (Operation candidate in Enum.GetValues<Operation>())
        {
            if (string.Equals(candidate.ToWireName(), name, StringComparison.OrdinalIgnoreCase))
            {
                operation = candidate;
                return true;
            }
        }

        operation = default;
        return false;
    }
}
