namespace Distcache.Protocol;

/// <summary>The one-byte status answers (PROTOCOL.md section 2). Values are the wire bytes.</summary>
public enum StatusCode : byte
{
    /// <summary>Success: stored, removed, or "yes, it exists".</summary>
    Ok = 0,

    /// <summary>Failure or absence: not found, nothing removed, "no".</summary>
    NotOk = 1,

    /// <summary>Sent by a proxy that has no link to the server at the moment.</summary>
    Disconnected = 2,

    /// <summary>ADD: the id length is not less than the bytes that follow the 8-byte prefix.</summary>
    AddErrCorrupt = 100,

    /// <summary>ADD: a live session with this id exists; the old one was kept.</summary>
    AddErrMatchingSession = 101,

    /// <summary>ADD: the timeout exceeds 7 days.</summary>
    AddErrTimeoutRange = 102,

    /// <summary>ADD: the id is empty or longer than 64 bytes.</summary>
    AddErrIdRange = 103,

    /// <summary>ADD: the session data is empty or longer than 32768 bytes.</summary>
    AddErrDataRange = 104,
}

/// <summary>Helpers for <see cref="StatusCode"/>.</summary>
public static class StatusCodeExtensions
{
    /// <summary>The name 1.5.1 gives the code (OK, NOTOK, DISCONNECTED, ADD_ERR_CORRUPT, ...), or the number for an unknown byte.</summary>
    public static string ToWireName(this StatusCode status) => status switch
    {
        StatusCode.Ok => "OK",
        StatusCode.NotOk => "NOTOK",
        StatusCode.Disconnected => "DISCONNECTED",
        StatusCode.AddErrCorrupt => "ADD_ERR_CORRUPT",
        StatusCode.AddErrMatchingSession => "ADD_ERR_MATCHING_SESSION",
        StatusCode.AddErrTimeoutRange => "ADD_ERR_TIMEOUT_RANGE",
        StatusCode.AddErrIdRange => "ADD_ERR_ID_RANGE",
        StatusCode.AddErrDataRange => "ADD_ERR_DATA_RANGE",
        _ => ((byte)status).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
