namespace Distcache.Client;

/// <summary>The answer to an ADD (PROTOCOL.md section 2): the status byte the server sent, by name.</summary>
public enum AddOutcome
{
    /// <summary>Status 0 (OK): the session is stored.</summary>
    Stored,

    /// <summary>Status 101 (ADD_ERR_MATCHING_SESSION): a live session with this id exists; the server kept the old
    /// one, because ADD never overwrites.</summary>
    AlreadyExists,

    /// <summary>Status 100 (ADD_ERR_CORRUPT): the server found the id length inconsistent with the payload. The
    /// client checks this before sending, so it means the bytes were altered on the way.</summary>
    Corrupt,

    /// <summary>Status 102 (ADD_ERR_TIMEOUT_RANGE): the server refused the timeout (over 7 days by 1.5.1's rule,
    /// or a stricter limit of that server).</summary>
    TimeoutOutOfRange,

    /// <summary>Status 103 (ADD_ERR_ID_RANGE): the server refused the id length.</summary>
    IdOutOfRange,

    /// <summary>Status 104 (ADD_ERR_DATA_RANGE): the server refused the data length.</summary>
    DataOutOfRange,

    /// <summary>A proxy (<c>dc_client</c>) answered that it has no link to its server: the one-byte DISCONNECTED (2),
    /// or 1.5.1's empty response. Nothing was stored.</summary>
    Disconnected,

    /// <summary>Any other status byte (NOTOK, or a code this client does not know). Nothing was stored.</summary>
    Rejected,
}

/// <summary>The answer to a GET, for the overloads that report it rather than returning null or throwing.</summary>
public enum GetOutcome
{
    /// <summary>The server answered with the single byte NOTOK (1): no live session has this id. Also reported for
    /// any other single byte except DISCONNECTED, because a one-byte GET response is a status, never data (so
    /// session data of exactly one byte cannot be read back).</summary>
    NotFound,

    /// <summary>The server answered with two or more bytes: the session data.</summary>
    Found,

    /// <summary>A proxy answered that it has no link to its server: the one-byte DISCONNECTED (2), or 1.5.1's empty
    /// response. Whether the session exists is unknown.</summary>
    Disconnected,
}
