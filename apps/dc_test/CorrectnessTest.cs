using System.Diagnostics;
using System.Globalization;
using Distcache.Client;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Apps.Test;

/// <summary>What the 1.5.1-style correctness test was asked to do.</summary>
internal sealed record CorrectnessSettings
{
    public required Address Target { get; init; }

    public int Sessions { get; init; } = 10;

    public int DataMin { get; init; } = 50;

    public int DataMax { get; init; } = 2100;

    public int TimeoutSeconds { get; init; } = 60;

    public int TimevarSeconds { get; init; } = 5;

    public ulong Operations { get; init; } = 1000;

    public bool Persistent { get; init; }

    public int WithCert { get; init; }

    public ulong Progress { get; init; }

    public ulong Seed { get; init; }
}

/// <summary>
/// 1.5.1's dc_test: random operations on a small set of random sessions through the DC_CTX client API
/// (<see cref="DcContext"/>), each checked against a model of what the cache must hold. Stops at the first wrong
/// answer and says which operation, which session, what was expected and what came back.
/// </summary>
internal static class CorrectnessTest
{
    // The server starts a session's clock somewhere between our sending the ADD and receiving its answer, and the
    // check runs somewhere within the next operation: within this margin of the expiry, either answer is right.
    private static readonly TimeSpan ExpiryMargin = TimeSpan.FromSeconds(1);

    public static int Run(CorrectnessSettings settings, CancellationToken cancellationToken)
    {
        var random = new FastRandom(settings.Seed);
        TestSession[] sessions = CreateSessions(settings, ref random);
        var options = new DistcacheClientOptions { Address = settings.Target };
        DcContext context;
        try
        {
            context = DcContext.Create(options, settings.Persistent ? DcContextFlags.Persistent : DcContextFlags.None);
        }
        catch (DistcacheConnectionException e)
        {
            Console.Error.WriteLine($"Error, failed to connect to {settings.Target}: {e.Message}");
            return 1;
        }

        using (context)
        {
            var buffer = new byte[ProtocolConstants.MaxMessagePayload];
            for (ulong done = 0; done < settings.Operations; done++)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    Console.Error.WriteLine($"Info, interrupted; {done} tests succeeded");
                    return 1;
                }

                int index = random.Next(sessions.Length);
                var operation = (Operation)random.Next(4);
                string? failure = RunOne(context, sessions[index], operation, buffer);
                if (failure is not null)
                {
                    TestSession session = sessions[index];
                    Console.Error.WriteLine(failure);
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"Info, test {done + 1} of {settings.Operations}: {operation.ToWireName()} of session {index} (id {Convert.ToHexStringLower(session.Id)}, {session.Data.Length} bytes of data)"));
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Info, {done} tests succeeded before the first failure (-seed {settings.Seed} repeats this sequence)"));
                    return 1;
                }

                if (settings.Progress > 0 && (done + 1) % settings.Progress == 0)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"Info, {done + 1} tests complete ({sessions.Count(s => s.State == Presence.Present)} sessions in the cache)"));
                }
            }
        }

        Console.WriteLine("Info, all tests complete");
        return 0;
    }

    private static TestSession[] CreateSessions(CorrectnessSettings settings, ref FastRandom random)
    {
        var sessions = new TestSession[settings.Sessions];
        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < sessions.Length; i++)
        {
            byte[] id;
            do
            {
                id = new byte[random.Next(10, 63)];
                random.Fill(id);
            }
            while (!ids.Add(Convert.ToHexString(id)));

            int length = random.Next(settings.DataMin, settings.DataMax);
            if (i < settings.WithCert)
            {
                // A session carrying a peer certificate: a DER certificate chain adds a few kilobytes.
                length = Math.Min(length + random.Next(2048, 4096), Limits.MaxAddIdAndData - id.Length);
            }

            var data = new byte[length];
            random.Fill(data);
            int varianceMs = settings.TimevarSeconds * 1000;
            uint timeout = (uint)((settings.TimeoutSeconds * 1000) - varianceMs + random.Next(2 * varianceMs + 1));
            sessions[i] = new TestSession(id, data, timeout);
        }

        return sessions;
    }

    /// <summary>Runs one operation and checks its answer; returns the error line, or null if the answer was right.</summary>
    private static string? RunOne(DcContext context, TestSession session, Operation operation, byte[] buffer)
    {
        long now = Stopwatch.GetTimestamp();
        Presence expected = session.Expected(now, ExpiryMargin);
        switch (operation)
        {
            case Operation.Add:
            {
                bool stored = context.Add(session.Id, session.Data, session.TimeoutMilliseconds);
                if (context.LastError is { } error)
                {
                    return Failed("add", error);
                }

                if (stored)
                {
                    session.Added(now, Stopwatch.GetTimestamp());
                }

                return (expected, stored) switch
                {
                    (Presence.Present, true) => "Error, add succeeded and shouldn't have!",
                    (Presence.Absent, false) => "Error, add failed and shouldn't have!",
                    _ => null,
                };
            }

            case Operation.Get:
            {
                int length = context.Get(session.Id, buffer);
                if (context.LastError is { } error)
                {
                    return Failed("get", error);
                }

                // 1.5.1's client reads any GET answer under 5 bytes as a miss, so such short data never comes back.
                bool readable = session.Data.Length >= DcContext.MinGetResponseLength;
                if (length >= 0)
                {
                    if (expected == Presence.Absent || !readable)
                    {
                        return "Error, get succeeded and shouldn't have!";
                    }

                    return length == session.Data.Length && buffer.AsSpan(0, length).SequenceEqual(session.Data)
                        ? null
                        : string.Create(CultureInfo.InvariantCulture, $"Error, get returned the wrong data! ({length} bytes, expected {session.Data.Length})");
                }

                if (readable)
                {
                    session.Gone(expected);
                }

                return expected == Presence.Present && readable ? "Error, get failed and shouldn't have!" : null;
            }

            case Operation.Remove:
            {
                bool removed = context.Remove(session.Id);
                if (context.LastError is { } error)
                {
                    return Failed("remove", error);
                }

                session.Removed();
                return (expected, removed) switch
                {
                    (Presence.Absent, true) => "Error, remove succeeded and shouldn't have!",
                    (Presence.Present, false) => "Error, remove failed and shouldn't have!",
                    _ => null,
                };
            }

            default:
            {
                int has = context.Has(session.Id);
                if (context.LastError is { } error)
                {
                    return Failed("have", error);
                }

                if (has < 0)
                {
                    return "Error, have got an answer that is neither yes nor no!";
                }

                if (has == 0)
                {
                    session.Gone(expected);
                }

                return (expected, has) switch
                {
                    (Presence.Absent, 1) => "Error, have succeeded and shouldn't have!",
                    (Presence.Present, 0) => "Error, have failed and shouldn't have!",
                    _ => null,
                };
            }
        }
    }

    private static string Failed(string operation, Exception error) => $"Error, {operation} could not complete: {error.Message}";

    private enum Presence
    {
        Absent,
        Present,

        /// <summary>Added, and so close to its expiry that the server may or may not still hold it.</summary>
        Uncertain,
    }

    private static class Limits
    {
        /// <summary>An ADD's id and data together: the message payload less the 8-byte prefix.</summary>
        public const int MaxAddIdAndData = ProtocolConstants.MaxMessagePayload - ProtocolConstants.AddRequestPrefixSize;
    }

    /// <summary>One test session and what the model knows about it.</summary>
    private sealed class TestSession(byte[] id, byte[] data, uint timeoutMilliseconds)
    {
        private long _addSent;
        private long _addAnswered;

        public byte[] Id { get; } = id;

        public byte[] Data { get; } = data;

        public uint TimeoutMilliseconds { get; } = timeoutMilliseconds;

        public Presence State { get; private set; } = Presence.Absent;

        /// <summary>What the cache must answer now, expiry included.</summary>
        public Presence Expected(long now, TimeSpan margin)
        {
            if (State == Presence.Absent)
            {
                return Presence.Absent;
            }

            TimeSpan timeout = TimeSpan.FromMilliseconds(TimeoutMilliseconds);
            if (Stopwatch.GetElapsedTime(_addAnswered, now) > timeout + margin)
            {
                State = Presence.Absent;
                return Presence.Absent;
            }

            return Stopwatch.GetElapsedTime(_addSent, now) < timeout - margin ? Presence.Present : Presence.Uncertain;
        }

        public void Added(long sent, long answered)
        {
            State = Presence.Present;
            _addSent = sent;
            _addAnswered = answered;
        }

        public void Removed() => State = Presence.Absent;

        // A miss on a session close to its expiry settles that it has expired; on one surely present it is the
        // wrong answer, reported by the caller, and the model is left alone.
        public void Gone(Presence expected)
        {
            if (expected != Presence.Present)
            {
                State = Presence.Absent;
            }
        }
    }
}
