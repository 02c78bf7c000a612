namespace Distcache.Protocol;

/// <summary>The four cache operations of op_class 0 (PROTOCOL.md section 2). Values are the wire bytes.</summary>
public enum Operation : byte
{
    /// <summary>Store a session; answered with a <see cref="StatusCode"/> byte.</summary>
    Add = 0,

    /// <summary>Fetch a session; answered with its data, or the single byte <see cref="StatusCode.NotOk"/>.</summary>
    Get = 1,

    /// <summary>Delete a session; answered with <see cref="StatusCode.Ok"/> or <see cref="StatusCode.NotOk"/>.</summary>
    Remove = 2,

    /// <summary>Ask whether a session exists; answered with <see cref="StatusCode.Ok"/> (yes) or <see cref="StatusCode.NotOk"/> (no).</summary>
    Have = 3,
}

/// <summary>Helpers for <see cref="Operation"/>.</summary>
public static class OperationExtensions
{
    /// <summary>The upper-case name used in logs and in the test-vector index (ADD, GET, REMOVE, HAVE).</summary>
    public static string ToWireName(this Operation operation) => operation switch
    {
        Operation.Add => "ADD",
        Operation.Get => "GET",
        Operation.Remove => "REMOVE",
        Operation.Have => "HAVE",
        _ => $"OP{(byte)operation}",
    };

    /// <summary>The lower-case name metrics carry as their operation attribute (add, get, remove, have; other for an
    /// operation 1.5.1 does not define).</summary>
    public static string ToMetricName(this Operation operation) => operation switch
    {
        Operation.Add => "add",
        Operation.Get => "get",
        Operation.Remove => "remove",
        Operation.Have => "have",
        _ => "other",
    };

    /// <summary>True for the four operations 1.5.1 defines.</summary>
    public static bool IsDefined(this Operation operation) => (byte)operation <= (byte)Operation.Have;
}
