namespace Distcache.Protocol;

/// <summary>The answer of an incremental decoder.</summary>
public enum DecodeStatus
{
    /// <summary>The bytes so far are a valid beginning; nothing was consumed. Read more and call again.</summary>
    NeedMoreData,

    /// <summary>One item was decoded and consumed.</summary>
    Complete,

    /// <summary>The bytes break a framing rule; the connection must be dropped.</summary>
    Violation,
}
