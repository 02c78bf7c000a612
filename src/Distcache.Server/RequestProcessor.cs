using System.Buffers;
using Distcache.Protocol;
using Distcache.Storage;

namespace Distcache.Server;

/// <summary>
/// The operations layer: turns one decoded request into calls on an <see cref="ISessionStore"/> and writes
/// its response. Knows messages and stores, never sockets.
/// </summary>
/// <remarks>
/// Answers follow 1.5.1 exactly: ADD payload errors are answered with their 100-104 codes; GET, REMOVE and
/// HAVE with an id outside 1..64 bytes are answered NOTOK, as 1.5.1's cache answers a lookup that cannot
/// match. Only an ADD payload shorter than its 8-byte prefix is a violation (1.5.1 drops the connection).
/// </remarks>
public sealed class RequestProcessor
{
    // Cached once: a static lambda with a value-tuple state allocates nothing per GET.
    private static readonly SessionDataReader<(IBufferWriter<byte> Output, uint Uid)> WriteHit =
        static (data, state) => Responses.WriteData(state.Output, state.Uid, Operation.Get, data);

    private readonly ISessionStore _store;

    /// <summary>Creates a processor over a store.</summary>
    public RequestProcessor(ISessionStore store)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
    }

    /// <summary>The store requests are applied to.</summary>
    public ISessionStore Store => _store;

    /// <summary>
    /// Applies one request and writes its response to <paramref name="output"/>. Completes synchronously when
    /// the store does. Returns a violation kind when the request must close the connection instead.
    /// </summary>
    /// <param name="request">A decoded request; its payload must stay valid until the returned task completes.</param>
    /// <param name="output">Where the response is written (not flushed).</param>
    /// <param name="cancellationToken">Cancels a store call that is waiting on a remote backend.</param>
    public ValueTask<ProtocolViolationKind?> ProcessAsync(Message request, IBufferWriter<byte> output, CancellationToken cancellationToken = default) =>
        ProcessAsync(request, output, counts: null, cancellationToken);

    /// <summary>As <see cref="ProcessAsync(Message, IBufferWriter{byte}, CancellationToken)"/>, also counting the
    /// answer in <paramref name="counts"/> (one plain increment; the caller is the counts' only writer).</summary>
    internal ValueTask<ProtocolViolationKind?> ProcessAsync(Message request, IBufferWriter<byte> output, ServerStatistics? counts, CancellationToken cancellationToken)
    {
        switch (request.Operation)
        {
            case Operation.Add:
                return AddAsync(request, output, counts, cancellationToken);
            case Operation.Get:
                if (!Requests.IsValidSessionId(request.Payload.Length))
                {
                    Responses.WriteStatus(output, request.RequestUid, Operation.Get, StatusCode.NotOk);
                    counts?.CountOperation(Operation.Get, OperationOutcome.Invalid);
                    return default;
                }

                ValueTask<bool> get = _store.GetAsync(request.Payload, WriteHit, (output, request.RequestUid), cancellationToken);
                if (get.IsCompletedSuccessfully)
                {
                    bool hit = get.Result;
                    if (!hit)
                    {
                        Responses.WriteStatus(output, request.RequestUid, Operation.Get, StatusCode.NotOk);
                    }

                    counts?.CountOperation(Operation.Get, hit ? OperationOutcome.Ok : OperationOutcome.NotFound);
                    return default;
                }

                return AwaitGetAsync(get, request.RequestUid, output, counts);
            case Operation.Remove:
            case Operation.Have:
                if (!Requests.IsValidSessionId(request.Payload.Length))
                {
                    Responses.WriteStatus(output, request.RequestUid, request.Operation, StatusCode.NotOk);
                    counts?.CountOperation(request.Operation, OperationOutcome.Invalid);
                    return default;
                }

                ValueTask<bool> found = request.Operation == Operation.Remove
                    ? _store.RemoveAsync(request.Payload, cancellationToken)
                    : _store.ContainsAsync(request.Payload, cancellationToken);
                if (found.IsCompletedSuccessfully)
                {
                    bool present = found.Result;
                    Responses.WriteStatus(output, request.RequestUid, request.Operation, present ? StatusCode.Ok : StatusCode.NotOk);
                    counts?.CountOperation(request.Operation, present ? OperationOutcome.Ok : OperationOutcome.NotFound);
                    return default;
                }

                return AwaitBooleanAsync(found, request.RequestUid, request.Operation, output, counts);
            default:
                // The decoder rejects unknown operations; this keeps the processor safe on its own.
                return new ValueTask<ProtocolViolationKind?>(ProtocolViolationKind.UnknownOperation);
        }
    }

    private ValueTask<ProtocolViolationKind?> AddAsync(Message request, IBufferWriter<byte> output, ServerStatistics? counts, CancellationToken cancellationToken)
    {
        AddRequestParseResult parse = AddRequest.TryParse(request.Payload, out AddRequest add);
        if (parse == AddRequestParseResult.PayloadTooShort)
        {
            return new ValueTask<ProtocolViolationKind?>(ProtocolViolationKind.AddPayloadTooShort);
        }

        if (parse != AddRequestParseResult.Valid)
        {
            Responses.WriteStatus(output, request.RequestUid, Operation.Add, parse.ToStatusCode());
            counts?.CountOperation(Operation.Add, OperationOutcome.Invalid);
            return default;
        }

        ValueTask<AddResult> stored = _store.AddAsync(add.Id, add.Data, TimeSpan.FromMilliseconds(add.TimeoutMilliseconds), cancellationToken);
        if (stored.IsCompletedSuccessfully)
        {
            AddResult result = stored.Result;
            Responses.WriteStatus(output, request.RequestUid, Operation.Add, ToStatus(result));
            counts?.CountOperation(Operation.Add, ToOutcome(result));
            return default;
        }

        return AwaitAddAsync(stored, request.RequestUid, output, counts);
    }

    private static StatusCode ToStatus(AddResult result) => result switch
    {
        AddResult.Stored => StatusCode.Ok,
        AddResult.AlreadyExists => StatusCode.AddErrMatchingSession,
        // 1.5.1 has no code for "could not store"; any non-zero byte is a failed ADD to its clients.
        _ => StatusCode.NotOk,
    };

    private static OperationOutcome ToOutcome(AddResult result) => result switch
    {
        AddResult.Stored => OperationOutcome.Ok,
        AddResult.AlreadyExists => OperationOutcome.Exists,
        _ => OperationOutcome.Failed,
    };

    private static async ValueTask<ProtocolViolationKind?> AwaitAddAsync(ValueTask<AddResult> pending, uint uid, IBufferWriter<byte> output, ServerStatistics? counts)
    {
        AddResult result = await pending.ConfigureAwait(false);
        Responses.WriteStatus(output, uid, Operation.Add, ToStatus(result));
        counts?.CountOperation(Operation.Add, ToOutcome(result));
        return null;
    }

    private static async ValueTask<ProtocolViolationKind?> AwaitGetAsync(ValueTask<bool> pending, uint uid, IBufferWriter<byte> output, ServerStatistics? counts)
    {
        bool hit = await pending.ConfigureAwait(false);
        if (!hit)
        {
            Responses.WriteStatus(output, uid, Operation.Get, StatusCode.NotOk);
        }

        counts?.CountOperation(Operation.Get, hit ? OperationOutcome.Ok : OperationOutcome.NotFound);
        return null;
    }

    private static async ValueTask<ProtocolViolationKind?> AwaitBooleanAsync(ValueTask<bool> pending, uint uid, Operation operation, IBufferWriter<byte> output, ServerStatistics? counts)
    {
        bool found = await pending.ConfigureAwait(false);
        Responses.WriteStatus(output, uid, operation, found ? StatusCode.Ok : StatusCode.NotOk);
        counts?.CountOperation(operation, found ? OperationOutcome.Ok : OperationOutcome.NotFound);
        return null;
    }
}
