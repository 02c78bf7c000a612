#!/usr/bin/python3
"""TLS client driver for the tests that run real web servers (Apache, nginx, HAProxy): makes sessions on one server
and resumes them on another.

Standard library only (Debian's python3). Every subcommand prints one JSON object on stdout and exits 0 when it
could run at all (the figures are judged by the caller); it exits 2 on bad arguments and 3 when a --wait-file did
not appear in time.

  pair       --first HOST:PORT --second HOST:PORT [--count N] [--delay S]
             a full handshake on the first server, then (after the delay) one on the second offering that session
  pair       ... --count N --wait-file PATH [--wait-file PATH2 ...] [--wait-timeout S]
             in stages: N sessions per wait file are taken on the first server at once; then, for each wait file in
             turn, the script creates PATH.waiting, waits until PATH exists and offers that stage's N sessions to the
             second server. The caller changes the servers (rotates ticket keys, reloads) between the stages. The
             sessions stay in this process (an ssl.SSLSession cannot be saved), and each is offered exactly once.
  tickets    --target HOST:PORT --count N
             N full handshakes; for each, the ticket the client would offer to resume the session (hex), as it
             stands in the next ClientHello (TLS 1.2 SessionTicket extension, TLS 1.3 pre_shared_key identity)
  load       --first HOST:PORT --second HOST:PORT --clients 16 --pairs N
             N such pairs (no delay) over concurrent threads, alternating the direction
  handshakes --target HOST:PORT --count N [--max-ms MS]
             N fresh full handshakes, one after the other, each timed
  fetch      --target HOST:PORT --path PATH
             one GET of PATH; the report carries the HTTP status and the body

Common options: --tls 1.2|1.3, --server-name NAME (SNI and Host header), --timeout S (per socket operation).

Each connection does an HTTP GET / and reads the whole response: with TLS 1.3 the server's NewSessionTicket
arrives after the handshake, so the session is only complete (and resumable) once some data has been read.
Certificates are not verified (the tests use a self-signed one); what is tested is session resumption (through a
session cache or a session ticket). Every resumption attempt reports "reused" (ssl.SSLSocket.session_reused), and
the reports count them: resumed (the second server resumed the session), full (it answered with a full handshake),
failed (a connection or the HTTP exchange failed).
"""

import argparse
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time


def parse_target(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def make_context(tls):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    version = ssl.TLSVersion.TLSv1_2 if tls == "1.2" else ssl.TLSVersion.TLSv1_3
    context.minimum_version = version
    context.maximum_version = version
    return context


class Result:
    """One connection: a handshake (full or resumed) and one HTTP exchange."""

    __slots__ = ("ok", "reused", "handshake_ms", "total_ms", "status", "error", "session", "body")

    def __init__(self):
        self.ok = False
        self.reused = False
        self.handshake_ms = 0.0
        self.total_ms = 0.0
        self.status = None
        self.error = None
        self.session = None
        self.body = None

    def as_dict(self):
        return {
            "ok": self.ok,
            "reused": self.reused,
            "handshake_ms": round(self.handshake_ms, 2),
            "total_ms": round(self.total_ms, 2),
            "status": self.status,
            "error": self.error,
        }


def connect(context, target, server_name, session, timeout, path="/"):
    """Connects, handshakes (offering `session` if given), GETs `path` and reads the response; never raises."""
    result = Result()
    start = time.perf_counter()
    raw = None
    tls = None
    try:
        raw = socket.create_connection(target, timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = context.wrap_socket(raw, server_hostname=server_name, session=session, do_handshake_on_connect=False)
        handshake_start = time.perf_counter()
        tls.do_handshake()
        result.handshake_ms = (time.perf_counter() - handshake_start) * 1000.0
        result.reused = bool(tls.session_reused)
        request = f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode("ascii")
        tls.sendall(request)
        response = bytearray()
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                break
            if not chunk:
                break
            response.extend(chunk)
        head = bytes(response[:64]).split(b"\r\n", 1)[0].decode("latin-1")
        parts = head.split(" ")
        result.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        result.session = tls.session
        result.body = bytes(response).split(b"\r\n\r\n", 1)[-1].decode("latin-1")
        if result.status is None:
            result.error = f"no HTTP status line in the response ({len(response)} bytes)"
        else:
            result.ok = True
    except (OSError, ssl.SSLError, ValueError) as e:
        result.error = f"{type(e).__name__}: {e}"
    finally:
        result.total_ms = (time.perf_counter() - start) * 1000.0
        for s in (tls, raw):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
    return result


def run_pair(context, first, second, server_name, delay, timeout):
    made = connect(context, first, server_name, None, timeout)
    pair = {"first": made.as_dict(), "second": None, "reused": False}
    if not made.ok or made.session is None:
        return pair, made, None
    if delay > 0:
        time.sleep(delay)
    resumed = connect(context, second, server_name, made.session, timeout)
    pair["second"] = resumed.as_dict()
    pair["reused"] = resumed.ok and resumed.reused
    return pair, made, resumed


def count_pairs(pairs):
    """resumed / full / failed over pairs made by run_pair or resume_on."""
    failed = sum(1 for p in pairs if not p["first"]["ok"] or p["second"] is None or not p["second"]["ok"])
    resumed = sum(1 for p in pairs if p["reused"])
    return {
        "pairs": len(pairs),
        "reused": resumed,
        "resumed": resumed,
        "full": len(pairs) - resumed - failed,
        "failed": failed,
        "first_reused": sum(1 for p in pairs if p["first"]["reused"]),
    }


def resume_on(context, made, second, server_name, timeout):
    """Offers the session of an earlier connection `made` to `second`."""
    pair = {"first": made.as_dict(), "second": None, "reused": False}
    if made.ok and made.session is not None:
        resumed = connect(context, second, server_name, made.session, timeout)
        pair["second"] = resumed.as_dict()
        pair["reused"] = resumed.ok and resumed.reused
    return pair


def wait_for_file(path, timeout):
    """Announces the wait (PATH.waiting), then waits until PATH exists; False after `timeout` seconds."""
    with open(path + ".waiting", "w", encoding="ascii"):
        pass
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def command_pair(args):
    context = make_context(args.tls)
    report = {"command": "pair", "tls": args.tls, "delay_s": args.delay}
    if not args.wait_file:
        pairs = []
        for _ in range(args.count):
            pair, _, _ = run_pair(context, args.first, args.second, args.server_name, args.delay, args.timeout)
            pairs.append(pair)
        report.update(count_pairs(pairs))
        report["details"] = pairs
        report["openssl"] = ssl.OPENSSL_VERSION
        return report

    # All the sessions first, so that every one of them is made under the keys the servers hold now.
    batches = [[connect(context, args.first, args.server_name, None, args.timeout) for _ in range(args.count)]
               for _ in args.wait_file]
    stages = []
    for path, batch in zip(args.wait_file, batches):
        if not wait_for_file(path, args.wait_timeout):
            sys.stderr.write(f"tls_client.py: {path} did not appear within {args.wait_timeout} s\n")
            sys.exit(3)
        pairs = [resume_on(context, made, args.second, args.server_name, args.timeout) for made in batch]
        stages.append({"wait_file": path, **count_pairs(pairs), "details": pairs})
    report["stages"] = stages
    report["openssl"] = ssl.OPENSSL_VERSION
    return report


def offered_ticket(context, server_name, session):
    """The ticket a ClientHello offering `session` carries, or None.

    The handshake runs into memory only (nothing is sent): the ClientHello is read from the outgoing buffer and its
    extensions are walked. TLS 1.2 carries the ticket in the SessionTicket extension (35); TLS 1.3 in the first
    identity of the pre_shared_key extension (41).
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name, session=session)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    records = outgoing.read()
    # The handshake message may span several records: join the payloads of the handshake records (type 22).
    message = bytearray()
    at = 0
    while at + 5 <= len(records):
        kind, length = records[at], struct.unpack(">H", records[at + 3:at + 5])[0]
        if kind == 22:
            message.extend(records[at + 5:at + 5 + length])
        at += 5 + length
    if len(message) < 4 or message[0] != 1:
        raise ValueError("no ClientHello in the client's first flight")
    body = bytes(message[4:4 + int.from_bytes(message[1:4], "big")])
    at = 2 + 32                                            # legacy_version, random
    at += 1 + body[at]                                     # legacy_session_id
    at += 2 + struct.unpack(">H", body[at:at + 2])[0]      # cipher_suites
    at += 1 + body[at]                                     # legacy_compression_methods
    end = at + 2 + struct.unpack(">H", body[at:at + 2])[0]
    at += 2
    while at + 4 <= end:
        kind, length = struct.unpack(">HH", body[at:at + 4])
        data = body[at + 4:at + 4 + length]
        at += 4 + length
        if kind == 35 and length > 0:
            return data
        if kind == 41:
            identity_length = struct.unpack(">H", data[2:4])[0]
            return data[4:4 + identity_length]
    return None


def command_tickets(args):
    context = make_context(args.tls)
    results = []
    for _ in range(args.count):
        made = connect(context, args.target, args.server_name, None, args.timeout)
        entry = {"ok": made.ok, "error": made.error, "ticket": None}
        if made.ok and made.session is not None:
            try:
                ticket = offered_ticket(context, args.server_name, made.session)
                if ticket is None:
                    entry["ok"] = False
                    entry["error"] = "the session has no ticket to offer"
                else:
                    entry["ticket"] = ticket.hex()
            except (ssl.SSLError, ValueError, IndexError, struct.error) as e:
                entry["ok"] = False
                entry["error"] = f"{type(e).__name__}: {e}"
        results.append(entry)
    return {
        "command": "tickets",
        "tls": args.tls,
        "count": len(results),
        "failed": sum(1 for r in results if not r["ok"]),
        "tickets": results,
        "openssl": ssl.OPENSSL_VERSION,
    }


def command_load(args):
    context = make_context(args.tls)
    lock = threading.Lock()
    next_pair = [0]
    counts = {"pairs": 0, "resumed": 0, "full": 0, "failed": 0, "first_reused": 0}
    errors = {}
    handshake_times = []
    total_times = []

    def record_error(where, result):
        key = f"{where}: {result.error or 'HTTP status ' + str(result.status)}"
        errors[key] = errors.get(key, 0) + 1

    def worker():
        while True:
            with lock:
                index = next_pair[0]
                if index >= args.pairs:
                    return
                next_pair[0] += 1
            # Alternate the direction, so each server both makes and resumes sessions.
            first, second = (args.first, args.second) if index % 2 == 0 else (args.second, args.first)
            _, made, resumed = run_pair(context, first, second, args.server_name, 0, args.timeout)
            with lock:
                counts["pairs"] += 1
                for r in (made, resumed):
                    if r is not None and r.ok:
                        handshake_times.append(r.handshake_ms)
                        total_times.append(r.total_ms)
                if not made.ok or made.session is None:
                    counts["failed"] += 1
                    record_error("first handshake", made)
                    continue
                if made.reused:
                    counts["first_reused"] += 1
                if not resumed.ok:
                    counts["failed"] += 1
                    record_error("second handshake", resumed)
                elif resumed.reused:
                    counts["resumed"] += 1
                else:
                    counts["full"] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started

    def percentile(values, p):
        if not values:
            return 0.0
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))], 2)

    report = {
        "command": "load",
        "tls": args.tls,
        "clients": args.clients,
        **counts,
        "errors": errors,
        "handshakes": len(handshake_times),
        "longest_handshake_ms": round(max(handshake_times), 2) if handshake_times else 0.0,
        "longest_request_ms": round(max(total_times), 2) if total_times else 0.0,
        "p50_handshake_ms": percentile(handshake_times, 50),
        "p99_handshake_ms": percentile(handshake_times, 99),
        "elapsed_s": round(elapsed, 3),
        "openssl": ssl.OPENSSL_VERSION,
    }
    return report


def command_handshakes(args):
    context = make_context(args.tls)
    results = []
    for _ in range(args.count):
        results.append(connect(context, args.target, args.server_name, None, args.timeout))
    ok = [r for r in results if r.ok]
    report = {
        "command": "handshakes",
        "tls": args.tls,
        "count": len(results),
        "ok": len(ok),
        "failed": len(results) - len(ok),
        "reused": sum(1 for r in ok if r.reused),
        "longest_handshake_ms": round(max((r.handshake_ms for r in ok), default=0.0), 2),
        "longest_request_ms": round(max((r.total_ms for r in results), default=0.0), 2),
        "handshake_ms": [round(r.handshake_ms, 2) for r in results],
        "request_ms": [round(r.total_ms, 2) for r in results],
        "errors": [r.error for r in results if not r.ok],
        "openssl": ssl.OPENSSL_VERSION,
    }
    if args.max_ms is not None:
        report["max_ms"] = args.max_ms
        report["over_max"] = sum(1 for r in results if r.total_ms > args.max_ms)
    return report


def command_fetch(args):
    result = connect(make_context(args.tls), args.target, args.server_name, None, args.timeout, args.path)
    return {"command": "fetch", "ok": result.ok, "status": result.status, "error": result.error, "body": result.body}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tls", choices=("1.2", "1.3"), default="1.2")
    common.add_argument("--server-name", default="cache.test")
    common.add_argument("--timeout", type=float, default=15.0, help="seconds per socket operation")
    commands = parser.add_subparsers(dest="command", required=True)

    pair = commands.add_parser("pair", parents=[common])
    pair.add_argument("--first", type=parse_target, required=True)
    pair.add_argument("--second", type=parse_target, required=True)
    pair.add_argument("--delay", type=float, default=0.0, help="seconds between the two handshakes")
    pair.add_argument("--count", type=int, default=1)
    pair.add_argument("--wait-file", action="append", default=[],
                      help="run in stages, one per wait file (see above); may be repeated")
    pair.add_argument("--wait-timeout", type=float, default=60.0, help="seconds to wait for each wait file")

    load = commands.add_parser("load", parents=[common])
    load.add_argument("--first", type=parse_target, required=True)
    load.add_argument("--second", type=parse_target, required=True)
    load.add_argument("--clients", type=int, default=16)
    load.add_argument("--pairs", type=int, default=600)

    handshakes = commands.add_parser("handshakes", parents=[common])
    handshakes.add_argument("--target", type=parse_target, required=True)
    handshakes.add_argument("--count", type=int, default=10)
    handshakes.add_argument("--max-ms", type=float, default=None)

    fetch = commands.add_parser("fetch", parents=[common])
    fetch.add_argument("--target", type=parse_target, required=True)
    fetch.add_argument("--path", default="/")

    tickets = commands.add_parser("tickets", parents=[common])
    tickets.add_argument("--target", type=parse_target, required=True)
    tickets.add_argument("--count", type=int, default=1)

    args = parser.parse_args(argv)
    commands_by_name = {"pair": command_pair, "load": command_load, "handshakes": command_handshakes, "fetch": command_fetch,
                        "tickets": command_tickets}
    report = commands_by_name[args.command](args)
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
