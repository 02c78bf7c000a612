using System.Text.Json;
using Distcache.TicketKeys.Tests.Support;

namespace Distcache.TicketKeys.Tests;

/// <summary>
/// Debian's Apache httpd 2.4 (mod_ssl, event MPM) with <c>SSLSessionTicketKeyFile</c> pointing at the file
/// <c>dc_ticketkeys -apache</c> wrote, on two hosts of a farm (127.0.0.1 and 127.0.0.2, the same port and ServerName),
/// each with its own dc_ticketkeys and state file against one real dc_server. No SSLSessionCache is configured, and
/// each test checks that mod_ssl says so: Apache then keeps sessions nowhere, so a resumed session is a ticket
/// decrypted with the key of the file. A real TLS client takes tickets on one host and offers them to the other,
/// with TLS 1.2 and 1.3.
/// </summary>
public sealed class ApacheTicketKeyTests(Certificate certificate, ITestOutputHelper output)
{
    private const int Tickets = Farm.Tickets;
    private const string ServerName = Certificate.ServerName;

    /// <summary>For the tests that are not about a rotation: no boundary falls inside them (one every two days), so
    /// both hosts write the key of the same period.</summary>
    private const int StillPeriod = 172_800;

    /// <summary>For the rotation: short enough to wait for one, long enough for the phase before it to fit in one
    /// period on a loaded machine.</summary>
    private const int RotationPeriod = 20;

    /// <summary>What mod_ssl logs at start when no SSLSessionCache is configured (AH01873).</summary>
    private const string NoSessionCache = "Session Cache is not configured";

    private static readonly string[] Versions = ["1.2", "1.3"];
    private static readonly TimeSpan ClientLimit = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan RotationLimit = TimeSpan.FromSeconds(RotationPeriod + 15);

    /// <summary>
    /// The farm as docs/ticket-keys.md sets it up for Apache: each host's dc_ticketkeys writes its own file from the
    /// key it finds in the shared cache, and a ticket issued by either host resumes on the other.
    /// </summary>
    [Theory(Timeout = 90_000)]
    [InlineData("1.2")]
    [InlineData("1.3")]
    public async Task Two_Apache_servers_with_the_file_dc_ticketkeys_wrote_on_each_host_resume_each_others_tickets_without_a_session_cache(string tls)
    {
        ServerKinds.Require(ServerKind.Apache);
        await using var farm = new Farm(certificate, output);
        var (cache, address) = await ServerProcess.StartTcpAsync();
        await using var _ = cache;
        (WebServer first, WebServer second) = await farm.StartTwoAsync(ServerKind.Apache, ServerKind.Apache,
            server => Farm.WriteKeysOnceAsync(server, address, StillPeriod), "keys from dc_ticketkeys");

        // Each host wrote its own file from the farm's key in the cache: the same 48 bytes.
        byte[] firstKey = KeyFile(first);
        Assert.Equal(48, firstKey.Length);
        Assert.True(firstKey.SequenceEqual(KeyFile(second)), "the two hosts' dc_ticketkeys wrote different files");
        AssertNoSessionCache(first, second);

        await farm.AssertPairsAsync(tls, first, second, Tickets, "the same file");
        await farm.AssertPairsAsync(tls, second, first, Tickets, "the same file");
    }

    /// <summary>
    /// The control of the test above: the same set-up, except that the second host's dc_ticketkeys keeps another
    /// farm's keys (<c>-name other</c>, in the same cache), so its file holds another key. The hosts then resume
    /// none of each other's tickets (full handshakes, no failure) while each resumes its own: what the test above
    /// counts is tickets opened with the key of the file, not sessions found anywhere else.
    /// </summary>
    [Theory(Timeout = 90_000)]
    [InlineData("1.2")]
    [InlineData("1.3")]
    public async Task An_Apache_server_whose_file_holds_another_key_resumes_none_of_the_tickets_and_makes_full_handshakes(string tls)
    {
        ServerKinds.Require(ServerKind.Apache);
        await using var farm = new Farm(certificate, output);
        var (cache, address) = await ServerProcess.StartTcpAsync();
        await using var _ = cache;
        (WebServer first, WebServer second) = await farm.StartTwoAsync(ServerKind.Apache, ServerKind.Apache,
            server => Farm.WriteKeysOnceAsync(server, address, StillPeriod, server.Address == "127.0.0.2" ? ["-name", "other"] : []),
            "keys from dc_ticketkeys, the second host's under -name other");

        Assert.False(KeyFile(first).SequenceEqual(KeyFile(second)), "the two farms' files are the same");
        AssertNoSessionCache(first, second);

        await farm.AssertPairsAsync(tls, first, second, 0, "another key");
        await farm.AssertPairsAsync(tls, second, first, 0, "another key");
        await farm.AssertPairsAsync(tls, first, first, Tickets, "to itself");
        await farm.AssertPairsAsync(tls, second, second, Tickets, "to itself");
    }

    /// <summary>
    /// What Apache makes of the file: every ticket it issues names its key by the file's first 16 bytes and decrypts
    /// with AES-128-CBC under the file's last 16 into a session of this server. Its HMAC-SHA256 should be under the
    /// file's middle 16 bytes (the HMAC secret). mod_ssl 2.4 built against OpenSSL 3 (ssl_init_ticket_key) instead
    /// hands OpenSSL a pointer to the HMAC secret inside the buffer it read the file into, a local array that is gone
    /// once the file is read; under the event MPM that memory held sixteen zero bytes on every host when tickets were
    /// made and checked (Debian's apache2 2.4.71), so the hosts of a farm still agree (the test above) but the MAC is
    /// one anybody can compute. Either key is accepted here, and the output says which one it was, so that a fixed
    /// mod_ssl passes too; any other MAC key fails (the hosts would then disagree). docs/ticket-keys.md says so.
    /// </summary>
    [Theory(Timeout = 90_000)]
    [InlineData("1.2")]
    [InlineData("1.3")]
    public async Task Apache_names_and_encrypts_its_tickets_with_the_file_and_authenticates_them_under_its_secret_or_the_zeros_of_mod_ssl_s_defect(string tls)
    {
        ServerKinds.Require(ServerKind.Apache);
        await using var farm = new Farm(certificate, output);
        var (cache, address) = await ServerProcess.StartTcpAsync();
        await using var _ = cache;
        WebServer apache = (await farm.StartTwoAsync(ServerKind.Apache, ServerKind.Apache,
            server => Farm.WriteKeysOnceAsync(server, address, StillPeriod), "keys from dc_ticketkeys")).First;
        byte[] file = KeyFile(apache);
        (byte[] name, byte[] hmac, byte[] aes) = (file[..16], file[16..32], file[32..48]);

        JsonElement report = await TlsClient.TicketsAsync(tls, ServerName, apache.Endpoint, 3);
        Assert.True(report.Int("failed") == 0, $"{report}\n{farm.Diagnostics()}");
        JsonElement[] tickets = [.. report.GetProperty("tickets").EnumerateArray()];
        Assert.Equal(3, tickets.Length);
        foreach (JsonElement entry in tickets)
        {
            var ticket = new SealedTicket(Convert.FromHexString(entry.GetProperty("ticket").GetString()!));
            (byte[] context, string? serverName) = SealedTicket.ReadSession(ticket.Decrypt(aes));
            bool underSecret = ticket.MacMatches(hmac);
            bool underZeros = ticket.MacMatches(new byte[16]);
            output.WriteLine($"TLS {tls}: a ticket of {ticket.Length} bytes named {Convert.ToHexStringLower(ticket.KeyName)}, "
                + $"a session of {serverName} in the context {System.Text.Encoding.ASCII.GetString(context)}; "
                + $"its HMAC under the file's HMAC secret: {underSecret}, under sixteen zero bytes: {underZeros}");
            Assert.True(ticket.KeyName.SequenceEqual(name), "the ticket is not named by the file's first 16 bytes");
            Assert.Equal(ServerName, serverName);
            Assert.True(underSecret || underZeros, "the ticket's HMAC is under neither the file's HMAC secret nor sixteen zero bytes");
        }
    }

    /// <summary>
    /// docs/ticket-keys.md: Apache holds one key, so its tickets do not survive a rotation and their clients make a
    /// full handshake. Both hosts run dc_ticketkeys as a service (20-second periods, a graceful restart as the
    /// reload command). Tickets the first host issued before a rotation, offered after it, are answered with full
    /// handshakes, by the other host and by the first itself, and no connection fails; tickets issued after the
    /// rotation resume across the farm again, and did before it.
    /// </summary>
    [Fact(Timeout = 180_000)]
    public async Task After_a_rotation_Apache_answers_tickets_issued_before_it_with_full_handshakes_and_resumes_new_ones()
    {
        ServerKinds.Require(ServerKind.Apache);
        await using var farm = new Farm(certificate, output);
        var (cache, address) = await ServerProcess.StartTcpAsync();
        await using var _ = cache;

        // The phase before the rotation must fall inside one period: start just after a boundary.
        await Periods.StartAsync(RotationPeriod, latest: TimeSpan.FromSeconds(1), after: TimeSpan.FromMilliseconds(100));
        long period = CurrentPeriod();
        var tools = new List<Tool>();
        var issuedBefore = new List<(string Tls, string To, PairsInStages Pairs)>();
        try
        {
            (WebServer first, WebServer second) = await farm.StartTwoAsync(ServerKind.Apache, ServerKind.Apache,
                server => Farm.WriteKeysOnceAsync(server, address, RotationPeriod), "keys from dc_ticketkeys");
            tools.Add(Farm.StartKeyService(first, address, RotationPeriod));
            tools.Add(Farm.StartKeyService(second, address, RotationPeriod));
            AssertNoSessionCache(first, second);

            foreach (string tls in Versions)
            {
                await farm.AssertPairsAsync(tls, first, second, Tickets, "before the rotation");
            }

            // Tickets the first host issues now, offered once both hosts have rotated: to the other host and back to
            // the first.
            foreach (string tls in Versions)
            {
                foreach (WebServer to in new[] { second, first })
                {
                    issuedBefore.Add((tls, to.Endpoint, TlsClient.StartPairsInStages(tls, ServerName, first.Endpoint, to.Endpoint, Tickets, stages: 1, farm.Directory)));
                }
            }

            foreach (var (_, _, pairs) in issuedBefore)
            {
                await pairs.WaitUntilWaitingAsync(1, ClientLimit);
            }

            // No boundary has passed since the files were written: every ticket so far is under the first period's key.
            Assert.True(CurrentPeriod() == period, $"the set-up outlasted the {RotationPeriod}-second period it must fit in (period {period}, now {CurrentPeriod()})");
            byte[] keyBefore = KeyFile(first);

            await farm.RotationAsync([first, second], tools, RotationLimit);
            byte[] keyAfter = KeyFile(first);
            Assert.False(keyAfter.SequenceEqual(keyBefore), "the rotation left the first host's key file as it was");
            Assert.True(keyAfter.SequenceEqual(KeyFile(second)), "after the rotation the hosts' files differ");
            output.WriteLine($"key {Convert.ToHexStringLower(keyBefore[..4])} before the rotation, {Convert.ToHexStringLower(keyAfter[..4])} after it");

            foreach (var (tls, to, pairs) in issuedBefore)
            {
                pairs.Release(1);
                JsonElement report = await pairs.ReportAsync(ClientLimit);
                farm.AssertResumed(report.GetProperty("stages")[0], 0, $"TLS {tls}, issued by {first.Endpoint} before the rotation, offered after it to {to}");
            }

            foreach (string tls in Versions)
            {
                await farm.AssertPairsAsync(tls, first, second, Tickets, "after the rotation");
                await farm.AssertPairsAsync(tls, second, first, Tickets, "after the rotation");
            }
        }
        finally
        {
            foreach (var (_, _, pairs) in issuedBefore)
            {
                await pairs.DisposeAsync();
            }

            foreach (Tool tool in tools)
            {
                output.WriteLine(tool.Stderr);
                await tool.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// Why dc_ticketkeys never leaves the file half written, and why Apache differs from nginx and HAProxy there:
    /// mod_ssl reads the file only when Apache starts or restarts, so the configuration test (<c>apache2 -t</c>)
    /// passes a file of 40 bytes, and the graceful restart that follows fails on it ("AH02287: Failed to read 48
    /// bytes") and stops Apache altogether, where nginx and HAProxy keep their old keys. The other host, with a
    /// whole file, goes on resuming.
    /// </summary>
    [Fact(Timeout = 90_000)]
    public async Task A_half_written_key_file_passes_the_configuration_test_and_stops_Apache_at_its_graceful_restart()
    {
        ServerKinds.Require(ServerKind.Apache);
        var keys = new HostKeys(PeriodKey.Random("A"), PeriodKey.Random("B"), PeriodKey.Random("C"));
        await using var farm = new Farm(certificate, output);
        (WebServer first, WebServer second) = await farm.StartTwoAsync(ServerKind.Apache, keys, ServerKind.Apache, keys);
        await farm.AssertPairsAsync("1.2", first, second, Tickets, "whole files");

        var apache = (ApacheServer)first;
        string file = apache.TicketKeyFile!;
        await File.WriteAllBytesAsync(file, (await File.ReadAllBytesAsync(file))[..40]);
        ProcessResult check = await Tool.RunProgramAsync(ApacheServer.Binary, ["-t", "-f", apache.ConfigFile], TimeSpan.FromSeconds(30));
        output.WriteLine($"apache2 -t with the first 40 bytes of {file}: exit {check.ExitCode}, {check.Output.Trim()}");
        Assert.True(check.Succeeded, check.Describe());

        // The children told to stop by the restart are no longer the master's once it has exited: killed at the
        // end if they are still there, as disposing the server would have.
        IReadOnlyList<ProcessInstance> children = apache.Workers();
        try
        {
            InvalidOperationException refused = await Assert.ThrowsAsync<InvalidOperationException>(apache.ReloadAsync);
            output.WriteLine($"its graceful restart: {refused.Message.Split('\n')[0]}");
            Assert.Contains("AH02287", refused.Message, StringComparison.Ordinal);
            Assert.Contains(file, refused.Message, StringComparison.Ordinal);
            await Poll.UntilAsync(() => apache.HasExited, TimeSpan.FromSeconds(15), "Apache to exit after its failed graceful restart", apache.Diagnostics);
            Assert.NotEmpty(apache.LogLines("Configuration Failed"));
        }
        finally
        {
            foreach (ProcessInstance child in children.Where(ProcessTree.IsRunning))
            {
                _ = Native.Kill(child.Pid, Native.SIGKILL);
            }
        }

        await farm.AssertPairsAsync("1.2", second, second, Tickets, "the other host");
    }

    private static long CurrentPeriod() => DateTimeOffset.UtcNow.ToUnixTimeSeconds() / RotationPeriod;

    private static byte[] KeyFile(WebServer server) => File.ReadAllBytes(server.KeyFiles()[0]);

    /// <summary>Each server is configured without SSLSessionCache, and mod_ssl says at start that it has none: no
    /// session is kept on the server side, so a resumption can only come from a ticket.</summary>
    private void AssertNoSessionCache(params WebServer[] servers)
    {
        foreach (ApacheServer apache in servers.Cast<ApacheServer>())
        {
            Assert.DoesNotContain(File.ReadAllLines(apache.ConfigFile), line => line.TrimStart().StartsWith("SSLSessionCache", StringComparison.Ordinal));
            IReadOnlyList<string> said = apache.LogLines(NoSessionCache);
            Assert.True(said.Count > 0, $"Apache {apache.Endpoint} did not say \"{NoSessionCache}\"\n{apache.Diagnostics()}");
            output.WriteLine($"Apache {apache.Endpoint}: {said[0][(said[0].IndexOf("AH", StringComparison.Ordinal))..]}");
        }
    }
}
