namespace Distcache.Networking;

/// <summary>
/// Thrown by <see cref="Address.Parse"/> when the text is not a valid address.
/// <see cref="Exception.Message"/> quotes the text and says what is wrong with it;
/// <see cref="Reason"/> is the same explanation without the quoted text, as
/// <see cref="Address.TryParse(string?, out Address, out string)"/> reports it.
/// </summary>
public sealed class AddressFormatException : FormatException
{
    /// <summary>Creates the exception with a generic message and no details.</summary>
    public AddressFormatException()
        : this("invalid address")
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/> as both the message and the reason.</summary>
    /// <param name="message">What is wrong with the address.</param>
    public AddressFormatException(string message)
        : base(message)
    {
        Reason = message;
    }

    /// <summary>Creates the exception with <paramref name="message"/> as both the message and the reason.</summary>
    /// <param name="message">What is wrong with the address.</param>
    /// <param name="innerException">The failure that caused this one.</param>
    public AddressFormatException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Reason = message;
    }

    /// <summary>Creates the exception for <paramref name="text"/> rejected because of <paramref name="reason"/>.</summary>
    /// <remarks>Internal: as a public overload it would make <c>new AddressFormatException(message, null)</c> ambiguous.</remarks>
    internal AddressFormatException(string? text, string reason)
        : base($"invalid address '{text}': {reason}")
    {
        Text = text;
        Reason = reason;
    }

    /// <summary>The rejected address text, or null when the exception was not created by the parser.</summary>
    public string? Text { get; }

    /// <summary>What is wrong with the text, naming the offending part, without quoting the whole text.</summary>
    public string Reason { get; }
}
