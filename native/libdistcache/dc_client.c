/* SPDX-License-Identifier: MIT */
/*
 * libdistcache: distcache 1.5.1's DC_CTX client API (see include/distcache/dc_client.h and docs/libdistcache.md).
 *
 * Where 1.5.1 asserted, this returns 0 (or -1, or NULL). Where it waited for ever, this waits until a deadline.
 * Where it shared one buffer between every thread of a process, this keeps the buffers per thread and the
 * connections per operation (or in a pool), so that one context serves any number of threads at once, which is
 * how Apache uses it. Across fork() the child closes its copies of the parent's connections and opens its own.
 *
 * Layers: libnal (addresses, sockets, deadlines) under framing (encode a request, decode and check an answer)
 * under operations (the DC_CTX functions).
 */
#include <distcache/dc_client.h>

#include "dcnal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- The wire protocol (PROTOCOL.md) ---- */

#define PROTO_LEVEL 0x00110000u   /* version 0x0011, patch level 0: what 1.5.1 sends */
#define FRAME_HEADER 14
#define FRAME_DATA_MAX 2048
#define MESSAGE_MAX 32768         /* 16 frames of 2048 */
#define WIRE_MAX (MESSAGE_MAX + (MESSAGE_MAX / FRAME_DATA_MAX) * FRAME_HEADER)

enum { OP_ADD = 0, OP_GET = 1, OP_REMOVE = 2, OP_HAVE = 3 };
enum { ANSWER_OK = 0, ANSWER_NOTOK = 1, ANSWER_DISCONNECTED = 2 };

/* The server keeps no session longer than this (ADD answers 102 above it). */
#define SESSION_LIFETIME_MAX 604800000UL

/* ---- Settings from the environment, read by DC_CTX_new ---- */

#define TIMEOUT_ENV "DISTCACHE_TIMEOUT_MS"
#define TIMEOUT_DEFAULT 1000
#define TIMEOUT_MAX 3600000
#define MIN_LIFETIME_ENV "DISTCACHE_MIN_SESSION_TIMEOUT_MS"
#define MIN_LIFETIME_DEFAULT 300000UL

/* Kept connections per context beyond which a finished operation closes its connection instead. */
#define IDLE_MAX 64

/* A connection: open for one operation (on the caller's stack) or kept between operations (on the heap). While an
 * operation uses it, it sits on its context's list of busy connections, so that a forked child can close its
 * copy even when the thread using it in the parent does not exist in the child. */
struct conn {
    int fd;
    pid_t pid;       /* the process that opened it */
    int on_heap;
    struct conn *prev, *next;
};

struct st_DC_CTX {
    unsigned long serial;         /* unique per context ever made, so a freed context's address reused by a
                                     new one cannot inherit a thread's remembered get */
    unsigned int flags;
    dcnal_address address;
    int timeout_ms;
    unsigned long min_lifetime_ms;
    pthread_mutex_t lock;         /* guards idle and busy; never held across I/O */
    struct conn *idle;            /* kept connections, a stack linked by next */
    unsigned int idle_count;
    struct conn busy;             /* sentinel of the busy list */
    DC_CTX *prev, *next;          /* every live context, for the fork handlers */
};

/* Per-thread working memory: the request being sent, the answer being read, and what a get remembers for reget.
 * Per thread because every thread of a server may be inside one context at once. */
struct thread_state {
    unsigned char tx[WIRE_MAX];
    unsigned char rx[WIRE_MAX];   /* after an answer: its payload, from rx[0] */
    size_t payload_len;
    unsigned long get_serial;     /* the context of the remembered get; 0 when nothing is remembered */
    unsigned int get_id_len;
    unsigned char get_id[MESSAGE_MAX];
    struct thread_state *prev, *next;   /* every thread's state, so that a forked child can free the others' */
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_ok;
static pthread_key_t state_key;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static DC_CTX *registry;
static pthread_mutex_t states_lock = PTHREAD_MUTEX_INITIALIZER;
static struct thread_state *states;
static unsigned long next_serial = 1;
static uint32_t next_uid = 1;     /* 1.5.1: one counter per process, starting at 1 */

/* ---- Fork safety ---- */

/* Before fork(): take every lock, so the child starts with consistent lists. No lock is held across I/O, so this
 * waits at most for a list update. */
static void before_fork(void)
{
    pthread_mutex_lock(&registry_lock);
    for (DC_CTX *c = registry; c != NULL; c = c->next)
        pthread_mutex_lock(&c->lock);
    pthread_mutex_lock(&states_lock);
}

static void after_fork_in_parent(void)
{
    pthread_mutex_unlock(&states_lock);
    for (DC_CTX *c = registry; c != NULL; c = c->next)
        pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&registry_lock);
}

/* In the child: its copies of the parent's connections must never carry a request (the answers would go to
 * whichever process reads first), so close them all; the child opens its own when it needs one. close() does not
 * disturb the parent, which keeps its own descriptors. */
static void after_fork_in_child(void)
{
    /* Only the forking thread exists in the child: the other threads' working memory is unreachable (their
     * exit destructors will never run here), so it is freed now. */
    struct thread_state *self = pthread_getspecific(state_key);
    while (states != NULL) {
        struct thread_state *s = states;
        states = s->next;
        if (s != self)
            free(s);
    }
    if (self != NULL) {
        self->prev = self->next = NULL;
        states = self;
    }
    pthread_mutex_unlock(&states_lock);
    for (DC_CTX *c = registry; c != NULL; c = c->next) {
        while (c->idle != NULL) {
            struct conn *k = c->idle;
            c->idle = k->next;
            close(k->fd);
            free(k);
        }
        c->idle_count = 0;
        while (c->busy.next != &c->busy) {
            /* Used by a thread that does not exist in this process: nobody will touch it again. */
            struct conn *k = c->busy.next;
            k->prev->next = k->next;
            k->next->prev = k->prev;
            close(k->fd);
            if (k->on_heap)
                free(k);
        }
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void free_thread_state(void *state)
{
    struct thread_state *s = state;
    pthread_mutex_lock(&states_lock);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        states = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&states_lock);
    free(s);
}

static void init_once(void)
{
    if (pthread_key_create(&state_key, free_thread_state) != 0)
        return;
    if (pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child) != 0)
        return;
    once_ok = 1;
}

static struct thread_state *thread_state(void)
{
    struct thread_state *s;
    if (pthread_once(&once, init_once) != 0 || !once_ok)
        return NULL;
    s = pthread_getspecific(state_key);
    if (s == NULL) {
        s = malloc(sizeof(*s));
        if (s == NULL)
            return NULL;
        s->payload_len = 0;
        s->get_serial = 0;
        s->get_id_len = 0;
        if (pthread_setspecific(state_key, s) != 0) {
            free(s);
            return NULL;
        }
        pthread_mutex_lock(&states_lock);
        s->prev = NULL;
        s->next = states;
        if (states != NULL)
            states->prev = s;
        states = s;
        pthread_mutex_unlock(&states_lock);
    }
    return s;
}

/* ---- Settings ---- */

/* Reads a whole number of milliseconds from the environment; a value that is not one from low to high is
 * reported once on standard error (the server's error log) and the default is used. */
static unsigned long env_ms(const char *name, unsigned long low, unsigned long high, unsigned long fallback)
{
    const char *text = getenv(name);
    char *end;
    unsigned long value;
    if (text == NULL || *text == '\0')
        return fallback;
    errno = 0;
    value = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || text[0] == '-' || text[0] == '+' || value < low || value > high) {
        fprintf(stderr, "libdistcache: %s='%s' is not a whole number of milliseconds from %lu to %lu; using %lu\n",
                name, text, low, high, fallback);
        return fallback;
    }
    return value;
}

/* ---- Connections ---- */

/* Takes a kept connection that this process opened and that is still sound, or returns NULL. */
static struct conn *take_idle(DC_CTX *ctx)
{
    pid_t self = getpid();
    for (;;) {
        struct conn *k;
        pthread_mutex_lock(&ctx->lock);
        k = ctx->idle;
        if (k != NULL) {
            ctx->idle = k->next;
            ctx->idle_count--;
            k->next = ctx->busy.next;
            k->prev = &ctx->busy;
            ctx->busy.next->prev = k;
            ctx->busy.next = k;
        }
        pthread_mutex_unlock(&ctx->lock);
        if (k == NULL)
            return NULL;
        /* The pid check catches a child made without the fork handlers (a raw clone); the staleness check a
         * proxy that restarted since the connection was last used. */
        if (k->pid == self && !dcnal_is_stale(k->fd))
            return k;
        pthread_mutex_lock(&ctx->lock);
        k->prev->next = k->next;
        k->next->prev = k->prev;
        close(k->fd);   /* in another process: only this process's copy */
        pthread_mutex_unlock(&ctx->lock);
        free(k);
    }
}

/* Ends an operation's use of a connection: back to the pool when keep is set and there is room, else closed. */
static void release(DC_CTX *ctx, struct conn *k, int keep)
{
    pthread_mutex_lock(&ctx->lock);
    k->prev->next = k->next;
    k->next->prev = k->prev;
    if (keep && k->on_heap && ctx->idle_count < IDLE_MAX) {
        k->next = ctx->idle;
        ctx->idle = k;
        ctx->idle_count++;
        pthread_mutex_unlock(&ctx->lock);
        return;
    }
    /* Closed before the lock goes, for the same reason open_conn lists it under the lock. */
    close(k->fd);
    pthread_mutex_unlock(&ctx->lock);
    if (k->on_heap)
        free(k);
}

/* Opens a connection for an operation and puts it on the busy list; k is the caller's (on its stack) or, with
 * on_heap, from malloc. The socket is made and listed under the lock that the fork handlers take, so there is no
 * moment at which a fork() could copy a descriptor that the child's handler does not know about. The connect
 * itself waits outside the lock. Returns k, or NULL (k released). */
static struct conn *open_conn(DC_CTX *ctx, struct conn *k, int on_heap, int64_t deadline)
{
    int fd;
    pthread_mutex_lock(&ctx->lock);
    fd = dcnal_socket(&ctx->address);
    if (fd >= 0) {
        k->fd = fd;
        k->pid = on_heap ? getpid() : 0;   /* only a kept connection is ever checked */
        k->on_heap = on_heap;
        k->next = ctx->busy.next;
        k->prev = &ctx->busy;
        ctx->busy.next->prev = k;
        ctx->busy.next = k;
    }
    pthread_mutex_unlock(&ctx->lock);
    if (fd < 0) {
        if (on_heap)
            free(k);
        return NULL;
    }
    if (dcnal_connect(fd, &ctx->address, deadline) != 0) {
        release(ctx, k, 0);
        return NULL;
    }
    return k;
}



/* ---- Framing ---- */

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Frames a request whose payload is the concatenation of up to three parts into out; returns its length.
 * The caller has checked that the payload fits in one message. */
static size_t encode_request(unsigned char *out, uint32_t uid, unsigned char op,
                             const unsigned char *const *parts, const size_t *lengths, int count)
{
    size_t total = 0, written = 0, sent = 0;
    int part = 0;
    size_t part_offset = 0;
    for (int i = 0; i < count; i++)
        total += lengths[i];
    do {
        size_t chunk = total - sent > FRAME_DATA_MAX ? FRAME_DATA_MAX : total - sent;
        unsigned char *h = out + written;
        put32(h, PROTO_LEVEL);
        h[4] = 0;                       /* a request */
        put32(h + 5, uid);
        h[9] = 0;                       /* op_class: user */
        h[10] = op;
        h[11] = (unsigned char)(sent + chunk == total);
        h[12] = (unsigned char)(chunk >> 8);
        h[13] = (unsigned char)chunk;
        written += FRAME_HEADER;
        for (size_t left = chunk; left > 0;) {
            size_t n = lengths[part] - part_offset;
            if (n > left)
                n = left;
            memcpy(out + written, parts[part] + part_offset, n);
            written += n;
            left -= n;
            part_offset += n;
            if (part_offset == lengths[part]) {
                part++;
                part_offset = 0;
            }
        }
        sent += chunk;
    } while (sent < total);
    return written;
}

/* Outcomes of one exchange. */
enum exchange {
    EXCHANGE_OK,         /* an answer, checked, in state->rx */
    EXCHANGE_NETWORK,    /* the connection failed: a resend on a new one may work */
    EXCHANGE_TIMEOUT,    /* the deadline passed */
    EXCHANGE_VIOLATION,  /* the peer broke the protocol or answered another request */
};

/* Reads one answer to request (uid, op) into state->rx and compacts its payload to the front. Every frame is
 * checked as PROTOCOL.md requires of a client; any breach fails the operation and the connection. */
static enum exchange read_answer(int fd, struct thread_state *s, uint32_t uid, unsigned char op,
                                 int64_t deadline)
{
    size_t received = 0, parsed = 0, payload = 0;
    for (;;) {
        /* Decode every whole frame received so far. */
        while (received - parsed >= FRAME_HEADER) {
            const unsigned char *h = s->rx + parsed;
            size_t length = ((size_t)h[12] << 8) | h[13];
            int complete = h[11];
            if ((get32(h) >> 16) != (PROTO_LEVEL >> 16) || h[4] != 1 || get32(h + 5) != uid || h[9] != 0
                || h[10] != op || complete > 1 || length > FRAME_DATA_MAX
                || (!complete && length != FRAME_DATA_MAX) || payload + length > MESSAGE_MAX)
                return EXCHANGE_VIOLATION;
            if (received - parsed - FRAME_HEADER < length)
                break;
            /* The payload only ever moves towards the front, behind everything not yet decoded. */
            memmove(s->rx + payload, h + FRAME_HEADER, length);
            payload += length;
            parsed += FRAME_HEADER + length;
            if (complete) {
                /* One request, one answer: a byte after the answer means the peer's framing is not to be
                 * trusted (a length or a complete flag that cut the answer short). */
                if (received > parsed)
                    return EXCHANGE_VIOLATION;
                s->payload_len = payload;
                return EXCHANGE_OK;
            }
        }
        if (received == sizeof(s->rx))
            return EXCHANGE_VIOLATION;
        {
            ptrdiff_t n = dcnal_recv_some(fd, s->rx + received, sizeof(s->rx) - received, deadline);
            if (n < 0)
                return errno == ETIMEDOUT ? EXCHANGE_TIMEOUT : EXCHANGE_NETWORK;
            if (n == 0)
                return EXCHANGE_NETWORK;   /* closed before the whole answer */
            received += (size_t)n;
        }
    }
}

/* One request, one answer: sends state->tx[0..length) on a connection (kept or new) and reads the answer.
 * Returns 1 with the answer's payload in state->rx, or 0. */
static int transact(DC_CTX *ctx, struct thread_state *s, size_t length, uint32_t uid, unsigned char op)
{
    int64_t deadline = dcnal_now_ms() + ctx->timeout_ms;
    int persistent = (ctx->flags & DC_CTX_FLAG_PERSISTENT) != 0;
    int retries = persistent && (ctx->flags & DC_CTX_FLAG_PERSISTENT_RETRY) ? 1 : 0;

    for (;;) {
        struct conn local, *k = persistent ? take_idle(ctx) : NULL;
        enum exchange result;
        if (k == NULL) {
            k = persistent ? malloc(sizeof(*k)) : &local;
            if (k == NULL || (k = open_conn(ctx, k, persistent, deadline)) == NULL)
                return 0;
        }
        if (dcnal_send_all(k->fd, s->tx, length, deadline) != 0)
            result = errno == ETIMEDOUT ? EXCHANGE_TIMEOUT : EXCHANGE_NETWORK;
        else
            result = read_answer(k->fd, s, uid, op, deadline);
        release(ctx, k, result == EXCHANGE_OK);
        if (result == EXCHANGE_OK)
            return 1;
        if (result != EXCHANGE_NETWORK || retries-- == 0 || dcnal_now_ms() >= deadline)
            return 0;
    }
}

static uint32_t new_uid(void)
{
    return __atomic_fetch_add(&next_uid, 1, __ATOMIC_RELAXED);
}

/* Sends an operation whose payload is id (after an optional prefix and followed by optional data). */
static int request(DC_CTX *ctx, struct thread_state *s, unsigned char op, const unsigned char *prefix,
                   size_t prefix_len, const unsigned char *id, size_t id_len,
                   const unsigned char *data, size_t data_len)
{
    const unsigned char *parts[3];
    size_t lengths[3];
    int count = 0;
    uint32_t uid = new_uid();
    if (prefix_len > 0) {
        parts[count] = prefix;
        lengths[count++] = prefix_len;
    }
    parts[count] = id;
    lengths[count++] = id_len;
    if (data_len > 0) {
        parts[count] = data;
        lengths[count++] = data_len;
    }
    return transact(ctx, s, encode_request(s->tx, uid, op, parts, lengths, count), uid, op);
}

/* A one-byte answer's code, or -1 for any other answer. */
static int answer_code(const struct thread_state *s)
{
    return s->payload_len == 1 ? s->rx[0] : -1;
}

/* Common checks of every operation; the state of the calling thread, or NULL. Forgets the remembered get: in
 * 1.5.1 any operation other than reget does. */
static struct thread_state *begin(DC_CTX *ctx, const unsigned char *id, unsigned int id_len)
{
    struct thread_state *s;
    if (ctx == NULL || id == NULL || id_len == 0 || id_len > MESSAGE_MAX)
        return NULL;
    s = thread_state();
    if (s != NULL)
        s->get_serial = 0;
    return s;
}

/* ---- The operations ---- */

static void free_ctx(DC_CTX *ctx);

static DC_CTX *new_ctx(const char *target, unsigned int flags)
{
    DC_CTX *ctx;
    const char *why;
    if (target == NULL || pthread_once(&once, init_once) != 0 || !once_ok)
        return NULL;
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    if (dcnal_address_parse(target, &ctx->address, &why) != 0) {
        free(ctx);
        return NULL;
    }
    ctx->flags = flags;
    ctx->timeout_ms = (int)env_ms(TIMEOUT_ENV, 1, TIMEOUT_MAX, TIMEOUT_DEFAULT);
    ctx->min_lifetime_ms = (flags & DC_CTX_FLAG_EXACT_LIFETIMES)
        ? 0 : env_ms(MIN_LIFETIME_ENV, 0, SESSION_LIFETIME_MAX, MIN_LIFETIME_DEFAULT);
    ctx->busy.next = ctx->busy.prev = &ctx->busy;
    if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
        free(ctx);
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    ctx->serial = next_serial++;
    ctx->next = registry;
    if (registry != NULL)
        registry->prev = ctx;
    registry = ctx;
    pthread_mutex_unlock(&registry_lock);

    if ((flags & DC_CTX_FLAG_PERSISTENT) && !(flags & DC_CTX_FLAG_PERSISTENT_LATE)) {
        struct conn *k = malloc(sizeof(*k));
        if (k == NULL || (k = open_conn(ctx, k, 1, dcnal_now_ms() + ctx->timeout_ms)) == NULL) {
            free_ctx(ctx);
            return NULL;
        }
        release(ctx, k, 1);   /* into the pool, for the first operation */
    }
    return ctx;
}

static void free_ctx(DC_CTX *ctx)
{
    struct thread_state *s;
    if (ctx == NULL)
        return;
    pthread_mutex_lock(&registry_lock);
    if (ctx->prev != NULL)
        ctx->prev->next = ctx->next;
    else
        registry = ctx->next;
    if (ctx->next != NULL)
        ctx->next->prev = ctx->prev;
    pthread_mutex_unlock(&registry_lock);
    while (ctx->idle != NULL) {
        struct conn *k = ctx->idle;
        ctx->idle = k->next;
        close(k->fd);
        free(k);
    }
    pthread_mutex_destroy(&ctx->lock);
    s = pthread_getspecific(state_key);
    if (s != NULL && s->get_serial == ctx->serial)
        s->get_serial = 0;
    free(ctx);
}

static int add_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                       const unsigned char *sess_data, unsigned int sess_len, unsigned long timeout_msecs)
{
    unsigned char prefix[8];
    struct thread_state *s = begin(ctx, id_data, id_len);
    /* The whole payload (8-byte prefix, id, session) must fit one message; written so that nothing can wrap. */
    if (s == NULL || sess_data == NULL || sess_len == 0 || id_len > MESSAGE_MAX - 8
        || sess_len > MESSAGE_MAX - 8 - id_len)
        return 0;
    /* Apache's mod_socache_dc passes only the millisecond part (0-999) of a lifetime: lift short lifetimes to
     * the configured floor so that its sessions live long enough to be shared (docs/libdistcache.md). */
    if (timeout_msecs < ctx->min_lifetime_ms)
        timeout_msecs = ctx->min_lifetime_ms;
    if (timeout_msecs <= DC_MIN_TIMEOUT || timeout_msecs > UINT32_MAX)
        return 0;
    put32(prefix, (uint32_t)timeout_msecs);
    put32(prefix + 4, id_len);
    if (!request(ctx, s, OP_ADD, prefix, sizeof(prefix), id_data, id_len, sess_data, sess_len))
        return 0;
    return answer_code(s) == ANSWER_OK;
}

static int remove_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len)
{
    struct thread_state *s = begin(ctx, id_data, id_len);
    if (s == NULL || !request(ctx, s, OP_REMOVE, NULL, 0, id_data, id_len, NULL, 0))
        return 0;
    return answer_code(s) == ANSWER_OK;
}

/* Hands the answer in state->rx to the caller, as get and reget both do. */
static int hand_back(const struct thread_state *s, unsigned char *result_storage, unsigned int result_size,
                     unsigned int *result_used)
{
    size_t n = s->payload_len < result_size ? s->payload_len : result_size;
    if (result_used != NULL)
        *result_used = (unsigned int)s->payload_len;
    if (result_storage != NULL && n > 0)
        memcpy(result_storage, s->rx, n);
    return 1;
}

static int get_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                       unsigned char *result_storage, unsigned int result_size, unsigned int *result_used)
{
    struct thread_state *s = begin(ctx, id_data, id_len);
    if (s == NULL || !request(ctx, s, OP_GET, NULL, 0, id_data, id_len, NULL, 0))
        return 0;
    /* A miss is one byte (NOTOK); 1.5.1 takes anything shorter than 5 bytes as one. */
    if (s->payload_len < 5)
        return 0;
    s->get_serial = ctx->serial;
    s->get_id_len = id_len;
    memcpy(s->get_id, id_data, id_len);
    return hand_back(s, result_storage, result_size, result_used);
}

static int reget_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                         unsigned char *result_storage, unsigned int result_size, unsigned int *result_used)
{
    struct thread_state *s;
    if (ctx == NULL || id_data == NULL || id_len == 0)
        return 0;
    s = thread_state();
    if (s == NULL || s->get_serial != ctx->serial || s->get_id_len != id_len
        || memcmp(s->get_id, id_data, id_len) != 0)
        return 0;
    return hand_back(s, result_storage, result_size, result_used);
}

static int has_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len)
{
    struct thread_state *s = begin(ctx, id_data, id_len);
    if (s == NULL || !request(ctx, s, OP_HAVE, NULL, 0, id_data, id_len, NULL, 0))
        return -1;
    /* A proxy without its server answers DISCONNECTED (ours) or with an empty payload (1.5.1's): nothing was
     * asked, so the answer is "failed", not "no". */
    if (s->payload_len == 0)
        return -1;
    switch (answer_code(s)) {
    case ANSWER_OK:
        return 1;
    case ANSWER_DISCONNECTED:
        return -1;
    default:
        return 0;
    }
}

/* ---- The API ----
 *
 * No call is a cancellation point: a thread cancelled while it waits on the network would leave its connection
 * open and listed (and, for a connection per operation, listed on a stack that no longer exists), so each call
 * holds cancellation off until it returns; a pending cancellation then acts at the caller's next cancellation
 * point. */

DC_CTX *DC_CTX_new(const char *target, unsigned int flags)
{
    int cancel;
    DC_CTX *ctx;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    ctx = new_ctx(target, flags);
    pthread_setcancelstate(cancel, NULL);
    return ctx;
}

void DC_CTX_free(DC_CTX *ctx)
{
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    free_ctx(ctx);
    pthread_setcancelstate(cancel, NULL);
}

int DC_CTX_add_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                       const unsigned char *sess_data, unsigned int sess_len, unsigned long timeout_msecs)
{
    int cancel, result;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    result = add_session(ctx, id_data, id_len, sess_data, sess_len, timeout_msecs);
    pthread_setcancelstate(cancel, NULL);
    return result;
}

int DC_CTX_remove_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len)
{
    int cancel, result;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    result = remove_session(ctx, id_data, id_len);
    pthread_setcancelstate(cancel, NULL);
    return result;
}

int DC_CTX_get_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                       unsigned char *result_storage, unsigned int result_size, unsigned int *result_used)
{
    int cancel, result;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    result = get_session(ctx, id_data, id_len, result_storage, result_size, result_used);
    pthread_setcancelstate(cancel, NULL);
    return result;
}

int DC_CTX_reget_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                         unsigned char *result_storage, unsigned int result_size, unsigned int *result_used)
{
    int cancel, result;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    result = reget_session(ctx, id_data, id_len, result_storage, result_size, result_used);
    pthread_setcancelstate(cancel, NULL);
    return result;
}

int DC_CTX_has_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len)
{
    int cancel, result;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    result = has_session(ctx, id_data, id_len);
    pthread_setcancelstate(cancel, NULL);
    return result;
}
