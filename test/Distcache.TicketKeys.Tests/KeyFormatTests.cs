using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Distcache.TicketKeys.Tests.Support;

namespace Distcache.TicketKeys.Tests;

/// <summary>
/// The key files of dc_ticketkeys, written here from random keys, with real servers: nginx (three 80-byte files,
/// name|hmac|aes, the first <c>ssl_session_ticket_key</c> encrypts) and HAProxy (three base64 lines of
/// name|aes|hmac, previous, current, next; the penultimate encrypts). Servers with the same keys resume each other's
/// tickets and servers with other keys do not; a ticket outlives one rotation of the files (its key is then the
/// previous one) and not two; a server that rotated first still resumes the tickets of one that has not (its
/// current key is the other's next). Each server is sealed off from every other kind of resumption (no session
/// cache), so a resumed session is a decrypted ticket.
/// </summary>
public sealed class KeyFormatTests(Certificate certificate, ITestOutputHelper output)
{
    private const int Tickets = Farm.Tickets;

    private const string ServerName = Certificate.ServerName;

    private static readonly TimeSpan ClientLimit = TimeSpan.FromSeconds(60);

    [Theory(Timeout = 60_000)]
    [InlineData(ServerKind.Nginx, "1.2")]
    [InlineData(ServerKind.Nginx, "1.3")]
    [InlineData(ServerKind.HAProxy, "1.2")]
    [InlineData(ServerKind.HAProxy, "1.3")]
    public async Task Two_servers_with_the_same_key_files_resume_each_others_tickets(ServerKind kind, string tls)
    {
        ServerKinds.Require(kind);
        var keys = new HostKeys(PeriodKey.Random("A"), PeriodKey.Random("B"), PeriodKey.Random("C"));
        await using var farm = new Farm(certificate, output);
        (WebServer first, WebServer second) = await farm.StartTwoAsync(kind, keys, kind, keys);

        await farm.AssertPairsAsync(tls, first, second, Tickets, "same keys");
        await farm.AssertPairsAsync(tls, second, first, Tickets, "same keys");
    }

    /// <summary>The control of the test above: the same set-up with unrelated keys resumes nothing, so what the tests
    /// count is tickets decrypted with the keys of the files.</summary>
    [Theory(Timeout = 60_000)]
    [InlineData(ServerKind.Nginx, "1.2")]
    [InlineData(ServerKind.Nginx, "1.3")]
    [InlineData(ServerKind.HAProxy, "1.2")]
    [InlineData(ServerKind.HAProxy, "1.3")]
    public async Task Two_servers_with_other_keys_resume_none_of_each_others_tickets(ServerKind kind, string tls)
    {
        ServerKinds.Require(kind);
        var firstKeys = new HostKeys(PeriodKey.Random("A"), PeriodKey.Random("B"), PeriodKey.Random("C"));
        var secondKeys = new HostKeys(PeriodKey.Random("D"), PeriodKey.Random("E"), PeriodKey.Random("F"));
        await using var farm = new Farm(certificate, output);
        (WebServer first, WebServer second) = await farm.StartTwoAsync(kind, firstKeys, kind, secondKeys);

        await farm.AssertPairsAsync(tls, first, second, 0, "other keys");
        await farm.AssertPairsAsync(tls, second, first, 0, "other keys");
        // Each still resumes its own.
        await farm.AssertPairsAsync(tls, second, second, Tickets, "to itself");
    }

    /// <summary>
    /// The periods of dc_ticketkeys played with the files: keys A..E, one per period. Tickets are made in period B
    /// (files A, B, C); the hosts rotate to period C (B, C, D) one after the other, as hosts of a farm do; the old
    /// tickets still resume, as do new ones, in both directions, even while only one host has rotated; after the
    /// next rotation (C, D, E) the tickets of period B resume nowhere: full handshakes, not failures.
    /// </summary>
    [Theory(Timeout = 90_000)]
    [InlineData(ServerKind.Nginx, "1.2")]
    [InlineData(ServerKind.Nginx, "1.3")]
    [InlineData(ServerKind.HAProxy, "1.2")]
    [InlineData(ServerKind.HAProxy, "1.3")]
    public async Task A_ticket_outlives_one_rotation_of_the_key_files_and_not_two(ServerKind kind, string tls)
    {
        ServerKinds.Require(kind);
        PeriodKey[] key = [.. "ABCDE".Select(label => PeriodKey.Random(label.ToString()))];
        HostKeys periodB = new(key[0], key[1], key[2]);
        HostKeys periodC = new(key[1], key[2], key[3]);
        HostKeys periodD = new(key[2], key[3], key[4]);
        await using var farm = new Farm(certificate, output);
        (WebServer first, WebServer second) = await farm.StartTwoAsync(kind, periodB, kind, periodB);

        // Tickets made in period B by the first host, offered to the second in two stages: after one rotation, then
        // after two. The client keeps them in its process; each is offered once.
        await using PairsInStages old = TlsClient.StartPairsInStages(tls, ServerName, first.Endpoint, second.Endpoint, Tickets, stages: 2, farm.Directory);
        await old.WaitUntilWaitingAsync(1, ClientLimit);

        // The first host rotates, the second not yet. The first's new tickets (key C) resume on the second, which has
        // C as its next key; the second's tickets (key B) resume on the first, which has B as its previous key.
        first.WriteKeys(periodC);
        await first.ReloadAsync();
        await farm.AssertPairsAsync(tls, first, second, Tickets, $"only the first rotated to ({periodC})");
        await farm.AssertPairsAsync(tls, second, first, Tickets, "only the first rotated");

        // The second host rotates, by the command dc_ticketkeys would run.
        second.WriteKeys(periodC);
        output.WriteLine($"reload command of {second.Endpoint}: {second.ReloadCommand}");
        await second.ReloadByCommandAsync();
        // Period B's tickets go to the second host, which now holds B as its previous key.
        old.Release(1);
        await old.WaitUntilWaitingAsync(2, ClientLimit);
        await farm.AssertPairsAsync(tls, first, second, Tickets, $"both rotated to ({periodC})");
        await farm.AssertPairsAsync(tls, second, first, Tickets, "both rotated");

        // The next period: B is gone from both.
        first.WriteKeys(periodD);
        second.WriteKeys(periodD);
        await first.ReloadAsync();
        await second.ReloadAsync();
        old.Release(2);
        JsonElement report = await old.ReportAsync(ClientLimit);
        JsonElement[] stages = [.. report.GetProperty("stages").EnumerateArray()];
        farm.AssertResumed(stages[0], Tickets, $"TLS {tls}, tickets of period B after one rotation: {first.Endpoint} to {second.Endpoint}");
        farm.AssertResumed(stages[1], 0, $"TLS {tls}, tickets of period B after two rotations ({periodD}): {first.Endpoint} to {second.Endpoint}");
        // ... while the tickets of period D resume: the servers work, B's tickets are refused for their key.
        await farm.AssertPairsAsync(tls, first, second, Tickets, $"new tickets after the second rotation ({periodD})");
    }

    /// <summary>
    /// Why dc_ticketkeys never leaves a key file half written: a server refuses a file it cannot read (nginx: a
    /// size other than 48 or 80 bytes; HAProxy: a line that is not the base64 of 48 or 80 bytes) and its reload
    /// fails. It goes on with the keys it had, and the next reload with a whole file works.
    /// </summary>
    [Theory(Timeout = 60_000)]
    [InlineData(ServerKind.Nginx)]
    [InlineData(ServerKind.HAProxy)]
    public async Task A_half_written_key_file_fails_the_reload_and_the_server_keeps_its_keys(ServerKind kind)
    {
        ServerKinds.Require(kind);
        var keys = new HostKeys(PeriodKey.Random("A"), PeriodKey.Random("B"), PeriodKey.Random("C"));
        await using var farm = new Farm(certificate, output);
        (WebServer first, WebServer second) = await farm.StartTwoAsync(kind, keys, kind, keys);

        string file = first.KeyFiles()[0];
        await File.WriteAllBytesAsync(file, (await File.ReadAllBytesAsync(file))[..40]);
        InvalidOperationException refused = await Assert.ThrowsAsync<InvalidOperationException>(first.ReloadAsync);
        output.WriteLine($"{first.Kind} with the first 40 bytes of {file}: {refused.Message.Split('\n')[0]}");
        Assert.Contains(file, refused.Message, StringComparison.Ordinal);

        await farm.AssertPairsAsync("1.2", first, second, Tickets, "after the first one's failed reload");
        first.WriteKeys(keys);
        await first.ReloadAsync();
        await farm.AssertPairsAsync("1.2", second, first, Tickets, "the first one reloaded with the whole file");
    }

    /// <summary>
    /// The layouts of the files, read from what the servers make of them: with the same keys, every ticket nginx
    /// and HAProxy issue names the current key, carries an HMAC-SHA256 under the key's hmac part and decrypts
    /// (AES-256-CBC) under its aes part, that is, each server reads its file in the layout written for it. A file
    /// read in the other layout would give the aes part as the HMAC key, which matches none of them.
    /// </summary>
    [Theory(Timeout = 60_000)]
    [InlineData("1.2")]
    [InlineData("1.3")]
    public async Task Nginx_and_HAProxy_seal_tickets_with_the_current_key_read_in_the_layout_of_their_files(string tls)
    {
        ServerKinds.Require(ServerKind.Nginx);
        ServerKinds.Require(ServerKind.HAProxy);
        var keys = new HostKeys(PeriodKey.Random("A"), PeriodKey.Random("B"), PeriodKey.Random("C"));
        await using var farm = new Farm(certificate, output);
        (WebServer nginx, WebServer haproxy) = await farm.StartTwoAsync(ServerKind.Nginx, keys, ServerKind.HAProxy, keys);

        // The session id context each server puts in its sessions (see the next test): nginx's is SHA-1 over "HTTP"
        // and the SHA-1 of its certificate; HAProxy's is its name.
#pragma warning disable CA5350 // nginx's own derivation, recomputed to be compared; nothing is protected by it here
        byte[] nginxContext = SHA1.HashData([.. "HTTP"u8, .. SHA1.HashData(certificate.Der)]);
#pragma warning restore CA5350
        byte[] haproxyContext = Encoding.ASCII.GetBytes("haproxy");
        foreach ((WebServer server, byte[] context) in new[] { (nginx, nginxContext), (haproxy, haproxyContext) })
        {
            JsonElement report = await TlsClient.TicketsAsync(tls, ServerName, server.Endpoint, 3);
            Assert.True(report.Int("failed") == 0, $"{server.Kind}: {report}\n{farm.Diagnostics()}");
            foreach (JsonElement entry in report.GetProperty("tickets").EnumerateArray())
            {
                var ticket = new SealedTicket(Convert.FromHexString(entry.GetProperty("ticket").GetString()!));
                string name = Convert.ToHexStringLower(ticket.KeyName);
                output.WriteLine($"TLS {tls}, {server.Kind}: a ticket of {ticket.Length} bytes named {name}");
                Assert.True(ticket.KeyName.SequenceEqual(keys.Current.Name), $"{server.Kind} sealed a ticket with key {name}, not the current one, {keys.Current}");
                Assert.True(ticket.MacMatches(keys.Current.Hmac), $"{server.Kind}: the ticket's HMAC is not under the hmac part of {keys.Current}");
                Assert.False(ticket.MacMatches(keys.Current.Aes), $"{server.Kind}: the ticket's HMAC is under the aes part of {keys.Current}");
                (byte[] sessionContext, string? sessionServerName) = SealedTicket.ReadSession(ticket.Decrypt(keys.Current.Aes));
                Assert.Equal(ServerName, sessionServerName);
                Assert.Equal(Convert.ToHexStringLower(context), Convert.ToHexStringLower(sessionContext));
            }
        }
    }

    /// <summary>
    /// nginx and HAProxy with the same keys seal their tickets under the same key parts (the test above), so each
    /// opens the other's, but neither resumes them, in TLS 1.2 or 1.3: OpenSSL resumes a session only in the session
    /// id context it was made in (ssl_get_prev_session), and nginx's context (derived from its certificate) is not
    /// HAProxy's ("haproxy"); neither server lets its configuration set it. A farm that mixes the two shares
    /// resumption only among hosts of the same server: full handshakes across, never failures.
    /// </summary>
    [Theory(Timeout = 60_000)]
    [InlineData("1.2")]
    [InlineData("1.3")]
    public async Task Nginx_and_HAProxy_with_the_same_keys_answer_each_others_tickets_with_full_handshakes(string tls)
    {
        ServerKinds.Require(ServerKind.Nginx);
        ServerKinds.Require(ServerKind.HAProxy);
        var keys = new HostKeys(PeriodKey.Random("A"), PeriodKey.Random("B"), PeriodKey.Random("C"));
        await using var farm = new Farm(certificate, output);
        (WebServer nginx, WebServer haproxy) = await farm.StartTwoAsync(ServerKind.Nginx, keys, ServerKind.HAProxy, keys);

        await farm.AssertPairsAsync(tls, nginx, haproxy, 0, "same keys");
        await farm.AssertPairsAsync(tls, haproxy, nginx, 0, "same keys");
        // Each resumes its own tickets with these keys.
        await farm.AssertPairsAsync(tls, nginx, nginx, Tickets, "to itself");
        await farm.AssertPairsAsync(tls, haproxy, haproxy, Tickets, "to itself");
    }
}
