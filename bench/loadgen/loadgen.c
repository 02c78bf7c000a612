// SPDX-License-Identifier: MIT
//
// loadgen: a single-threaded load generator for session caches.
//
// It speaks the distcache 1.5.1 wire protocol, Redis (RESP2) and the memcached text protocol, over TCP or a unix
// socket. It keeps N connections with K requests in flight on each, or opens a new connection for every operation,
// checks every answer, and reports throughput, latency percentiles and the CPU time per operation of itself and of
// the server processes named with -serverpid.
//
// It shares no code with the servers it measures, and keeps its own cost per operation low: all buffers are
// allocated at start, answers are parsed in place as they arrive (payload bytes are checked and skipped, never
// copied), the requests of a connection are batched into one write per event, and the clock is read once per event.

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

// ---- limits and protocol constants ---------------------------------------------------------------------------------

#define MAX_CLIENTS 10000
#define MAX_PIPELINE 1024
#define MAX_PIDS 16
#define PREFILL_CONNS 16         // prefill connections (fewer if -clients is smaller)
#define PREFILL_DEPTH 64         // requests in flight on each prefill connection
#define MAX_LINE 1024            // longest RESP / memcached status line accepted
#define RETRY_NS 5000000ull      // wait before reopening a connection that failed (5 ms)
#define STALL_NS 10000000000ull  // prefill / connect phases give up after 10 s without progress

#define DC_HDR 14                // distcache frame header
#define DC_FRAME 2048            // payload bytes per frame
#define DC_MSG (16 * DC_FRAME)   // payload bytes per message
#define DC_LEVEL 0x00110000u     // protocol 0x0011, patch level 0, as 1.5.1 sends it
#define DC_MAX_ID 64
#define DC_MAX_TIMEOUT 604800000u

enum proto { PROTO_DC, PROTO_RESP, PROTO_MC };
static const char *proto_name[] = {"distcache", "resp", "memcache"};

// Operations; the values are the distcache operation codes.
enum op { OP_ADD, OP_GET, OP_REMOVE, OP_HAVE, NOPS };
static const char *op_name[NOPS] = {"add", "get", "remove", "have"};
// Display order (get first) and the names of the two successful outcomes of each operation.
static const int op_order[NOPS] = {OP_GET, OP_ADD, OP_REMOVE, OP_HAVE};
static const char *outcome_name[NOPS][2] = {
    {"stored", "exists"}, {"hits", "misses"}, {"removed", "absent"}, {"yes", "no"}};

// The result of one request. RES_POS / RES_NEG are answers (hit / miss, stored / exists, ...); the others are
// errors. RES_CONNECT and RES_CLOSED are connection events, counted apart from requests.
enum res {
    RES_POS, RES_NEG,
    RES_PROTOCOL, RES_UID, RES_OPERATION, RES_LENGTH, RES_DATA, RES_SERVER, RES_UNAVAILABLE, RES_LOST,
    RES_CONNECT, RES_CLOSED,
    NRES
};
static const char *res_name[NRES] = {
    "ok", "ok", "protocol", "uid", "operation", "length", "data", "server", "unavailable", "lost",
    "connect", "closed"};
static const char *res_help[NRES] = {
    "", "",
    "malformed answer (the connection is reset)",
    "answer carries another request_uid",
    "answer for another operation",
    "answer of an unexpected length (e.g. GET data not of -datasize bytes)",
    "GET data or key belongs to another key",
    "error or unexpected status from the server",
    "distcache proxy has no server (empty answer or code 2)",
    "request in flight when its connection closed",
    "connect failed",
    "connection closed or reset by the server"};

enum phase { PH_PREFILL, PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_DONE, NPHASES };

// ---- configuration -------------------------------------------------------------------------------------------------

static struct {
    int proto;
    const char *connect;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int tcp;
    unsigned clients, pipeline;
    int per_op;
    uint32_t keys, prefill;
    unsigned datasize, idsize;
    unsigned mix[NOPS], mix_sum;
    const char *mix_text;
    double warmup, duration;
    uint32_t timeout_ms;
    pid_t pids[MAX_PIDS];
    int npids;
    const char *json;
    uint64_t seed;
    const char *check_vectors;
    unsigned sources;
} cfg;

// ---- latency histogram ---------------------------------------------------------------------------------------------
//
// Log-linear: values below 128 ns are exact; above, each power of two is split into 64 buckets, so a bucket is at
// most 1/64 (1.6%) wide relative to its value. 2240 counters cover up to 2^40 ns (18 minutes).

#define H_SUB_BITS 6
#define H_SUB (1u << H_SUB_BITS)
#define H_EXP 40
#define H_BUCKETS ((H_EXP - H_SUB_BITS + 1) * H_SUB)

struct hist {
    uint64_t c[H_BUCKETS];
    uint64_t n, sum, max;
};

static unsigned hist_index(uint64_t v)
{
    if (v >= (1ull << H_EXP))
        v = (1ull << H_EXP) - 1;
    if (v < 2 * H_SUB)
        return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - H_SUB_BITS;
    return (shift + 1) * H_SUB + (unsigned)((v >> shift) - H_SUB);
}

// Highest value that falls into bucket i.
static uint64_t hist_upper(unsigned i)
{
    if (i < 2 * H_SUB)
        return i;
    unsigned shift = i / H_SUB - 1;
    uint64_t sub = i % H_SUB + H_SUB;
    return ((sub + 1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->c[hist_index(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
    for (unsigned i = 0; i < H_BUCKETS; i++)
        into->c[i] += h->c[i];
    into->n += h->n;
    into->sum += h->sum;
    if (h->max > into->max)
        into->max = h->max;
}

// Value at quantile q (0..1): the upper edge of its bucket, never above the largest value seen.
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->c[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

// ---- counters ------------------------------------------------------------------------------------------------------

struct stats {
    uint64_t ok[NOPS][2];   // answers per operation: [0] hit/stored/removed/yes, [1] miss/exists/absent/no
    uint64_t err_op[NOPS];  // requests per operation that ended in an error
    uint64_t err[NRES];     // errors per kind (requests, plus connection events for RES_CONNECT / RES_CLOSED)
};

static struct stats st[NPHASES];
static struct hist hist[NOPS];   // latency of answered requests in the measured window
static int phase;
static volatile sig_atomic_t stop_flag;

static uint64_t sum_errors(const struct stats *s)
{
    uint64_t n = 0;
    for (int i = RES_PROTOCOL; i < NRES; i++)
        n += s->err[i];
    return n;
}

static uint64_t sum_ok(const struct stats *s)
{
    uint64_t n = 0;
    for (int o = 0; o < NOPS; o++)
        n += s->ok[o][0] + s->ok[o][1];
    return n;
}

// The first error of each kind is described on stderr, so a failing run says why without flooding the terminal.
static char first_err[NRES][200];

static void note_error(int kind, const char *fmt, ...)
{
    if (first_err[kind][0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first_err[kind], sizeof first_err[kind], fmt, ap);
    va_end(ap);
    fprintf(stderr, "loadgen: first %s error: %s\n", res_name[kind], first_err[kind]);
}

// ---- connections ---------------------------------------------------------------------------------------------------

struct req {
    uint64_t t0;    // when the request was queued; with -per-op when its connection was started (ns)
    uint32_t key;
    uint32_t uid;
    uint8_t op;
};

enum cstate { CS_IDLE, CS_CONNECTING, CS_OPEN };

struct conn {
    int fd;
    int state;
    uint32_t events;        // epoll events registered (kept connections; -per-op uses a fixed edge-triggered set)
    uint64_t retry_at;      // CS_IDLE: when to open again
    uint64_t rng;
    uint32_t next_uid;
    unsigned char *wbuf, *rbuf;
    size_t wcap, wlen, woff;    // requests queued in wbuf[woff..wlen)
    size_t rcap, rlen, rpos;    // received bytes not parsed yet in rbuf[rpos..rlen)
    struct req *ring;           // requests in flight, oldest at head
    unsigned depth, head, inflight;
    // Answer parser state.
    int ps;                 // protocol-specific state
    int bad;                // error found in the answer being parsed (a RES_ value), or 0
    int in_msg;             // distcache: inside a multi-frame answer
    int mcomplete;          // distcache: current frame is the last of its answer
    uint32_t muid;          // distcache: uid and operation of the answer's first frame
    int mop;
    uint64_t skip;          // payload bytes still to consume (frame payload, bulk string, value block)
    uint32_t mlen;          // payload bytes of the answer so far
    uint32_t vlen;          // announced value length (RESP bulk, memcached VALUE)
    int got_value;          // memcached: VALUE block seen, END expected
    int mismatch;           // leading payload bytes differ from expect[]
    unsigned cmp_len;       // how many leading payload bytes to compare
    unsigned char b0;       // first payload byte (distcache status answers)
    char expect[256];       // the key of the GET being answered
};

static struct conn *conns;
static unsigned nconns;
static int per_op_mode;     // the connections in use open one connection per request
static int epfd = -1;
static unsigned n_idle;

static uint32_t prefill_next, prefill_answered;

static unsigned char *value_tmpl;   // -datasize bytes of filler; an ADD's value starts with its key
static size_t reqmax;               // largest request, bytes
static size_t respmax;              // largest answer, bytes

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
    // xorshift64*
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Keys are the key number in decimal, left-padded with '0' to exactly -idsize bytes.
static void fmt_key(char *dst, uint32_t key)
{
    char *p = dst + cfg.idsize;
    memset(dst, '0', cfg.idsize);
    while (p > dst) {
        *--p = (char)('0' + key % 10);
        key /= 10;
        if (!key)
            break;
    }
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// ---- request encoders ----------------------------------------------------------------------------------------------

struct seg {
    const void *p;
    size_t n;
};

// One distcache message: the payload given as segments, cut into frames of 2048 bytes (only the last one shorter).
static size_t dc_encode(unsigned char *out, uint32_t uid, int op, const struct seg *sg, int nsg)
{
    size_t total = 0;
    for (int i = 0; i < nsg; i++)
        total += sg[i].n;
    unsigned char *o = out;
    int si = 0;
    size_t so = 0;
    do {
        size_t fl = total > DC_FRAME ? DC_FRAME : total;
        total -= fl;
        put32(o, DC_LEVEL);
        o[4] = 0;                       // request
        put32(o + 5, uid);
        o[9] = 0;                       // op_class "user"
        o[10] = (unsigned char)op;
        o[11] = total == 0;             // complete
        o[12] = (unsigned char)(fl >> 8);
        o[13] = (unsigned char)fl;
        o += DC_HDR;
        while (fl) {
            size_t k = sg[si].n - so;
            if (k > fl)
                k = fl;
            memcpy(o, (const unsigned char *)sg[si].p + so, k);
            o += k;
            fl -= k;
            so += k;
            if (so == sg[si].n) {
                si++;
                so = 0;
            }
        }
    } while (total);
    return (size_t)(o - out);
}

// Constant pieces of RESP and memcached requests, built once from the configuration.
struct piece {
    char s[96];
    size_t n;
};
static struct piece resp_get, resp_add, resp_add_mid, resp_add_tail, resp_del, resp_exists;
static struct piece mc_add_mid;

static void piece_set(struct piece *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->s, sizeof p->s, fmt, ap);
    va_end(ap);
    p->n = (size_t)n;
}

static unsigned char *put(unsigned char *o, const void *p, size_t n)
{
    memcpy(o, p, n);
    return o + n;
}

static void build_pieces(void)
{
    unsigned id = cfg.idsize, ds = cfg.datasize;
    char ms[16];
    snprintf(ms, sizeof ms, "%" PRIu32, cfg.timeout_ms);
    piece_set(&resp_get, "*2\r\n$3\r\nGET\r\n$%u\r\n", id);
    piece_set(&resp_del, "*2\r\n$3\r\nDEL\r\n$%u\r\n", id);
    piece_set(&resp_exists, "*2\r\n$6\r\nEXISTS\r\n$%u\r\n", id);
    piece_set(&resp_add, "*6\r\n$3\r\nSET\r\n$%u\r\n", id);
    piece_set(&resp_add_mid, "\r\n$%u\r\n", ds);
    piece_set(&resp_add_tail, "\r\n$2\r\nPX\r\n$%zu\r\n%s\r\n$2\r\nNX\r\n", strlen(ms), ms);
    // memcached expiry is in seconds (rounded up); at most 7 days, so always relative (below 30 days).
    piece_set(&mc_add_mid, " 0 %" PRIu32 " %u\r\n", (cfg.timeout_ms + 999) / 1000, ds);

    switch (cfg.proto) {
    case PROTO_DC: {
        size_t pl = 8 + id + ds;
        size_t frames = (pl + DC_FRAME - 1) / DC_FRAME;
        reqmax = pl + frames * DC_HDR;
        respmax = ds + ((ds + DC_FRAME - 1) / DC_FRAME) * DC_HDR;
        break;
    }
    case PROTO_RESP:
        reqmax = resp_add.n + id + resp_add_mid.n + ds + resp_add_tail.n;
        respmax = ds + 16;
        break;
    default:
        reqmax = 4 + id + mc_add_mid.n + ds + 2;
        respmax = 6 + id + 32 + ds + 2 + 5;
        break;
    }
}

// Appends one request to out; returns its length (at most reqmax).
static size_t encode(unsigned char *out, int op, uint32_t key, uint32_t uid)
{
    char k[256];
    unsigned id = cfg.idsize, ds = cfg.datasize;
    size_t vk = id < ds ? id : ds;
    unsigned char *o = out;
    fmt_key(k, key);
    if (cfg.proto == PROTO_DC) {
        if (op != OP_ADD) {
            struct seg sg[1] = {{k, id}};
            return dc_encode(out, uid, op, sg, 1);
        }
        unsigned char pre[8];
        put32(pre, cfg.timeout_ms);
        put32(pre + 4, id);
        struct seg sg[4] = {{pre, 8}, {k, id}, {k, vk}, {value_tmpl + vk, ds - vk}};
        return dc_encode(out, uid, op, sg, 4);
    }
    if (cfg.proto == PROTO_RESP) {
        switch (op) {
        case OP_GET: o = put(o, resp_get.s, resp_get.n); break;
        case OP_REMOVE: o = put(o, resp_del.s, resp_del.n); break;
        case OP_HAVE: o = put(o, resp_exists.s, resp_exists.n); break;
        default:
            o = put(o, resp_add.s, resp_add.n);
            o = put(o, k, id);
            o = put(o, resp_add_mid.s, resp_add_mid.n);
            o = put(o, k, vk);
            o = put(o, value_tmpl + vk, ds - vk);
            o = put(o, resp_add_tail.s, resp_add_tail.n);
            return (size_t)(o - out);
        }
        o = put(o, k, id);
        o = put(o, "\r\n", 2);
        return (size_t)(o - out);
    }
    switch (op) {
    case OP_GET: o = put(o, "get ", 4); break;
    case OP_REMOVE: o = put(o, "delete ", 7); break;
    case OP_HAVE: o = put(o, "mg ", 3); break;   // meta get without flags: "HD" if present, "EN" if not
    default:
        o = put(o, "add ", 4);
        o = put(o, k, id);
        o = put(o, mc_add_mid.s, mc_add_mid.n);
        o = put(o, k, vk);
        o = put(o, value_tmpl + vk, ds - vk);
        o = put(o, "\r\n", 2);
        return (size_t)(o - out);
    }
    o = put(o, k, id);
    o = put(o, "\r\n", 2);
    return (size_t)(o - out);
}

// ---- accounting ----------------------------------------------------------------------------------------------------

static void account(const struct req *r, int res, uint64_t now)
{
    struct stats *s = &st[phase];
    if (res <= RES_NEG) {
        s->ok[r->op][res]++;
        if (phase == PH_MEASURE)
            hist_add(&hist[r->op], now - r->t0);
    } else {
        s->err[res]++;
        s->err_op[r->op]++;
    }
    if (phase == PH_PREFILL)
        prefill_answered++;
}

static void parser_reset(struct conn *c)
{
    c->ps = 0;
    c->bad = 0;
    c->in_msg = 0;
    c->mcomplete = 0;
    c->skip = 0;
    c->mlen = 0;
    c->vlen = 0;
    c->got_value = 0;
    c->mismatch = 0;
    c->cmp_len = 0;
}

// The answer to the oldest request is complete. Returns 1 when the connection is done (-per-op).
static int answer_done(struct conn *c, int res, uint64_t now)
{
    if (c->bad)
        res = c->bad;
    account(&c->ring[c->head], res, now);
    if (++c->head == c->depth)
        c->head = 0;
    c->inflight--;
    parser_reset(c);
    return per_op_mode;
}

static char perr_text[200];

static int perr(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(perr_text, sizeof perr_text, fmt, ap);
    va_end(ap);
    return -1;
}

// Prepares the check of a GET answer's leading bytes against the requested key.
static void expect_key(struct conn *c)
{
    const struct req *r = &c->ring[c->head];
    c->mismatch = 0;
    c->cmp_len = 0;
    if (r->op == OP_GET) {
        fmt_key(c->expect, r->key);
        c->cmp_len = cfg.idsize < cfg.datasize ? cfg.idsize : cfg.datasize;
    }
}

// Payload bytes of an answer: remembered only as far as the checks need them.
static void payload(struct conn *c, const unsigned char *p, size_t n)
{
    if (c->mlen == 0)
        c->b0 = p[0];
    if (c->mlen < c->cmp_len) {
        size_t k = c->cmp_len - c->mlen;
        if (k > n)
            k = n;
        if (memcmp(p, c->expect + c->mlen, k) != 0)
            c->mismatch = 1;
    }
    c->mlen += (uint32_t)n;
}

// GET data of the expected length: a hit, unless it is another key's value. -datasize 0 is used only by
// -check-vectors, where any data of 2 bytes or more is a hit.
static int get_hit(const struct conn *c, uint32_t len)
{
    if (cfg.datasize == 0 ? len >= 2 : len == cfg.datasize)
        return c->mismatch ? RES_DATA : RES_POS;
    return RES_LENGTH;
}

// ---- distcache answers ---------------------------------------------------------------------------------------------

static int dc_status(int b0, int op)
{
    if (b0 == 0)
        return RES_POS;
    if (b0 == 1 && op != OP_ADD)
        return RES_NEG;
    if (b0 == 101 && op == OP_ADD)
        return RES_NEG;                 // ADD_ERR_MATCHING_SESSION: the key is already stored
    if (b0 == 2)
        return RES_UNAVAILABLE;
    note_error(RES_SERVER, "distcache %s answered with code %d", op_name[op], b0);
    return RES_SERVER;
}

static int dc_finish(struct conn *c, uint64_t now)
{
    int op = c->ring[c->head].op, res;
    if (c->mlen == 0)
        res = RES_UNAVAILABLE;          // what a 1.5.1 dc_client sends when it has no server
    else if (op == OP_GET)
        res = c->mlen == 1 ? (c->b0 == 1 ? RES_NEG : c->b0 == 2 ? RES_UNAVAILABLE : RES_LENGTH) : get_hit(c, c->mlen);
    else
        res = c->mlen == 1 ? dc_status(c->b0, op) : RES_LENGTH;
    if (res == RES_LENGTH && !c->bad)
        note_error(RES_LENGTH, "distcache %s answer of %" PRIu32 " bytes", op_name[op], c->mlen);
    return answer_done(c, res, now);
}

// Parses what rbuf holds. Returns 0 (needs more data), 1 (-per-op: the answer is complete) or -1 (malformed,
// reason in perr_text).
static int parse_dc(struct conn *c, uint64_t now)
{
    for (;;) {
        const unsigned char *p = c->rbuf + c->rpos;
        size_t avail = c->rlen - c->rpos;
        if (c->skip) {
            size_t n = avail < c->skip ? avail : (size_t)c->skip;
            if (n == 0)
                return 0;
            payload(c, p, n);
            c->rpos += n;
            c->skip -= n;
            if (c->skip)
                return 0;
            if (c->mcomplete && dc_finish(c, now))
                return 1;
            continue;
        }
        // A frame header: checked field by field as soon as the bytes are there, like 1.5.1 does.
        if (avail >= 4 && get32(p) >> 16 != DC_LEVEL >> 16)
            return perr("distcache protocol level 0x%08" PRIx32 ", expected 0x0011xxxx", get32(p));
        if (avail >= 5 && p[4] != 1)
            return perr("distcache frame with is_response %u", p[4]);
        if (avail < DC_HDR)
            return 0;
        uint32_t uid = get32(p + 5);
        int op = p[10], complete = p[11];
        unsigned len = (unsigned)p[12] << 8 | p[13];
        if (p[9] != 0)
            return perr("distcache frame with op_class %u", p[9]);
        if (op >= NOPS)
            return perr("distcache frame with operation %d", op);
        if (complete > 1)
            return perr("distcache frame with complete %d", complete);
        if (len > DC_FRAME)
            return perr("distcache frame of %u bytes", len);
        if (!complete && len != DC_FRAME)
            return perr("distcache frame of %u bytes not marked complete (must carry 2048)", len);
        if (!c->in_msg) {
            if (!c->inflight)
                return perr("distcache answer with no request in flight (uid %" PRIu32 ")", uid);
            const struct req *r = &c->ring[c->head];
            c->in_msg = 1;
            c->muid = uid;
            c->mop = op;
            c->mlen = 0;
            expect_key(c);
            if (uid != r->uid) {
                c->bad = RES_UID;
                note_error(RES_UID, "distcache answer uid %" PRIu32 ", expected %" PRIu32, uid, r->uid);
            } else if (op != r->op) {
                c->bad = RES_OPERATION;
                note_error(RES_OPERATION, "distcache answer for %s, expected %s", op_name[op], op_name[r->op]);
            }
        } else if (uid != c->muid || op != c->mop) {
            return perr("distcache frames of one answer with different uid or operation");
        }
        if (c->mlen + len > DC_MSG)
            return perr("distcache answer longer than %d bytes", DC_MSG);
        c->rpos += DC_HDR;
        c->skip = len;
        c->mcomplete = complete;
        if (len == 0 && dc_finish(c, now))
            return 1;
    }
}

// ---- RESP and memcached answers ------------------------------------------------------------------------------------

// Finds the next CRLF-terminated line. Returns its length including CRLF, 0 if incomplete, -1 if malformed.
static long take_line(struct conn *c, const unsigned char **line)
{
    const unsigned char *p = c->rbuf + c->rpos;
    size_t avail = c->rlen - c->rpos;
    const unsigned char *nl = memchr(p, '\n', avail);
    if (!nl) {
        if (avail > MAX_LINE)
            return perr("answer line longer than %d bytes", MAX_LINE);
        return 0;
    }
    size_t n = (size_t)(nl - p) + 1;
    if (n < 3 || nl[-1] != '\r')
        return perr("answer line not ended by CRLF");
    if (!c->inflight)
        return perr("answer \"%.*s\" with no request in flight", (int)(n - 2 > 60 ? 60 : n - 2), (const char *)p);
    *line = p;
    c->rpos += n;
    return (long)n;
}

static int parse_num(const unsigned char *s, size_t n, long long *v)
{
    int neg = 0;
    long long x = 0;
    if (n && *s == '-') {
        neg = 1;
        s++;
        n--;
    }
    if (n == 0 || n > 12)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        x = x * 10 + (s[i] - '0');
    }
    *v = neg ? -x : x;
    return 1;
}

static int word_is(const unsigned char *s, size_t n, const char *w)
{
    size_t wn = strlen(w);
    return n == wn && memcmp(s, w, n) == 0;
}

static int server_said(const unsigned char *s, size_t n, int op)
{
    note_error(RES_SERVER, "%s answered \"%.*s\"", op_name[op], (int)(n > 120 ? 120 : n), (const char *)s);
    return RES_SERVER;
}

// Skips the bytes of a bulk string / value block. Returns 1 when all of it has been seen.
static int skip_block(struct conn *c)
{
    size_t avail = c->rlen - c->rpos;
    size_t n = avail < c->skip ? avail : (size_t)c->skip;
    if (n) {
        payload(c, c->rbuf + c->rpos, n);
        c->rpos += n;
        c->skip -= n;
    }
    return c->skip == 0;
}

static int parse_resp(struct conn *c, uint64_t now)
{
    for (;;) {
        if (c->ps == 1) {                       // bulk string bytes
            if (!skip_block(c))
                return 0;
            c->ps = 2;
        }
        if (c->ps == 2) {                       // CRLF after the bulk string
            const unsigned char *p = c->rbuf + c->rpos;
            if (c->rlen - c->rpos < 2)
                return 0;
            if (p[0] != '\r' || p[1] != '\n')
                return perr("RESP bulk string not ended by CRLF");
            c->rpos += 2;
            int op = c->ring[c->head].op;
            int res = op == OP_GET ? get_hit(c, c->vlen) : server_said((const unsigned char *)"(bulk string)", 13, op);
            if (res == RES_LENGTH)
                note_error(RES_LENGTH, "GET answered %" PRIu32 " bytes, expected %u", c->vlen, cfg.datasize);
            if (answer_done(c, res, now))
                return 1;
            continue;
        }
        const unsigned char *line;
        long n = take_line(c, &line);
        if (n <= 0)
            return (int)n;
        const unsigned char *s = line + 1;
        size_t sn = (size_t)n - 3;
        int op = c->ring[c->head].op, res;
        long long v;
        switch (line[0]) {
        case '+':
            res = op == OP_ADD && word_is(s, sn, "OK") ? RES_POS : server_said(line, sn + 1, op);
            break;
        case '-':
            res = server_said(line, sn + 1, op);
            break;
        case ':':
            if (!parse_num(s, sn, &v))
                return perr("RESP integer \"%.*s\"", (int)(sn > 40 ? 40 : sn), (const char *)s);
            res = (op == OP_REMOVE || op == OP_HAVE) && (v == 0 || v == 1) ? (v ? RES_POS : RES_NEG)
                                                                              : server_said(line, sn + 1, op);
            break;
        case '$':
            if (!parse_num(s, sn, &v) || v < -1 || v > 512ll * 1024 * 1024)
                return perr("RESP bulk length \"%.*s\"", (int)(sn > 40 ? 40 : sn), (const char *)s);
            if (v == -1) {
                // Nil: GET miss, or SET NX that found the key stored.
                res = op == OP_GET || op == OP_ADD ? RES_NEG : server_said(line, sn + 1, op);
                break;
            }
            c->vlen = (uint32_t)v;
            c->skip = (uint64_t)v;
            c->mlen = 0;
            expect_key(c);
            c->ps = 1;
            continue;
        default:
            return perr("RESP answer \"%.*s\"", (int)(n - 2 > 60 ? 60 : n - 2), (const char *)line);
        }
        if (answer_done(c, res, now))
            return 1;
    }
}

static int parse_mc(struct conn *c, uint64_t now)
{
    for (;;) {
        if (c->ps == 1) {                       // value block
            if (!skip_block(c))
                return 0;
            c->ps = 2;
        }
        if (c->ps == 2) {                       // CRLF after the value block; END follows
            const unsigned char *p = c->rbuf + c->rpos;
            if (c->rlen - c->rpos < 2)
                return 0;
            if (p[0] != '\r' || p[1] != '\n')
                return perr("memcached value block not ended by CRLF");
            c->rpos += 2;
            c->ps = 0;
            c->got_value = 1;
        }
        const unsigned char *line;
        long n = take_line(c, &line);
        if (n <= 0)
            return (int)n;
        size_t ln = (size_t)n - 2;
        const struct req *r = &c->ring[c->head];
        int op = r->op, res;
        if (c->got_value && !word_is(line, ln, "END"))
            return perr("memcached VALUE not followed by END");
        if (ln > 6 && memcmp(line, "VALUE ", 6) == 0) {
            // VALUE <key> <flags> <bytes> [<cas>]
            if (op != OP_GET)
                return perr("memcached VALUE answer to %s", op_name[op]);
            const unsigned char *f[4];
            size_t fl[4];
            int nf = 0;
            const unsigned char *q = line + 6, *end = line + ln;
            while (q < end && nf < 4) {
                const unsigned char *sp = memchr(q, ' ', (size_t)(end - q));
                if (!sp)
                    sp = end;
                f[nf] = q;
                fl[nf++] = (size_t)(sp - q);
                q = sp + 1;
            }
            long long bytes;
            if (nf < 3 || !parse_num(f[2], fl[2], &bytes) || bytes < 0 || bytes > (1ll << 30))
                return perr("memcached line \"%.*s\"", (int)(ln > 80 ? 80 : ln), (const char *)line);
            c->mlen = 0;
            expect_key(c);
            if (fl[0] != cfg.idsize || memcmp(f[0], c->expect, cfg.idsize) != 0) {
                c->bad = RES_DATA;
                note_error(RES_DATA, "memcached VALUE for key %.*s, expected %.*s", (int)fl[0], (const char *)f[0],
                           (int)cfg.idsize, c->expect);
            }
            c->vlen = (uint32_t)bytes;
            c->skip = (uint64_t)bytes;
            c->ps = 1;
            continue;
        }
        if (word_is(line, ln, "END")) {
            if (op != OP_GET)
                res = server_said(line, ln, op);
            else if (!c->got_value)
                res = RES_NEG;
            else {
                res = get_hit(c, c->vlen);
                if (res == RES_LENGTH)
                    note_error(RES_LENGTH, "get answered %" PRIu32 " bytes, expected %u", c->vlen, cfg.datasize);
            }
        } else if (word_is(line, ln, "STORED") || word_is(line, ln, "DELETED") || word_is(line, ln, "HD")) {
            int want = line[0] == 'S' ? OP_ADD : line[0] == 'D' ? OP_REMOVE : OP_HAVE;
            res = op == want ? RES_POS : server_said(line, ln, op);
        } else if (word_is(line, ln, "NOT_STORED") || word_is(line, ln, "NOT_FOUND") || word_is(line, ln, "EN")) {
            int want = line[0] == 'E' ? OP_HAVE : line[4] == 'S' ? OP_ADD : OP_REMOVE;
            res = op == want ? RES_NEG : server_said(line, ln, op);
        } else if (word_is(line, ln, "ERROR") || (ln > 13 && memcmp(line, "CLIENT_ERROR ", 13) == 0) ||
                   (ln > 13 && memcmp(line, "SERVER_ERROR ", 13) == 0) || word_is(line, ln, "EXISTS")) {
            res = server_said(line, ln, op);
        } else {
            return perr("memcached line \"%.*s\"", (int)(ln > 80 ? 80 : ln), (const char *)line);
        }
        if (answer_done(c, res, now))
            return 1;
    }
}

// Parses the received bytes, then moves an incomplete header or line (the only bytes kept) to the buffer start.
static int consume(struct conn *c, uint64_t now)
{
    int r = cfg.proto == PROTO_DC ? parse_dc(c, now) : cfg.proto == PROTO_RESP ? parse_resp(c, now) : parse_mc(c, now);
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rpos) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    return r;
}

// ---- connection life -----------------------------------------------------------------------------------------------

static void set_events(struct conn *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

static void conn_reset(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);   // also removes it from epoll
    c->fd = -1;
    c->state = CS_IDLE;
    c->events = 0;
    c->wlen = c->woff = 0;
    c->rlen = c->rpos = 0;
    c->head = c->inflight = 0;
    parser_reset(c);
}

// Closes a connection that failed. kind: the connection event to count (RES_CONNECT / RES_CLOSED) or 0. Requests
// sent on an open connection are counted as lost; the one request of a -per-op connection that never connected is
// only counted as the connect failure.
static void conn_fail(struct conn *c, int kind, int err, uint64_t now)
{
    if (kind) {
        st[phase].err[kind]++;
        if (err)
            note_error(kind, "%s: %s", cfg.connect, strerror(err));
        else
            note_error(kind, "%s: end of stream", cfg.connect);
    }
    if (c->state == CS_OPEN) {
        while (c->inflight) {
            account(&c->ring[c->head], RES_LOST, now);
            if (++c->head == c->depth)
                c->head = 0;
            c->inflight--;
        }
    }
    conn_reset(c);
    c->retry_at = now + RETRY_NS;
    n_idle++;
}

static int running(void)
{
    return phase == PH_PREFILL || phase == PH_WARMUP || phase == PH_MEASURE;
}

// Queues requests until the connection has its -pipeline in flight (or the prefill keys are all taken).
static void conn_fill(struct conn *c, uint64_t now)
{
    if (!running())
        return;
    while (c->inflight < c->depth) {
        if (c->wcap - c->wlen < reqmax) {
            if (c->woff == 0)
                break;
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
            if (c->wcap - c->wlen < reqmax)
                break;
        }
        int op;
        uint32_t key;
        if (phase == PH_PREFILL) {
            if (prefill_next >= cfg.prefill)
                break;
            op = OP_ADD;
            key = prefill_next++;
        } else {
            uint64_t x = rng_next(&c->rng);
            key = (uint32_t)(((x >> 32) * cfg.keys) >> 32);
            uint32_t w = (uint32_t)(((x & 0xffffffffu) * cfg.mix_sum) >> 32);
            op = 0;
            while (w >= cfg.mix[op_order[op]])
                w -= cfg.mix[op_order[op++]];
            op = op_order[op];
        }
        unsigned i = c->head + c->inflight;
        if (i >= c->depth)
            i -= c->depth;
        struct req *r = &c->ring[i];
        r->op = (uint8_t)op;
        r->key = key;
        r->uid = c->next_uid++;
        r->t0 = now;
        c->wlen += encode(c->wbuf + c->wlen, op, key, r->uid);
        c->inflight++;
    }
}

// Writes what is queued. Returns -1 (errno set) if the connection broke.
static int conn_flush(struct conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!per_op_mode)
                set_events(c, EPOLLIN | EPOLLOUT);
            return 0;
        }
        return -1;
    }
    c->woff = c->wlen = 0;
    if (!per_op_mode && c->state == CS_OPEN)
        set_events(c, EPOLLIN);
    return 0;
}

// -sources N (-per-op over TCP to a loopback address): each connection gets its own source address,
// 127.0.0.2 .. 127.0.0.(N+1) in rotation. The generator closes first, so its side keeps every finished connection in
// TIME_WAIT. On loopback the kernel reuses such a port for the same server 1 s after the close (tcp_tw_reuse), so
// its search for a free port in connect() walks past more and more young TIME_WAITs as the rate nears the size of
// the ephemeral range per second (about 28000/s), and connect() fails beyond it. That cost is the client's and would
// distort the generator's CPU and throughput; from several addresses a free port is found at once.
// IP_BIND_ADDRESS_NO_PORT leaves the port to connect(): an explicitly bound port could not be used by other programs'
// connections while in TIME_WAIT. Off by default because the server sees another peer address (Redis in protected
// mode refuses clients that are not 127.0.0.1).
static unsigned src_next;
static int src_rotate;

// Binds fd to the next source address. Returns 0 if it did not (connect() then picks the address).
static int bind_next_source(int fd)
{
    int one = 1;
    struct sockaddr_in la;
    memset(&la, 0, sizeof la);
    la.sin_family = AF_INET;
    la.sin_addr.s_addr = htonl(0x7f000000u | src_next);
    if (++src_next > cfg.sources + 1)
        src_next = 2;
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&la, sizeof la) < 0) {
        note_error(RES_CONNECT, "-sources: cannot bind to 127.0.0.%u: %s (using the kernel's choice)",
                   (unsigned)(ntohl(la.sin_addr.s_addr) & 0xff), strerror(errno));
        src_rotate = 0;
        return 0;
    }
    return 1;
}

// Queues and writes requests until the pipeline is full or the socket takes no more. The write buffer may hold
// fewer than -pipeline requests (it is capped at 256 KB), so filling and writing alternate.
static void conn_pump(struct conn *c, uint64_t now)
{
    for (;;) {
        unsigned before = c->inflight;
        conn_fill(c, now);
        if (conn_flush(c) < 0) {
            conn_fail(c, RES_CLOSED, errno, now);
            return;
        }
        if (c->inflight == before || c->inflight >= c->depth || c->wlen)
            return;
    }
}

static void conn_open(struct conn *c, uint64_t now)
{
    int bound = per_op_mode && src_rotate, fd, rc, err;
    for (;;) {
        fd = socket(cfg.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            conn_fail(c, RES_CONNECT, errno, now);
            return;
        }
        // Requests are batched by the generator itself; Nagle would only add delay to pipelined writes. A -per-op
        // request that fits one segment is never delayed by Nagle, so that case saves the system call.
        if (cfg.tcp && !(per_op_mode && reqmax <= 1400)) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (bound)
            bound = bind_next_source(fd);
        rc = connect(fd, (struct sockaddr *)&cfg.addr, cfg.addrlen);
        err = errno;
        if (rc < 0 && err == EADDRNOTAVAIL && bound) {
            // No free port from that address: let the kernel choose the address too.
            close(fd);
            bound = 0;
            continue;
        }
        break;
    }
    c->fd = fd;
    if (rc == 0) {
        c->state = CS_OPEN;
    } else if (err == EINPROGRESS) {
        c->state = CS_CONNECTING;
    } else {
        int e = err;   // e.g. EAGAIN: the unix socket's listen backlog is full
        c->state = CS_CONNECTING;
        conn_fail(c, RES_CONNECT, e, now);
        return;
    }
    // -per-op: edge-triggered for both directions, so a connection costs one epoll_ctl. Kept connections:
    // level-triggered input, output only while a write is pending.
    c->events = per_op_mode ? EPOLLIN | EPOLLOUT | EPOLLET : c->state == CS_OPEN ? EPOLLIN : EPOLLOUT;
    struct epoll_event e = {.events = c->events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
        int e2 = errno;
        c->state = CS_CONNECTING;
        conn_fail(c, RES_CONNECT, e2, now);
        return;
    }
    if (c->state == CS_OPEN)
        conn_pump(c, now);
    else if (per_op_mode)
        conn_fill(c, now);   // written once connected
}

// A -per-op connection got its answer: close it and start the next operation.
static void conn_next(struct conn *c, uint64_t now)
{
    conn_reset(c);
    if (running())
        conn_open(c, now);
}

static void conn_protocol_error(struct conn *c, uint64_t now)
{
    if (c->inflight) {
        account(&c->ring[c->head], RES_PROTOCOL, now);
        if (++c->head == c->depth)
            c->head = 0;
        c->inflight--;
    } else {
        st[phase].err[RES_PROTOCOL]++;
    }
    note_error(RES_PROTOCOL, "%s", perr_text);
    conn_fail(c, 0, 0, now);
}

// Reads and parses. Returns 0 if the connection stays, 1 if it was closed or replaced.
static int conn_read(struct conn *c, uint64_t now)
{
    for (;;) {
        size_t room = c->rcap - c->rlen;
        ssize_t n = read(c->fd, c->rbuf + c->rlen, room);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            conn_fail(c, RES_CLOSED, errno, now);
            return 1;
        }
        if (n == 0) {
            conn_fail(c, RES_CLOSED, 0, now);
            return 1;
        }
        c->rlen += (size_t)n;
        int r = consume(c, now);
        if (r < 0) {
            conn_protocol_error(c, now);
            return 1;
        }
        if (r > 0) {
            conn_next(c, now);
            return 1;
        }
        // A short read emptied the socket; this also makes it safe for edge-triggered -per-op connections.
        if ((size_t)n < room)
            return 0;
    }
}

static void on_event(struct conn *c, uint32_t ev)
{
    uint64_t now = now_ns();
    if (c->state == CS_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t l = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            conn_fail(c, RES_CONNECT, err ? err : ECONNREFUSED, now);
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        c->state = CS_OPEN;
        if (!per_op_mode)
            set_events(c, EPOLLIN);
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (conn_read(c, now))
            return;
    }
    conn_pump(c, now);
}

static void conns_setup(unsigned n, unsigned depth, int per_op)
{
    nconns = n;
    per_op_mode = per_op;
    conns = calloc(n, sizeof *conns);
    size_t wcap = (size_t)depth * reqmax;
    if (wcap > 256 * 1024)
        wcap = 256 * 1024;
    if (wcap < reqmax)
        wcap = reqmax;
    // Room for two full pipelines of answers, so one read usually empties the socket.
    size_t rcap = 2 * (size_t)depth * respmax;
    if (rcap > 256 * 1024)
        rcap = 256 * 1024;
    if (rcap < 4096)
        rcap = 4096;
    if (!conns) {
        fprintf(stderr, "Error, out of memory\n");
        exit(1);
    }
    for (unsigned i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        c->fd = -1;
        c->depth = depth;
        c->wcap = wcap;
        c->rcap = rcap;
        c->wbuf = malloc(wcap);
        c->rbuf = malloc(rcap);
        c->ring = calloc(depth, sizeof *c->ring);
        if (!c->wbuf || !c->rbuf || !c->ring) {
            fprintf(stderr, "Error, out of memory for %u connections\n", n);
            exit(1);
        }
        c->rng = splitmix(cfg.seed * 1000003ull + i + (per_op ? 500000 : 0)) | 1;
        c->next_uid = 1;
    }
    n_idle = 0;
}

// Closes every connection; returns how many requests were still in flight.
static uint64_t conns_teardown(void)
{
    uint64_t inflight = 0;
    for (unsigned i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state == CS_OPEN || (per_op_mode && c->state == CS_CONNECTING))
            inflight += c->inflight;
        conn_reset(c);
        free(c->wbuf);
        free(c->rbuf);
        free(c->ring);
    }
    free(conns);
    conns = NULL;
    nconns = 0;
    return inflight;
}

static unsigned count_open(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < nconns; i++)
        n += conns[i].state == CS_OPEN;
    return n;
}

// Runs the event loop until `until` (ns, 0: no deadline), until the prefill is answered, or until every
// connection is open (PH_CONNECT). Returns 0, or -1 if the phase stalled for STALL_NS.
static int event_loop(uint64_t until)
{
    struct epoll_event evs[256];
    uint64_t progress_at = now_ns();
    uint32_t last_answered = prefill_answered;
    for (;;) {
        if (stop_flag)
            return 0;
        uint64_t now = now_ns();
        if (until && now >= until)
            return 0;
        if (phase == PH_PREFILL) {
            if (prefill_answered >= cfg.prefill)
                return 0;
            if (prefill_answered != last_answered) {
                last_answered = prefill_answered;
                progress_at = now;
            } else if (now - progress_at > STALL_NS) {
                return -1;
            }
        }
        if (phase == PH_CONNECT) {
            if (count_open() == nconns)
                return 0;
            if (now - progress_at > STALL_NS)
                return -1;
        }
        int64_t wait_ns = 100000000;   // wake at least every 100 ms to check the clock and signals
        if (until && (int64_t)(until - now) < wait_ns)
            wait_ns = (int64_t)(until - now);
        if (n_idle) {
            uint64_t next = UINT64_MAX;
            n_idle = 0;
            for (unsigned i = 0; i < nconns; i++) {
                struct conn *c = &conns[i];
                if (c->state != CS_IDLE)
                    continue;
                if (c->retry_at <= now && (running() || phase == PH_CONNECT)) {
                    conn_open(c, now);   // if it fails again, conn_fail counts it in n_idle
                    if (c->state == CS_IDLE && c->retry_at < next)
                        next = c->retry_at;
                } else {
                    n_idle++;
                    if (c->retry_at < next)
                        next = c->retry_at;
                }
            }
            if (next != UINT64_MAX && (int64_t)(next - now) < wait_ns)
                wait_ns = (int64_t)(next - now);
        }
        int timeout = (int)((wait_ns + 999999) / 1000000);
        int n = epoll_wait(epfd, evs, 256, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "Error, epoll_wait: %s\n", strerror(errno));
            exit(1);
        }
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
}

// ---- CPU accounting ------------------------------------------------------------------------------------------------

struct cpu {
    double user, sys;   // seconds
};

static struct cpu self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct cpu c = {ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6};
    return c;
}

// utime and stime of a process from /proc/PID/stat (fields 14 and 15, in clock ticks). The command name is in
// parentheses and may contain spaces, so the fields are counted from the last ')'.
static int proc_cpu(pid_t pid, struct cpu *out, char *name, size_t namesz)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
    if (!lp || !rp || rp < lp)
        return -1;
    if (name) {
        size_t k = (size_t)(rp - lp - 1);
        if (k >= namesz)
            k = namesz - 1;
        memcpy(name, lp + 1, k);
        name[k] = 0;
    }
    char *s = rp + 2;   // field 3, the state
    for (int i = 0; i < 11; i++) {
        s = strchr(s, ' ');
        if (!s)
            return -1;
        s++;
    }
    char *e;
    unsigned long long ut = strtoull(s, &e, 10), stt = strtoull(e, NULL, 10);
    double tck = (double)sysconf(_SC_CLK_TCK);
    out->user = (double)ut / tck;
    out->sys = (double)stt / tck;
    return 0;
}

// ---- command line --------------------------------------------------------------------------------------------------

static void usage(FILE *f)
{
    fprintf(f,
"Usage: loadgen -connect ADDRESS [options]\n"
"\n"
"Drives a session cache server with a closed-loop load and reports throughput, latency and CPU per operation.\n"
"\n"
"Target\n"
"  -proto P          distcache (default), resp (Redis) or memcache (memcached text protocol)\n"
"  -connect ADDRESS  IP:host:port (also IPv4:host:port) or UNIX:/path/to/socket\n"
"\n"
"Shape\n"
"  -clients N        connections, 1..%d (default 10)\n"
"  -pipeline K       requests in flight per connection, 1..%d (default 1)\n"
"  -per-op           a new connection per operation (connect, one request, one answer, close); -clients\n"
"                    operations are in progress at a time; latency includes the connect\n"
"  -sources N        with -per-op over TCP to 127.x: connect from 127.0.0.2 .. 127.0.0.(N+1) in rotation,\n"
"                    0..253 (default 0: the kernel's choice, 127.0.0.1). Spares the generator the kernel's\n"
"                    search for a free port among its own TIME_WAIT connections; Redis in protected mode\n"
"                    refuses such clients\n"
"\n"
"Load\n"
"  -keys K           key space: keys 0..K-1, 1..4294967295 (default 10000)\n"
"  -prefill P        store keys 0..P-1 before the run (pipelined, not timed), 0..K (default 0)\n"
"  -datasize B       value bytes (default 1000); distcache 2..32760-idsize, others 1..1000000\n"
"  -idsize B         key bytes, the key number zero-padded (default 32); distcache 1..64, others 1..250\n"
"  -mix SPEC         operation weights, e.g. get=90,add=10 (default); operations get, add, remove, have\n"
"  -timeout-ms MS    session lifetime given with each add, 1..604800000 (default 3600000)\n"
"  -warmup S         seconds of load before measuring, 0..3600 (default 1)\n"
"  -duration S       seconds measured, more than 0, at most 86400 (default 5)\n"
"  -seed N           random seed for keys and operations (default 1)\n"
"\n"
"Report\n"
"  -serverpid PID    also report this process's CPU per operation (repeatable, up to %d)\n"
"  -json FILE        also write the figures as JSON to FILE\n"
"\n"
"  -check-vectors DIR  instead of a load: re-encode and decode captured distcache traffic (NAME.c2s / NAME.s2c)\n"
"  -h                this text\n"
"\n"
"Operations per protocol:\n"
"  distcache  get: GET; add: ADD (never overwrites; code 101 = exists); remove: REMOVE; have: HAVE\n"
"  resp       get: GET key; add: SET key value PX ms NX (nil = exists); remove: DEL key; have: EXISTS key\n"
"  memcache   get: get key; add: add key 0 exptime bytes (NOT_STORED = exists; exptime = ms rounded up to\n"
"             seconds); remove: delete key; have: mg key (memcached 1.6+: HD / EN)\n"
"\n"
"Exit status: 0 if no error was counted, 2 if the run counted errors or got no answer at all, 1 for bad\n"
"flags or a failed setup.\n",
            MAX_CLIENTS, MAX_PIPELINE, MAX_PIDS);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("Error, ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

// Parses an unsigned integer in lo..hi; the whole text must be the number.
static uint64_t arg_uint(const char *flag, const char *v, uint64_t lo, uint64_t hi, const char *rule)
{
    char *e;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (!*v || *e || errno || v[0] == '-' || x < lo || x > hi)
        die("%s %s: %s", flag, v, rule);
    return x;
}

static double arg_seconds(const char *flag, const char *v, double lo, int lo_open, double hi, const char *rule)
{
    char *e;
    errno = 0;
    double x = strtod(v, &e);
    if (!*v || *e || errno || !(x == x) || (lo_open ? x <= lo : x < lo) || x > hi)
        die("%s %s: %s", flag, v, rule);
    return x;
}

static void parse_mix(const char *v)
{
    char buf[256];
    if (strlen(v) >= sizeof buf)
        die("-mix %s: too long", v);
    strcpy(buf, v);
    memset(cfg.mix, 0, sizeof cfg.mix);
    int seen[NOPS] = {0};
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        if (!eq)
            die("-mix %s: \"%s\" must be operation=weight", v, t);
        *eq = 0;
        int op = -1;
        for (int o = 0; o < NOPS; o++)
            if (strcmp(t, op_name[o]) == 0)
                op = o;
        if (op < 0)
            die("-mix %s: unknown operation \"%s\" (get, add, remove, have)", v, t);
        if (seen[op]++)
            die("-mix %s: \"%s\" given twice", v, t);
        char *e;
        errno = 0;
        unsigned long w = strtoul(eq + 1, &e, 10);
        if (!eq[1] || *e || errno || eq[1] == '-' || w > 1000000)
            die("-mix %s: weight of %s must be 0..1000000", v, t);
        cfg.mix[op] = (unsigned)w;
    }
    cfg.mix_sum = 0;
    for (int o = 0; o < NOPS; o++)
        cfg.mix_sum += cfg.mix[o];
    if (cfg.mix_sum == 0)
        die("-mix %s: the weights must not all be 0", v);
    cfg.mix_text = v;
}

static void parse_connect(const char *v)
{
    cfg.connect = v;
    if (strncmp(v, "UNIX:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&cfg.addr;
        const char *path = v + 5;
        if (!*path || strlen(path) >= sizeof un->sun_path)
            die("-connect %s: the socket path must be 1..%zu bytes", v, sizeof un->sun_path - 1);
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        cfg.addrlen = sizeof *un;
        cfg.tcp = 0;
        return;
    }
    const char *rest = NULL;
    if (strncmp(v, "IP:", 3) == 0)
        rest = v + 3;
    else if (strncmp(v, "IPv4:", 5) == 0)
        rest = v + 5;
    const char *colon = rest ? strrchr(rest, ':') : NULL;
    if (!colon || colon == rest || !colon[1])
        die("-connect %s: must be IP:host:port or UNIX:/path", v);
    char host[256];
    size_t hl = (size_t)(colon - rest);
    if (hl >= sizeof host)
        die("-connect %s: host name too long", v);
    memcpy(host, rest, hl);
    host[hl] = 0;
    char *e;
    unsigned long port = strtoul(colon + 1, &e, 10);
    if (*e || port < 1 || port > 65535)
        die("-connect %s: port must be 1..65535", v);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc)
        die("-connect %s: cannot resolve \"%s\": %s", v, host, gai_strerror(rc));
    memcpy(&cfg.addr, ai->ai_addr, ai->ai_addrlen);
    cfg.addrlen = ai->ai_addrlen;
    cfg.tcp = 1;
    freeaddrinfo(ai);
}

static unsigned digits(uint32_t x)
{
    unsigned n = 1;
    while (x >= 10) {
        x /= 10;
        n++;
    }
    return n;
}

static void parse_args(int argc, char **argv)
{
    const char *proto = "distcache", *mix = "get=90,add=10";
    const char *v_datasize = NULL, *v_idsize = NULL, *v_pipeline = NULL, *v_prefill = NULL, *v_sources = NULL;
    cfg.clients = 10;
    cfg.pipeline = 1;
    cfg.keys = 10000;
    cfg.datasize = 1000;
    cfg.idsize = 32;
    cfg.warmup = 1;
    cfg.duration = 5;
    cfg.timeout_ms = 3600000;
    cfg.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1] == '-')
            a++;   // --flag works as -flag
        if (!strcmp(a, "-h") || !strcmp(a, "-help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "-per-op")) {
            cfg.per_op = 1;
            continue;
        }
        if (a[0] != '-')
            die("\"%s\": not a flag (see -h)", argv[i]);
        static const char *known[] = {"-proto", "-connect", "-clients", "-pipeline", "-keys", "-prefill",
                                      "-datasize", "-idsize", "-mix", "-warmup", "-duration", "-timeout-ms",
                                      "-serverpid", "-json", "-seed", "-check-vectors", "-sources", NULL};
        int k = 0;
        while (known[k] && strcmp(a, known[k]))
            k++;
        if (!known[k])
            die("%s: unknown flag (see -h)", a);
        if (i + 1 >= argc)
            die("%s: needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "-proto"))
            proto = v;
        else if (!strcmp(a, "-connect"))
            parse_connect(v);
        else if (!strcmp(a, "-clients"))
            cfg.clients = (unsigned)arg_uint(a, v, 1, MAX_CLIENTS, "must be 1..10000");
        else if (!strcmp(a, "-pipeline"))
            cfg.pipeline = (unsigned)arg_uint(a, v_pipeline = v, 1, MAX_PIPELINE, "must be 1..1024");
        else if (!strcmp(a, "-keys"))
            cfg.keys = (uint32_t)arg_uint(a, v, 1, UINT32_MAX, "must be 1..4294967295");
        else if (!strcmp(a, "-prefill"))
            cfg.prefill = (uint32_t)arg_uint(a, v_prefill = v, 0, UINT32_MAX, "must be 0..4294967295");
        else if (!strcmp(a, "-datasize"))
            cfg.datasize = (unsigned)arg_uint(a, v_datasize = v, 1, 1000000, "must be 1..1000000");
        else if (!strcmp(a, "-idsize"))
            cfg.idsize = (unsigned)arg_uint(a, v_idsize = v, 1, 250, "must be 1..250");
        else if (!strcmp(a, "-mix"))
            mix = v;
        else if (!strcmp(a, "-warmup"))
            cfg.warmup = arg_seconds(a, v, 0, 0, 3600, "must be 0..3600 seconds");
        else if (!strcmp(a, "-duration"))
            cfg.duration = arg_seconds(a, v, 0, 1, 86400, "must be more than 0 and at most 86400 seconds");
        else if (!strcmp(a, "-timeout-ms"))
            cfg.timeout_ms = (uint32_t)arg_uint(a, v, 1, DC_MAX_TIMEOUT, "must be 1..604800000 (7 days)");
        else if (!strcmp(a, "-seed"))
            cfg.seed = arg_uint(a, v, 0, UINT64_MAX, "must be a number");
        else if (!strcmp(a, "-sources"))
            cfg.sources = (unsigned)arg_uint(a, v_sources = v, 0, 253, "must be 0..253");
        else if (!strcmp(a, "-json"))
            cfg.json = v;
        else if (!strcmp(a, "-check-vectors"))
            cfg.check_vectors = v;
        else if (!strcmp(a, "-serverpid")) {
            if (cfg.npids == MAX_PIDS)
                die("-serverpid %s: at most %d processes", v, MAX_PIDS);
            pid_t pid = (pid_t)arg_uint(a, v, 1, 4194304, "must be a process id");
            struct cpu c;
            if (proc_cpu(pid, &c, NULL, 0) < 0)
                die("-serverpid %s: no such process (cannot read /proc/%s/stat)", v, v);
            cfg.pids[cfg.npids++] = pid;
        }
    }
    if (cfg.check_vectors)
        return;
    if (!strcmp(proto, "distcache"))
        cfg.proto = PROTO_DC;
    else if (!strcmp(proto, "resp") || !strcmp(proto, "redis"))
        cfg.proto = PROTO_RESP;
    else if (!strcmp(proto, "memcache") || !strcmp(proto, "memcached"))
        cfg.proto = PROTO_MC;
    else
        die("-proto %s: must be distcache, resp or memcache", proto);
    if (!cfg.connect)
        die("-connect: required (IP:host:port or UNIX:/path)");
    parse_mix(mix);
    if (cfg.per_op && cfg.pipeline != 1)
        die("-pipeline %s: must be 1 with -per-op (one request per connection)", v_pipeline);
    if (cfg.sources && (!cfg.per_op || !cfg.tcp ||
                        ntohl(((struct sockaddr_in *)&cfg.addr)->sin_addr.s_addr) >> 24 != 127))
        die("-sources %s: only with -per-op over TCP to a loopback address (IP:127.x.x.x:port)", v_sources);
    if (cfg.prefill > cfg.keys)
        die("-prefill %s: must be 0..%" PRIu32 " (at most -keys)", v_prefill, cfg.keys);
    if (cfg.proto == PROTO_DC && cfg.idsize > DC_MAX_ID)
        die("-idsize %s: must be 1..64 for distcache", v_idsize);
    if (cfg.idsize < digits(cfg.keys - 1))
        die("-idsize %u: must be at least %u to hold key numbers up to %" PRIu32 " (-keys %" PRIu32 ")",
            cfg.idsize, digits(cfg.keys - 1), cfg.keys - 1, cfg.keys);
    if (cfg.proto == PROTO_DC) {
        // The ADD payload (8 + id + data) must fit one message; data of 1 byte would read back like a miss.
        unsigned max = DC_MSG - 8 - cfg.idsize;
        if (cfg.datasize < 2 || cfg.datasize > max)
            die("-datasize %s: must be 2..%u for distcache with -idsize %u", v_datasize ? v_datasize : "1000", max,
                cfg.idsize);
    }
    if (cfg.per_op == 0 && (uint64_t)cfg.clients * cfg.pipeline > 1000000)
        die("-pipeline %u: -clients x -pipeline must be at most 1000000", cfg.pipeline);
}

// ---- report --------------------------------------------------------------------------------------------------------

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

struct proc_report {
    pid_t pid;
    char name[64];
    struct cpu a, b;
    int ok;
};

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_latency(FILE *f, const struct hist *h)
{
    fprintf(f, "{\"count\": %" PRIu64 ", \"mean\": %.1f, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
               "\"p99_9\": %.1f, \"max\": %.1f}",
            h->n, h->n ? us(h->sum / h->n) : 0.0, us(hist_quantile(h, 0.5)), us(hist_quantile(h, 0.9)),
            us(hist_quantile(h, 0.99)), us(hist_quantile(h, 0.999)), us(h->max));
}

static void print_latency_row(const char *name, const struct hist *h)
{
    printf("  %-8s %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n", name, h->n ? us(h->sum / h->n) : 0.0,
           us(hist_quantile(h, 0.5)), us(hist_quantile(h, 0.9)), us(hist_quantile(h, 0.99)),
           us(hist_quantile(h, 0.999)), us(h->max));
}

static void print_errors(const char *indent, const struct stats *s)
{
    for (int k = RES_PROTOCOL; k < NRES; k++)
        if (s->err[k])
            printf("%s%-12s %10" PRIu64 "  %s\n", indent, res_name[k], s->err[k], res_help[k]);
}

static void report(double prefill_s, double warmup_s, double seconds, struct cpu self_a, struct cpu self_b,
                   struct proc_report *pr, uint64_t inflight_end)
{
    const struct stats *m = &st[PH_MEASURE], *pf = &st[PH_PREFILL], *wu = &st[PH_WARMUP];
    uint64_t ops = sum_ok(m), errors = sum_errors(m);
    double rate = seconds > 0 ? (double)ops / seconds : 0;
    struct hist all;
    memset(&all, 0, sizeof all);
    for (int o = 0; o < NOPS; o++)
        hist_merge(&all, &hist[o]);

    printf("loadgen %s %s: ", proto_name[cfg.proto], cfg.connect);
    if (cfg.per_op)
        printf("%u connections at a time, one per operation\n", cfg.clients);
    else
        printf("%u connections x pipeline %u\n", cfg.clients, cfg.pipeline);
    printf("  keys %" PRIu32 ", prefill %" PRIu32 ", data %u B, id %u B, mix %s, timeout %" PRIu32 " ms\n",
           cfg.keys, cfg.prefill, cfg.datasize, cfg.idsize, cfg.mix_text, cfg.timeout_ms);
    if (cfg.prefill) {
        printf("prefill   %" PRIu32 " keys in %.2f s: stored %" PRIu64 ", already present %" PRIu64
               ", errors %" PRIu64 "\n",
               cfg.prefill, prefill_s, pf->ok[OP_ADD][0], pf->ok[OP_ADD][1], sum_errors(pf));
        print_errors("          ", pf);
    }
    if (warmup_s > 0) {
        printf("warmup    %.2f s: %" PRIu64 " ops, errors %" PRIu64 "\n", warmup_s, sum_ok(wu), sum_errors(wu));
        print_errors("          ", wu);
    }
    printf("measured  %.2f s: %" PRIu64 " ops, %.0f ops/s, errors %" PRIu64 "\n", seconds, ops, rate, errors);
    if (ops == 0)
        printf("  no answer in the measured window: wrong -proto, or the server is stuck\n");
    for (int i = 0; i < NOPS; i++) {
        int o = op_order[i];
        uint64_t pos = m->ok[o][0], neg = m->ok[o][1];
        if (!cfg.mix[o] && !pos && !neg && !m->err_op[o])
            continue;
        printf("  %-7s %10" PRIu64 " ops: %s %" PRIu64 " (%.2f%%), %s %" PRIu64 ", errors %" PRIu64 "\n",
               op_name[o], pos + neg, outcome_name[o][0], pos, pos + neg ? 100.0 * (double)pos / (double)(pos + neg) : 0.0,
               outcome_name[o][1], neg, m->err_op[o]);
    }
    print_errors("  error: ", m);
    if (inflight_end)
        printf("  %" PRIu64 " requests in flight at the end (not counted)\n", inflight_end);
    printf("latency us    mean       p50       p90       p99     p99.9       max\n");
    print_latency_row("all", &all);
    for (int i = 0; i < NOPS; i++)
        if (hist[op_order[i]].n)
            print_latency_row(op_name[op_order[i]], &hist[op_order[i]]);

    double su = self_b.user - self_a.user, ss = self_b.sys - self_a.sys;
    printf("cpu per op us         user    system     total   cores\n");
    printf("  %-20s %7.2f %9.2f %9.2f %7.2f\n", "loadgen", ops ? su * 1e6 / (double)ops : 0,
           ops ? ss * 1e6 / (double)ops : 0, ops ? (su + ss) * 1e6 / (double)ops : 0, (su + ss) / seconds);
    for (int i = 0; i < cfg.npids; i++) {
        char label[80];
        snprintf(label, sizeof label, "%d %s", (int)pr[i].pid, pr[i].name);
        if (!pr[i].ok) {
            printf("  %-20s (process gone, not measured)\n", label);
            continue;
        }
        double u = pr[i].b.user - pr[i].a.user, s = pr[i].b.sys - pr[i].a.sys;
        printf("  %-20s %7.2f %9.2f %9.2f %7.2f\n", label, ops ? u * 1e6 / (double)ops : 0,
               ops ? s * 1e6 / (double)ops : 0, ops ? (u + s) * 1e6 / (double)ops : 0, (u + s) / seconds);
    }

    if (!cfg.json)
        return;
    FILE *f = fopen(cfg.json, "w");
    if (!f) {
        fprintf(stderr, "Error, -json %s: %s\n", cfg.json, strerror(errno));
        return;
    }
    fprintf(f, "{\n  \"proto\": \"%s\",\n  \"connect\": ", proto_name[cfg.proto]);
    json_str(f, cfg.connect);
    fprintf(f, ",\n  \"clients\": %u,\n  \"pipeline\": %u,\n  \"per_op\": %s,\n  \"keys\": %" PRIu32
               ",\n  \"prefill\": %" PRIu32 ",\n  \"datasize\": %u,\n  \"idsize\": %u,\n  \"mix\": {",
            cfg.clients, cfg.pipeline, cfg.per_op ? "true" : "false", cfg.keys, cfg.prefill, cfg.datasize,
            cfg.idsize);
    for (int i = 0; i < NOPS; i++)
        fprintf(f, "%s\"%s\": %u", i ? ", " : "", op_name[op_order[i]], cfg.mix[op_order[i]]);
    fprintf(f, "},\n  \"timeout_ms\": %" PRIu32 ",\n  \"seed\": %" PRIu64 ",\n", cfg.timeout_ms, cfg.seed);
    fprintf(f, "  \"prefill_result\": {\"seconds\": %.3f, \"stored\": %" PRIu64 ", \"present\": %" PRIu64
               ", \"errors\": %" PRIu64 "},\n",
            prefill_s, pf->ok[OP_ADD][0], pf->ok[OP_ADD][1], sum_errors(pf));
    fprintf(f, "  \"warmup_result\": {\"seconds\": %.3f, \"ops\": %" PRIu64 ", \"errors\": %" PRIu64 "},\n",
            warmup_s, sum_ok(wu), sum_errors(wu));
    fprintf(f, "  \"seconds\": %.6f,\n  \"ops\": %" PRIu64 ",\n  \"ops_per_s\": %.1f,\n  \"inflight_at_end\": %" PRIu64
               ",\n  \"operations\": {",
            seconds, ops, rate, inflight_end);
    int first = 1;
    for (int i = 0; i < NOPS; i++) {
        int o = op_order[i];
        uint64_t pos = m->ok[o][0], neg = m->ok[o][1];
        if (!cfg.mix[o] && !pos && !neg && !m->err_op[o])
            continue;
        fprintf(f, "%s\n    \"%s\": {\"ops\": %" PRIu64 ", \"%s\": %" PRIu64 ", \"%s\": %" PRIu64
                   ", \"errors\": %" PRIu64 ", \"latency_us\": ",
                first ? "" : ",", op_name[o], pos + neg, outcome_name[o][0], pos, outcome_name[o][1], neg,
                m->err_op[o]);
        json_latency(f, &hist[o]);
        fputc('}', f);
        first = 0;
    }
    fprintf(f, "\n  },\n  \"errors\": {\"total\": %" PRIu64, errors);
    for (int k = RES_PROTOCOL; k < NRES; k++)
        fprintf(f, ", \"%s\": %" PRIu64, res_name[k], m->err[k]);
    fprintf(f, "},\n  \"latency_us\": ");
    json_latency(f, &all);
    fprintf(f, ",\n  \"cpu\": {\n    \"loadgen\": {\"user_s\": %.3f, \"sys_s\": %.3f, \"us_per_op\": %.3f, "
               "\"cores\": %.3f}",
            su, ss, ops ? (su + ss) * 1e6 / (double)ops : 0, (su + ss) / seconds);
    fprintf(f, ",\n    \"servers\": [");
    for (int i = 0; i < cfg.npids; i++) {
        fprintf(f, "%s\n      {\"pid\": %d, \"name\": ", i ? "," : "", (int)pr[i].pid);
        json_str(f, pr[i].name);
        if (!pr[i].ok) {
            fprintf(f, ", \"measured\": false}");
            continue;
        }
        double u = pr[i].b.user - pr[i].a.user, s = pr[i].b.sys - pr[i].a.sys;
        fprintf(f, ", \"measured\": true, \"user_s\": %.3f, \"sys_s\": %.3f, \"us_per_op\": %.3f, \"cores\": %.3f}",
                u, s, ops ? (u + s) * 1e6 / (double)ops : 0, (u + s) / seconds);
    }
    fprintf(f, "%s]\n  }\n}\n", cfg.npids ? "\n    " : "");
    if (fclose(f) != 0)
        fprintf(stderr, "Error, -json %s: %s\n", cfg.json, strerror(errno));
}

// ---- -check-vectors ------------------------------------------------------------------------------------------------
//
// Captured 1.5.1 traffic: each NAME.c2s holds requests, NAME.s2c their answers. Every request message is decoded,
// re-encoded with dc_encode and compared byte for byte; the answers are fed to the same incremental parser the load
// uses, in small uneven pieces, and must all match their requests.

static struct {
    unsigned files, requests, reencoded, answers, failures;
} vec;

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (n == cap)
            b = realloc(b, cap *= 2);
        size_t k = fread(b + n, 1, cap - n, f);
        if (k == 0)
            break;
        n += k;
    }
    fclose(f);
    *len = n;
    return b;
}

static void check_pair(const char *c2s_path)
{
    char s2c_path[4096];
    size_t pl = strlen(c2s_path);
    snprintf(s2c_path, sizeof s2c_path, "%.*s.s2c", (int)(pl - 4), c2s_path);
    size_t clen, slen;
    unsigned char *cb = read_all(c2s_path, &clen), *sb = read_all(s2c_path, &slen);
    if (!cb || !sb) {
        printf("FAIL %s: cannot read the pair\n", c2s_path);
        vec.failures++;
        free(cb);
        free(sb);
        return;
    }
    vec.files++;
    struct conn c;
    memset(&c, 0, sizeof c);
    c.depth = 4096;
    c.ring = calloc(c.depth, sizeof *c.ring);
    c.rcap = 4096;
    c.rbuf = malloc(c.rcap);
    unsigned char payload_buf[DC_MSG], enc[DC_MSG + 16 * DC_HDR];
    size_t off = 0;
    int fail = 0;
    // Requests.
    while (off < clen && !fail) {
        size_t start = off, plen = 0;
        uint32_t uid = 0;
        int op = 0;
        for (int frame = 0;; frame++) {
            if (clen - off < DC_HDR || get32(cb + off) >> 16 != 0x0011 || cb[off + 4] != 0) {
                printf("FAIL %s: bad request frame at offset %zu\n", c2s_path, off);
                fail = 1;
                break;
            }
            unsigned len = (unsigned)cb[off + 12] << 8 | cb[off + 13];
            if (frame == 0) {
                uid = get32(cb + off + 5);
                op = cb[off + 10];
            }
            if (clen - off - DC_HDR < len || plen + len > DC_MSG) {
                printf("FAIL %s: truncated request at offset %zu\n", c2s_path, off);
                fail = 1;
                break;
            }
            memcpy(payload_buf + plen, cb + off + DC_HDR, len);
            plen += len;
            int complete = cb[off + 11];
            off += DC_HDR + len;
            if (complete)
                break;
        }
        if (fail)
            break;
        struct seg sg[1] = {{payload_buf, plen}};
        size_t n = dc_encode(enc, uid, op, sg, 1);
        vec.requests++;
        if (n == off - start && memcmp(enc, cb + start, n) == 0)
            vec.reencoded++;
        else {
            printf("FAIL %s: request at offset %zu re-encodes differently\n", c2s_path, start);
            fail = 1;
        }
        if (c.inflight == c.depth) {
            printf("FAIL %s: too many requests\n", c2s_path);
            fail = 1;
            break;
        }
        struct req *r = &c.ring[c.inflight++];
        r->uid = uid;
        r->op = (uint8_t)op;
    }
    // Answers, in pieces of 1..29 bytes.
    struct stats before = st[phase];
    size_t pos = 0;
    unsigned piece = 7;
    while (pos < slen && !fail) {
        piece = (piece * 13 + 5) % 29 + 1;
        size_t k = slen - pos < piece ? slen - pos : piece;
        memcpy(c.rbuf + c.rlen, sb + pos, k);
        c.rlen += k;
        pos += k;
        if (consume(&c, 0) < 0) {
            printf("FAIL %s: answer stream: %s\n", c2s_path, perr_text);
            fail = 1;
        }
    }
    if (!fail && (c.inflight || c.rlen || c.skip || c.in_msg)) {
        printf("FAIL %s: %u requests without a complete answer\n", c2s_path, c.inflight);
        fail = 1;
    }
    uint64_t errs = 0, unavailable = st[phase].err[RES_UNAVAILABLE] - before.err[RES_UNAVAILABLE];
    for (int k = RES_PROTOCOL; k < NRES; k++)
        if (k != RES_UNAVAILABLE)
            errs += st[phase].err[k] - before.err[k];
    vec.answers += (unsigned)(sum_ok(&st[phase]) - sum_ok(&before) + sum_errors(&st[phase]) - sum_errors(&before));
    if (!fail && errs) {
        printf("FAIL %s: %" PRIu64 " answers did not match their requests\n", c2s_path, errs);
        fail = 1;
    }
    if (!fail && unavailable)
        printf("note %s: %" PRIu64 " answers say the proxy had no server\n", c2s_path, unavailable);
    vec.failures += (unsigned)fail;
    free(c.ring);
    free(c.rbuf);
    free(cb);
    free(sb);
}

static int vec_visit(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    size_t n = strlen(path);
    if (type == FTW_F && n > 4 && strcmp(path + n - 4, ".c2s") == 0)
        check_pair(path);
    return 0;
}

static int check_vectors(const char *dir)
{
    cfg.proto = PROTO_DC;
    cfg.datasize = 0;   // any GET data of 2 bytes or more is a hit (the captured sessions vary in size)
    cfg.idsize = 0;
    phase = PH_WARMUP;
    if (nftw(dir, vec_visit, 16, FTW_PHYS) != 0) {
        fprintf(stderr, "Error, -check-vectors %s: %s\n", dir, strerror(errno));
        return 1;
    }
    const struct stats *s = &st[PH_WARMUP];
    printf("%u connections: %u of %u requests re-encoded byte for byte; %u answers decoded "
           "(get %" PRIu64 " hits / %" PRIu64 " misses, add %" PRIu64 " stored / %" PRIu64 " exists, "
           "remove %" PRIu64 " / %" PRIu64 ", have %" PRIu64 " / %" PRIu64 ", unavailable %" PRIu64 ")\n",
           vec.files, vec.reencoded, vec.requests, vec.answers, s->ok[OP_GET][0], s->ok[OP_GET][1],
           s->ok[OP_ADD][0], s->ok[OP_ADD][1], s->ok[OP_REMOVE][0], s->ok[OP_REMOVE][1], s->ok[OP_HAVE][0],
           s->ok[OP_HAVE][1], s->err[RES_UNAVAILABLE]);
    if (vec.files == 0) {
        fprintf(stderr, "Error, -check-vectors %s: no NAME.c2s files found\n", dir);
        return 1;
    }
    printf("%s\n", vec.failures ? "FAILED" : "OK");
    return vec.failures ? 1 : 0;
}

// ---- main ----------------------------------------------------------------------------------------------------------

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

// Opens one blocking connection first, so an unreachable server is a clear error instead of a run of failures.
static void probe(void)
{
    int fd = socket(cfg.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&cfg.addr, cfg.addrlen) < 0)
        die("-connect %s: %s", cfg.connect, strerror(errno));
    close(fd);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    parse_args(argc, argv);
    if (cfg.check_vectors)
        return check_vectors(cfg.check_vectors);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    // Enough descriptors for every connection.
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < cfg.clients + 64) {
        rl.rlim_cur = rl.rlim_max < cfg.clients + 64 ? rl.rlim_max : cfg.clients + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < cfg.clients + 64)
            die("-clients %u: needs %u file descriptors, the limit is %llu", cfg.clients, cfg.clients + 64,
                (unsigned long long)rl.rlim_cur);
    }
    if (cfg.json) {
        FILE *f = fopen(cfg.json, "w");   // fail now rather than after the run
        if (!f)
            die("-json %s: %s", cfg.json, strerror(errno));
        fclose(f);
    }

    if (cfg.sources) {
        src_rotate = 1;
        src_next = 2;
    }
    build_pieces();
    value_tmpl = malloc(cfg.datasize);
    for (unsigned i = 0; i < cfg.datasize; i++)
        value_tmpl[i] = (unsigned char)('a' + i % 26);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    probe();

    // Prefill: kept, pipelined connections, keys 0..P-1 in order.
    double prefill_s = 0;
    if (cfg.prefill) {
        phase = PH_PREFILL;
        conns_setup(cfg.clients < PREFILL_CONNS ? cfg.clients : PREFILL_CONNS, PREFILL_DEPTH, 0);
        uint64_t t = now_ns();
        for (unsigned i = 0; i < nconns; i++)
            conn_open(&conns[i], t);
        int rc = event_loop(0);
        prefill_s = (double)(now_ns() - t) / 1e9;
        conns_teardown();
        if (rc < 0)
            die("prefill: no progress for 10 s (%" PRIu32 " of %" PRIu32 " keys answered)", prefill_answered,
                cfg.prefill);
        if (stop_flag)
            die("interrupted during the prefill");
    }

    conns_setup(cfg.clients, cfg.per_op ? 1 : cfg.pipeline, cfg.per_op);
    if (!cfg.per_op) {
        // Connect everything first, so the measured window has no connection setup in it.
        phase = PH_CONNECT;
        uint64_t t = now_ns();
        for (unsigned i = 0; i < nconns; i++)
            conn_open(&conns[i], t);
        if (event_loop(0) < 0)
            die("only %u of %u connections to %s opened in 10 s", count_open(), nconns, cfg.connect);
        if (stop_flag)
            die("interrupted while connecting");
    }

    // Warmup, then the measured window. Going from one to the other does not pause the load.
    phase = PH_WARMUP;
    uint64_t t = now_ns();
    for (unsigned i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (cfg.per_op)
            conn_open(c, t);
        else if (c->state == CS_OPEN)
            conn_pump(c, t);
    }
    uint64_t warm_start = t;
    if (cfg.warmup > 0)
        event_loop(t + (uint64_t)(cfg.warmup * 1e9));
    if (stop_flag)
        die("interrupted during the warmup");

    struct proc_report pr[MAX_PIDS];
    memset(pr, 0, sizeof pr);
    for (int i = 0; i < cfg.npids; i++) {
        pr[i].pid = cfg.pids[i];
        pr[i].ok = proc_cpu(cfg.pids[i], &pr[i].a, pr[i].name, sizeof pr[i].name) == 0;
    }
    struct cpu self_a = self_cpu();
    phase = PH_MEASURE;
    uint64_t m_start = now_ns();
    double warmup_s = (double)(m_start - warm_start) / 1e9;
    event_loop(m_start + (uint64_t)(cfg.duration * 1e9));
    uint64_t m_end = now_ns();
    phase = PH_DONE;
    struct cpu self_b = self_cpu();
    for (int i = 0; i < cfg.npids; i++)
        if (pr[i].ok)
            pr[i].ok = proc_cpu(cfg.pids[i], &pr[i].b, NULL, 0) == 0;
    if (stop_flag)
        fprintf(stderr, "loadgen: interrupted, reporting the window so far\n");

    uint64_t inflight = conns_teardown();
    close(epfd);
    report(prefill_s, cfg.warmup > 0 ? warmup_s : 0, (double)(m_end - m_start) / 1e9, self_a, self_b, pr, inflight);

    uint64_t errors = sum_errors(&st[PH_PREFILL]) + sum_errors(&st[PH_WARMUP]) + sum_errors(&st[PH_MEASURE]);
    return errors || sum_ok(&st[PH_MEASURE]) == 0 ? 2 : 0;
}
