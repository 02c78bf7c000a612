using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Distcache.Protocol;
using Distcache.Proxy.Tests.Support;
using Microsoft.Extensions.Logging;

namespace Distcache.Proxy.Tests;

/// <summary>The multiplexer in process: uid rewriting, ordering, and peers that misbehave on either side.</summary>
public sealed class MultiplexerTests
{
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(300);

    [Fact]
    public async Task Clients_using_the_same_uid_at_once_each_get_their_own_answer_and_the_server_sees_1_2_3()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        FakeConnection link = await server.NextConnectionAsync();

        const int Clients = 40;
        var clients = new List<TestClient>();
        try
        {
            for (int i = 0; i < Clients; i++)
            {
                clients.Add(await proxy.ConnectAsync());
            }

            // Everyone asks with uid 7 at the same time; the ids differ so each answer can be told apart.
            await Task.WhenAll(clients.Select((c, i) => c.SendAsync(Frames.Get(7, $"client-{i}"))));

            // The fake server echoes each id back as session data, under the uid the proxy chose.
            var seenUids = new List<uint>();
            for (int i = 0; i < Clients; i++)
            {
                Received request = await link.NextRequestAsync();
                Assert.Equal(ProtocolConstants.ProtoLevel, request.ProtoLevel);
                seenUids.Add(request.Uid);
                await link.SendAsync(Frames.Data(request.Uid, Operation.Get, request.Payload));
            }

            Assert.Equal(Enumerable.Range(1, Clients).Select(i => (uint)i), seenUids);
            for (int i = 0; i < Clients; i++)
            {
                Received answer = await clients[i].ReceiveAsync();
                Assert.Equal(7u, answer.Uid);
                Assert.Equal(Operation.Get, answer.Operation);
                Assert.Equal($"client-{i}", Encoding.ASCII.GetString(answer.Payload));
            }
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public async Task An_application_connecting_while_the_first_server_connection_is_under_way_is_forwarded_not_refused()
    {
        // A server whose accept queue is full: Linux drops further SYNs, so the proxy's first connection attempt
        // takes a retransmission (about a second) to complete once the queue is drained.
        await using var server = new FakeServer(backlog: 1, accepting: false);
        var fillers = new List<System.Net.Sockets.Socket>();
        try
        {
            while (fillers.Count < 8)
            {
                var filler = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                fillers.Add(filler);

                // A backlog of 1 holds two connections, which complete however long a cold first connect takes to
                // report it; only one past them waits on a dropped SYN, which the short limit tells apart.
                using var quick = new CancellationTokenSource(fillers.Count <= 2 ? TestClient.DefaultTimeout : TimeSpan.FromMilliseconds(200));
                try
                {
                    await filler.ConnectAsync(server.Address.ToEndPoint(), quick.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }

            await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address), waitForLink: false);
            Task<TestClient> connecting = proxy.ConnectAsync();
            await Task.Delay(200);
            Assert.False(proxy.Proxy.FirstConnectAttempt.IsCompleted);

            // The application's request waits for the attempt instead of being answered DISCONNECTED...
            using TestClient client = await connecting;
            await client.SendAsync(Frames.Have(1, "early"));
            Assert.True(await client.StaysSilentAsync(TimeSpan.FromMilliseconds(200)));

            // ...and is forwarded once the link is up.
            // The fillers (including one whose connection the kernel completed late) are accepted too; the proxy's
            // link is the one its request arrives on. All are watched at once: the link may be accepted before its
            // connect is reported to the proxy, and so before its request comes.
            server.StartAccepting();
            (FakeConnection Link, Received Request)? first = await FirstRequestAsync(server, TimeSpan.FromSeconds(10));
            Assert.True(first is not null, $"nothing forwarded. Log:\n{proxy.Logs}");
            (FakeConnection link, Received forwarded) = first.Value;
            await link.SendAsync(Frames.Status(forwarded.Uid, Operation.Have, StatusCode.NotOk));
            Assert.Equal(Frames.Status(1, Operation.Have, StatusCode.NotOk), (await client.ReceiveAsync()).Raw);
            Assert.True(await proxy.Proxy.FirstConnectAttempt);
        }
        finally
        {
            fillers.ForEach(f => f.Dispose());
        }
    }

    [Fact]
    public async Task Pipelined_requests_are_answered_in_order_with_their_own_uids()
    {
        await using var server = InProcessServer.Start();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        using TestClient client = await proxy.ConnectAsync();

        // One write holding 60 requests with arbitrary (and repeated) uids, including multi-frame ADDs.
        var random = new Random(1234);
        var requests = new List<(uint Uid, Operation Op, byte[] Bytes, byte[] Expected)>();
        var model = new Dictionary<string, byte[]>();
        for (int i = 0; i < 60; i++)
        {
            uint uid = (uint)random.Next(0, 5) * 1_000_000_007u;
            string id = $"pipelined-{random.Next(0, 6)}";
            byte[] data = RandomData(random, random.Next(5, 9000));
            (Operation op, byte[] bytes) = random.Next(4) switch
            {
                0 => (Operation.Add, Frames.Add(uid, id, data)),
                1 => (Operation.Get, Frames.Get(uid, id)),
                2 => (Operation.Remove, Frames.Remove(uid, id)),
                _ => (Operation.Have, Frames.Have(uid, id)),
            };
            byte[] expected = Model.Apply(model, op, id, data);
            requests.Add((uid, op, bytes, expected));
        }

        await client.SendAsync(Frames.Concat([.. requests.Select(r => r.Bytes)]));
        foreach ((uint uid, Operation op, _, byte[] expected) in requests)
        {
            Received answer = await client.ReceiveAsync();
            Assert.Equal(uid, answer.Uid);
            Assert.Equal(op, answer.Operation);
            Assert.Equal(expected, answer.Payload);
        }

        // Counted once the batch is handed to the link, which may answer before that.
        await proxy.WaitUntilAsync(() => proxy.Statistics.Forwarded >= 60, "the forwarded requests are counted");
        Assert.Equal(60, proxy.Statistics.Forwarded);
    }

    [Fact]
    public async Task A_client_vanishing_before_its_answer_harms_no_one()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        FakeConnection link = await server.NextConnectionAsync();

        TestClient leaving = await proxy.ConnectAsync();
        await leaving.SendAsync(Frames.Get(1, "gone"));
        Received forwarded = await link.NextRequestAsync();
        leaving.Dispose();

        // Another one vanishes half way through sending a request.
        TestClient halfway = await proxy.ConnectAsync();
        await halfway.SendAsync(Frames.Get(1, "halfway")[..20]);
        halfway.Dispose();

        using TestClient staying = await proxy.ConnectAsync();
        await staying.SendAsync(Frames.Get(1, "here"));
        Received second = await link.NextRequestAsync();

        // The one that left mid-request is gone at once; the one that left after sending is kept only until its
        // answer is due (it may merely have closed its sending side), and that answer then goes nowhere.
        await proxy.WaitUntilAsync(() => proxy.Statistics.OpenConnections == 2, "the half-sent client is closed");
        await link.SendAsync(Frames.Concat(Frames.Data(forwarded.Uid, Operation.Get, [9, 9, 9]), Frames.Data(second.Uid, Operation.Get, [4, 5, 6])));
        Received answer = await staying.ReceiveAsync();
        Assert.Equal(new byte[] { 4, 5, 6 }, answer.Payload);
        Assert.Equal(1u, answer.Uid);
        await proxy.WaitUntilAsync(() => proxy.Statistics.OpenConnections == 1, "the vanished client is closed");
        Assert.Equal(0, proxy.Statistics.UnknownResponses);
        Assert.Equal(1, proxy.Statistics.ServerConnects);
        Assert.Equal(0, proxy.Statistics.ServerLinkLosses);
        Assert.Equal(Frames.Status(2, Operation.Have, StatusCode.Ok), (await CallThroughAsync(staying, link, Frames.Have(2, "still"), StatusCode.Ok)).Raw);
    }

    [Fact]
    public async Task A_response_with_an_unknown_or_repeated_uid_is_dropped_and_logged()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        FakeConnection link = await server.NextConnectionAsync();
        using TestClient client = await proxy.ConnectAsync();

        await client.SendAsync(Frames.Have(5, "x"));
        Received request = await link.NextRequestAsync();
        Assert.Equal(1u, request.Uid);

        // Never sent (uid 999), then the real answer, then the real answer again.
        await link.SendAsync(Frames.Status(999, Operation.Have, StatusCode.Ok));
        await link.SendAsync(Frames.Status(1, Operation.Have, StatusCode.NotOk));
        await link.SendAsync(Frames.Status(1, Operation.Have, StatusCode.Ok));

        Received answer = await client.ReceiveAsync();
        Assert.Equal(Frames.Status(5, Operation.Have, StatusCode.NotOk), answer.Raw);
        await proxy.WaitUntilAsync(() => proxy.Statistics.UnknownResponses == 2, "both strays counted");
        Assert.True(await client.StaysSilentAsync(Short), "a stray response reached a client");
        Assert.True(proxy.Logs.Contains(LogLevel.Warning, "with no request in flight, the first with uid 999 (HAVE)"), proxy.Logs.ToString());

        // The link survived: the next request still goes through it.
        await client.SendAsync(Frames.Have(6, "y"));
        Received next = await link.NextRequestAsync();
        Assert.Equal(2u, next.Uid);
        await link.SendAsync(Frames.Status(2, Operation.Have, StatusCode.Ok));
        Assert.Equal(Frames.Status(6, Operation.Have, StatusCode.Ok), (await client.ReceiveAsync()).Raw);
        Assert.Equal(0, proxy.Statistics.ServerLinkLosses);
    }

    [Fact]
    public async Task A_response_with_the_wrong_operation_breaks_the_link_and_in_flight_requests_get_DISCONNECTED()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address, retryMilliseconds: 50));
        FakeConnection link = await server.NextConnectionAsync();
        using TestClient client = await proxy.ConnectAsync();

        await client.SendAsync(Frames.Concat(Frames.Get(11, "a"), Frames.Remove(12, "b")));
        Received first = await link.NextRequestAsync();
        await link.NextRequestAsync();
        await link.SendAsync(Frames.Status(first.Uid, Operation.Add, StatusCode.Ok));

        Assert.Equal(Frames.Disconnected(11, Operation.Get), (await client.ReceiveAsync()).Raw);
        Assert.Equal(Frames.Disconnected(12, Operation.Remove), (await client.ReceiveAsync()).Raw);
        Assert.True(await link.ClosesWithinAsync(TimeSpan.FromSeconds(5)));
        Assert.True(proxy.Logs.Contains(LogLevel.Warning, "the request was GET"), proxy.Logs.ToString());

        // And the proxy comes back on a new link by itself.
        FakeConnection again = await server.NextConnectionAsync();
        await proxy.WaitForLinkAsync(up: true);
        await client.SendAsync(Frames.Get(13, "c"));
        Received request = await again.NextRequestAsync();
        Assert.Equal(3u, request.Uid);
        await again.SendAsync(Frames.Status(request.Uid, Operation.Get, StatusCode.NotOk));
        Assert.Equal(Frames.Status(13, Operation.Get, StatusCode.NotOk), (await client.ReceiveAsync()).Raw);
    }

    [Fact]
    public async Task An_out_of_order_response_breaks_the_link()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address, retryMilliseconds: 5000));
        FakeConnection link = await server.NextConnectionAsync();
        using TestClient client = await proxy.ConnectAsync();

        await client.SendAsync(Frames.Concat(Frames.Have(1, "a"), Frames.Have(2, "b")));
        await link.NextRequestAsync();
        Received second = await link.NextRequestAsync();
        await link.SendAsync(Frames.Status(second.Uid, Operation.Have, StatusCode.Ok));

        Assert.Equal(Frames.Disconnected(1, Operation.Have), (await client.ReceiveAsync()).Raw);
        Assert.Equal(Frames.Disconnected(2, Operation.Have), (await client.ReceiveAsync()).Raw);

        // The answers may reach the client a moment before the loss is counted.
        await proxy.WaitUntilAsync(() => proxy.Statistics.ServerLinkLosses == 1, "the link loss is counted");
        Assert.Equal(1, proxy.Statistics.ServerLinkLosses);
    }

    [Fact]
    public async Task A_server_that_stops_answering_without_closing_is_detected_within_the_timeout()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address, retryMilliseconds: 5000, timeoutMilliseconds: 400));
        FakeConnection link = await server.NextConnectionAsync();

        // The 400 ms also bound the proxy's connect; a connect that failed would answer the GET at once, which must
        // not pass for the timeout below, so the link must be up first.
        await proxy.WaitForLinkAsync(up: true);
        using TestClient client = await proxy.ConnectAsync();

        var clock = Stopwatch.StartNew();
        await client.SendAsync(Frames.Get(77, "never answered"));
        await link.NextRequestAsync();
        Received answer = await client.ReceiveAsync(TimeSpan.FromSeconds(10));
        TimeSpan waited = clock.Elapsed;

        Assert.Equal(Frames.Disconnected(77, Operation.Get), answer.Raw);
        Assert.InRange(waited, TimeSpan.FromMilliseconds(380), TimeSpan.FromSeconds(5));
        Assert.Equal(1, proxy.Statistics.ServerTimeouts);
        Assert.True(await link.ClosesWithinAsync(TimeSpan.FromSeconds(5)), "the half-open link was not closed");

        // Until the next attempt (a retry period, 5 s, away), requests are answered at once by the proxy itself,
        // not forwarded nor held for the link to come back.
        await proxy.WaitUntilAsync(() => proxy.Statistics.Forwarded == 1, "the GET is counted as forwarded");
        clock.Restart();
        Received meanwhile = await client.CallAsync(Frames.Have(78, "x"));
        Assert.Equal(Frames.Disconnected(78, Operation.Have), meanwhile.Raw);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"answered after {clock.Elapsed}");
        Assert.Equal(1, proxy.Statistics.Forwarded);
    }

    [Fact]
    public async Task A_client_that_never_reads_does_not_stall_the_others()
    {
        await using var server = InProcessServer.Start();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        using TestClient hog = await proxy.ConnectAsync();
        byte[] big = RandomData(new Random(5), 30_000);
        await hog.CallAsync(Frames.Add(1, "big", big));

        // The hog asks for 30 KB again and again and never reads: its answers pile up until the proxy stops
        // reading from it. Its sends then block in its own socket buffer, which is its problem alone.
        byte[] getBig = Frames.Get(2, "big");
        using var hogging = new CancellationTokenSource();
        Task flood = Task.Run(async () =>
        {
            byte[] burst = Frames.Concat([.. Enumerable.Repeat(getBig, 100)]);
            while (!hogging.IsCancellationRequested)
            {
                await hog.Socket.SendAsync(burst, System.Net.Sockets.SocketFlags.None, hogging.Token);
            }
        });

        await proxy.WaitUntilAsync(() => proxy.Statistics.Requests >= 200, "the hog is flooding");
        using TestClient other = await proxy.ConnectAsync();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 200; i++)
        {
            Received answer = await other.CallAsync(Frames.Have((uint)i, "big"), TimeSpan.FromSeconds(10));
            Assert.Equal(Frames.Status((uint)i, Operation.Have, StatusCode.Ok), answer.Raw);
        }

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"200 operations took {clock.Elapsed}");

        // The hog is held back, not dropped, and costs bounded memory: the proxy stops reading it, having read no
        // more than a few hundred requests. Answers still due when it paused may let it read a few more, so the
        // count is taken once it stays put.
        long requests = -1;
        await Poll.UntilAsync(
            () =>
            {
                long now = proxy.Statistics.Requests;
                bool settled = now == requests;
                requests = now;
                return settled;
            },
            TimeSpan.FromSeconds(10),
            "the proxy stops reading the hog",
            () => $"{requests} requests read. Log:\n{proxy.Logs}",
            TimeSpan.FromMilliseconds(500));

        // Less the hog's ADD and the other client's 200 HAVEs.
        long hogRequests = requests - 1 - 200;
        Assert.True(hogRequests < 1000, $"{hogRequests} requests read from the hog");
        Assert.Equal(0, proxy.Statistics.ClientsOverflowed);
        await hogging.CancelAsync();
        await flood.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ContinueOnCapturedContext);
    }

    [Fact]
    public async Task A_client_whose_unread_answers_exceed_the_hard_limit_is_dropped_alone()
    {
        await using var server = InProcessServer.Start();
        DistcacheProxyOptions options = ProxyHarness.Options(server.Address);
        options = new DistcacheProxyOptions
        {
            Server = options.Server,
            RetryInterval = options.RetryInterval,
            ConnectionOutputSoftLimit = 64 * 1024,
            ConnectionOutputHardLimit = 256 * 1024,
            MaxRequestsInFlightPerConnection = 1000,
            NativeTransport = options.NativeTransport,
        };
        await using var proxy = await ProxyHarness.StartAsync(options);
        using TestClient hog = await proxy.ConnectAsync();
        await hog.CallAsync(Frames.Add(1, "big", RandomData(new Random(6), 30_000)));

        // 200 answers of 30 KB, unread, far beyond 256 KB: the proxy gives up on this client.
        hog.Socket.ReceiveBufferSize = 4096;
        await hog.SendAsync(Frames.Concat([.. Enumerable.Repeat(Frames.Get(2, "big"), 200)]));
        await proxy.WaitUntilAsync(() => proxy.Statistics.ClientsOverflowed == 1, "the hog is dropped");
        Assert.True(proxy.Logs.Contains(LogLevel.Warning, "waiting unread"), proxy.Logs.ToString());

        using TestClient other = await proxy.ConnectAsync();
        Assert.Equal(Frames.Status(3, Operation.Have, StatusCode.Ok), (await other.CallAsync(Frames.Have(3, "big"))).Raw);
        Assert.Equal(0, proxy.Statistics.ServerLinkLosses);
    }

    [Fact]
    public async Task A_client_breaking_the_framing_is_dropped_and_the_link_is_untouched()
    {
        await using var server = InProcessServer.Start();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));

        using TestClient bad = await proxy.ConnectAsync();
        byte[] wrongVersion = Frames.Get(1, "x");
        wrongVersion[1] = 0x12;
        await bad.SendAsync(wrongVersion);
        Assert.True(await bad.ClosesWithinAsync(TimeSpan.FromSeconds(5)));

        // A response sent as a request is as bad.
        using TestClient backwards = await proxy.ConnectAsync();
        await backwards.SendAsync(Frames.Status(1, Operation.Get, StatusCode.Ok));
        Assert.True(await backwards.ClosesWithinAsync(TimeSpan.FromSeconds(5)));

        using TestClient good = await proxy.ConnectAsync();
        Assert.Equal(Frames.Status(1, Operation.Have, StatusCode.NotOk), (await good.CallAsync(Frames.Have(1, "x"))).Raw);
        Assert.Equal(2, proxy.Statistics.ClientViolations);
        Assert.Equal(1, proxy.Statistics.ServerConnects);
        Assert.True(proxy.Logs.Contains(LogLevel.Warning, "wrong protocol version"), proxy.Logs.ToString());
    }

    [Fact]
    public async Task An_ADD_too_short_for_its_prefix_is_refused_at_the_proxy_so_the_shared_link_survives()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        FakeConnection link = await server.NextConnectionAsync();

        using TestClient bad = await proxy.ConnectAsync();
        byte[] shortAdd = Frames.Data(1, Operation.Add, [0, 0, 1]);
        shortAdd[4] = 0; // a request, not a response
        await bad.SendAsync(Frames.Concat(Frames.Have(1, "before"), shortAdd));
        Received forwarded = await link.NextRequestAsync();
        Assert.Equal(Operation.Have, forwarded.Operation);
        Assert.True(await bad.ClosesWithinAsync(TimeSpan.FromSeconds(5)));
        Assert.True(proxy.Logs.Contains(LogLevel.Warning, "ADD payload shorter than 8 bytes"), proxy.Logs.ToString());

        // The answer to its earlier, valid request has nobody to go to any more.
        await link.SendAsync(Frames.Status(forwarded.Uid, Operation.Have, StatusCode.NotOk));
        await proxy.WaitUntilAsync(() => proxy.Statistics.ResponsesDiscarded == 1, "the orphaned answer is discarded");

        using TestClient good = await proxy.ConnectAsync();
        Assert.Equal(Frames.Status(2, Operation.Have, StatusCode.Ok), (await CallThroughAsync(good, link, Frames.Have(2, "after"), StatusCode.Ok)).Raw);
        Assert.Equal(1, server.Accepted);
        Assert.Equal(0, proxy.Statistics.UnknownResponses);
    }

    [Fact]
    public async Task A_request_announcing_extensions_reaches_the_server_at_the_base_level()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        FakeConnection link = await server.NextConnectionAsync();
        using TestClient client = await proxy.ConnectAsync();

        byte[] request = Frames.Add(3, "multi", RandomData(new Random(2), 5000));
        for (int frame = 0; frame < 3; frame++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(frame * 2062), 0x0011_0007);
        }

        await client.SendAsync(request);
        Received forwarded = await link.NextRequestAsync();
        Assert.Equal(ProtocolConstants.ProtoLevel, forwarded.ProtoLevel);
        byte[] expected = (byte[])request.Clone();
        for (int frame = 0; frame < 3; frame++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(expected.AsSpan(frame * 2062), ProtocolConstants.ProtoLevel);
            BinaryPrimitives.WriteUInt32BigEndian(expected.AsSpan((frame * 2062) + 5), 1);
        }

        Assert.Equal(expected, forwarded.Raw);
    }

    [Fact]
    public async Task Large_answers_spanning_many_frames_are_relabelled_in_every_frame()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        FakeConnection link = await server.NextConnectionAsync();
        using TestClient client = await proxy.ConnectAsync();

        byte[] data = RandomData(new Random(3), ProtocolConstants.MaxMessagePayload);
        await client.SendAsync(Frames.Get(0xDEADBEEF, "large"));
        Received request = await link.NextRequestAsync();
        await link.SendAsync(Frames.Data(request.Uid, Operation.Get, data));

        Received answer = await client.ReceiveAsync();
        Assert.Equal(Frames.Data(0xDEADBEEF, Operation.Get, data), answer.Raw);
    }

    [Fact]
    public async Task While_the_server_is_down_requests_are_answered_DISCONNECTED_at_once_and_service_resumes_by_itself()
    {
        InProcessServer server = InProcessServer.Start();
        string address = server.Address.ToString();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address, retryMilliseconds: 100));
        using TestClient client = await proxy.ConnectAsync();
        Assert.Equal(Frames.Status(1, Operation.Add, StatusCode.Ok), (await client.CallAsync(Frames.Add(1, "s", [1, 2, 3, 4, 5]))).Raw);

        await server.DisposeAsync();
        await proxy.WaitForLinkAsync(up: false);
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal(Frames.Disconnected(2, Operation.Get), (await client.CallAsync(Frames.Get(2, "s"))).Raw);
        }

        // Each would wait out the operation timeout (5 s) if it were forwarded or held.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"20 answers during the outage took {clock.Elapsed}");

        // Within a retry period (100 ms) and slack for a busy machine, well before the default period (5 s).
        await using InProcessServer restarted = InProcessServer.Start(address);
        clock.Restart();
        await proxy.WaitForLinkAsync(up: true, TimeSpan.FromSeconds(10));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"reconnected after {clock.Elapsed}. Log:\n{proxy.Logs}");
        Assert.Equal(Frames.Status(3, Operation.Get, StatusCode.NotOk), (await client.CallAsync(Frames.Get(3, "s"))).Raw);
    }

    [Fact]
    public async Task Requests_in_flight_when_the_link_drops_are_answered_DISCONNECTED_at_once()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address, retryMilliseconds: 5000, timeoutMilliseconds: 60_000));
        FakeConnection link = await server.NextConnectionAsync();
        using TestClient a = await proxy.ConnectAsync();
        using TestClient b = await proxy.ConnectAsync();
        // b sends once a's requests are on the link: the two connections are read on different threads, and the
        // answers below assume a's requests took the link's first uids.
        await a.SendAsync(Frames.Concat(Frames.Get(1, "a1"), Frames.Get(2, "a2")));
        await link.NextRequestAsync();
        await link.NextRequestAsync();
        await b.SendAsync(Frames.Have(3, "b"));
        await link.NextRequestAsync();

        // The server answers the first and then dies (a reset, as when its host reboots).
        await link.SendAsync(Frames.Status(1, Operation.Get, StatusCode.NotOk));
        Assert.Equal(Frames.Status(1, Operation.Get, StatusCode.NotOk), (await a.ReceiveAsync()).Raw);
        var clock = Stopwatch.StartNew();
        link.Reset();
        Assert.Equal(Frames.Disconnected(2, Operation.Get), (await a.ReceiveAsync(TimeSpan.FromSeconds(30))).Raw);
        Assert.Equal(Frames.Disconnected(3, Operation.Have), (await b.ReceiveAsync(TimeSpan.FromSeconds(30))).Raw);

        // Far sooner than the operation timeout (60 s) would answer them.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"in-flight requests answered after {clock.Elapsed}");
        Assert.Equal(2, proxy.Statistics.AnsweredDisconnected);
    }

    [Fact]
    public async Task Shutdown_lets_forwarded_requests_finish_then_closes_every_connection()
    {
        await using var server = new FakeServer();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        FakeConnection link = await server.NextConnectionAsync();
        using TestClient client = await proxy.ConnectAsync();
        using TestClient idle = await proxy.ConnectAsync();
        await client.SendAsync(Frames.Get(4, "slow"));
        Received request = await link.NextRequestAsync();

        Task stopping = proxy.StopAsync();
        await Task.Delay(100);
        Assert.False(stopping.IsCompleted, "shutdown did not wait for the request in flight");
        await link.SendAsync(Frames.Data(request.Uid, Operation.Get, [1, 2, 3, 4, 5]));
        Assert.Equal(Frames.Data(4, Operation.Get, [1, 2, 3, 4, 5]), (await client.ReceiveAsync()).Raw);
        await stopping.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(await client.ClosesWithinAsync(TimeSpan.FromSeconds(5)));
        Assert.True(await idle.ClosesWithinAsync(TimeSpan.FromSeconds(5)));
        Assert.True(await link.ClosesWithinAsync(TimeSpan.FromSeconds(5)));
        Assert.False(File.Exists(proxy.SocketPath), "the socket file was left behind");
        Assert.Equal(0, proxy.Statistics.ServerLinkLosses);
        Assert.True(proxy.Logs.Contains(LogLevel.Information, "Closed the link to the server"), proxy.Logs.ToString());
        Assert.DoesNotContain(proxy.Logs.Entries, e => e.Level >= LogLevel.Warning);
    }

    [Fact]
    public async Task A_client_that_closes_its_sending_side_still_gets_its_answers()
    {
        await using var server = InProcessServer.Start();
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address));
        using TestClient client = await proxy.ConnectAsync();
        await client.SendAsync(Frames.Concat(Frames.Add(1, "h", [5, 6, 7, 8, 9]), Frames.Get(2, "h")));
        client.ShutdownSend();
        Assert.Equal(Frames.Status(1, Operation.Add, StatusCode.Ok), (await client.ReceiveAsync()).Raw);
        Assert.Equal(Frames.Data(2, Operation.Get, [5, 6, 7, 8, 9]), (await client.ReceiveAsync()).Raw);
        Assert.True(await client.ClosesWithinAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task Idle_connections_are_closed_but_never_one_with_a_request_outstanding()
    {
        await using var server = new FakeServer();
        // The operation timeout is well beyond the bound on the idle connection's close, so that close cannot
        // have waited for the other connection's request to end.
        await using var proxy = await ProxyHarness.StartAsync(ProxyHarness.Options(server.Address, timeoutMilliseconds: 4000, idleMilliseconds: 300));
        FakeConnection link = await server.NextConnectionAsync();

        // Started before the connections are made: the idle time and the stalled request's wait both start later.
        var clock = Stopwatch.StartNew();
        using TestClient idle = await proxy.ConnectAsync();
        using TestClient waiting = await proxy.ConnectAsync();
        await waiting.SendAsync(Frames.Get(9, "stalled"));
        await link.NextRequestAsync();

        Assert.True(await idle.ClosesWithinAsync(TimeSpan.FromSeconds(10)), "the idle connection stayed open");
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(150), TimeSpan.FromSeconds(3));

        // The stalled request is answered by the operation timeout, not cut off by the idle timeout...
        Received answer = await waiting.ReceiveAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(Frames.Disconnected(9, Operation.Get), answer.Raw);
        Assert.True(clock.Elapsed > TimeSpan.FromMilliseconds(3500), $"answered after only {clock.Elapsed}");

        // ...after which that connection is idle too.
        Assert.True(await waiting.ClosesWithinAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(2, proxy.Statistics.IdleClosed);
    }

    // The first request to arrive on any connection the fake server accepts within the time, and that connection;
    // null if none comes. Connections that never send are left to the server's disposal.
    private static async Task<(FakeConnection Link, Received Request)?> FirstRequestAsync(FakeServer server, TimeSpan timeout)
    {
        var first = new TaskCompletionSource<(FakeConnection, Received)>(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = Task.Run(async () =>
        {
            try
            {
                while (!first.Task.IsCompleted)
                {
                    FakeConnection link = await server.NextConnectionAsync(timeout);
                    _ = WatchAsync(link);
                }
            }
            catch (TimeoutException)
            {
                // No more connections.
            }
        });

        try
        {
            return await first.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            return null;
        }

        async Task WatchAsync(FakeConnection link)
        {
            try
            {
                first.TrySetResult((link, await link.NextRequestAsync(timeout)));
            }
            catch (Exception e) when (e is OperationCanceledException or EndOfStreamException or System.Net.Sockets.SocketException or ObjectDisposedException)
            {
                // Not the proxy's link: it never sends anything.
            }
        }
    }

    // Sends a request through the proxy, has the fake server answer it with a status, and returns the client's answer.
    private static async Task<Received> CallThroughAsync(TestClient client, FakeConnection link, byte[] request, StatusCode status)
    {
        await client.SendAsync(request);
        Received forwarded = await link.NextRequestAsync();
        await link.SendAsync(Frames.Status(forwarded.Uid, forwarded.Operation, status));
        return await client.ReceiveAsync();
    }

    internal static byte[] RandomData(Random random, int length)
    {
        byte[] data = new byte[length];
        random.NextBytes(data);
        return data;
    }
}
