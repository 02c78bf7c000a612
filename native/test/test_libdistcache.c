/* SPDX-License-Identifier: MIT */
/*
 * test_libdistcache: the tests of libdistcache (native/libdistcache) and libnal, in C, against the real dc_server
 * and dc_client of this repository and against fake servers run in-process.
 *
 *   test_libdistcache --list              the test names, one per line
 *   test_libdistcache [NAME...]           runs the named tests (none: all of them), one line each:
 *                                           ok - NAME
 *                                           not ok - NAME: reason (file:line)
 *                                         then "N passed, N failed"; exit status 0 only if all passed
 *   test_libdistcache --bench TARGET THREADS SECONDS FLAGS
 *                                         operations per second against TARGET (see bench() below)
 *
 * Environment:
 *   DISTCACHE_TEST_SERVER          a real dc_server's address (e.g. UNIX:/tmp/x/server.sock)
 *   DISTCACHE_TEST_PROXY           a real dc_client in front of it
 *   DISTCACHE_TEST_PROXY_DOWN      a real dc_client whose dc_server is not running
 *   DISTCACHE_TEST_UNDER_VALGRIND  1: fewer rounds in the thread and fork tests (valgrind runs threads one at a time)
 *   DISTCACHE_TEST_SOAK_OPS        operations of the soak test (default 200000)
 *   DISTCACHE_TEST_TIME_LIMIT_S    per-test time limit (default 60 s, 240 s under valgrind)
 * The usual way to run these is the xunit wrapper test/Distcache.Native.Tests, which builds this program, starts
 * dc_server and dc_client, and runs every test under valgrind.
 *
 * Tests run one after another in this process (so that valgrind sees the library), each with fresh contexts and
 * fake servers; whatever a test sets up is registered with defer() and undone after it, even when it fails. A failed
 * check in the main thread jumps back to the runner; in another thread it ends that thread; in a forked child it
 * ends the child with status 1.
 */
#include <distcache/dc_client.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define P DC_CTX_FLAG_PERSISTENT
#define PIDCHECK DC_CTX_FLAG_PERSISTENT_PIDCHECK
#define RETRY DC_CTX_FLAG_PERSISTENT_RETRY
#define LATE DC_CTX_FLAG_PERSISTENT_LATE

#define FRAME_HEADER 14
#define FRAME_MAX 2048
#define MESSAGE_MAX 32768
#define LARGEST_ID 64
#define LARGEST_SESSION (MESSAGE_MAX - 8 - LARGEST_ID)

/* ==== The runner ==== */

static pthread_t main_thread;
static int in_child;               /* set in a forked child: a failed check ends the child */
static jmp_buf test_jmp;
static pthread_mutex_t failure_lock = PTHREAD_MUTEX_INITIALIZER;
static char failure[1024];
static volatile int test_failed;
static const char *current_test = "";
static int under_valgrind;
static int first_test_in_process = 1;
static int passed_count, failed_count;

static void fail_here(const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void fail_here(const char *file, int line, const char *format, ...)
{
    char message[768];
    const char *base = strrchr(file, '/');
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    base = base != NULL ? base + 1 : file;
    if (in_child) {
        fprintf(stderr, "forked child %d: %s (%s:%d)\n", (int)getpid(), message, base, line);
        _exit(1);
    }
    pthread_mutex_lock(&failure_lock);
    if (!test_failed) {
        snprintf(failure, sizeof(failure), "%s (%s:%d)", message, base, line);
        test_failed = 1;
    }
    pthread_mutex_unlock(&failure_lock);
    if (pthread_equal(pthread_self(), main_thread))
        longjmp(test_jmp, 1);
    pthread_exit(NULL);
}

#define FAIL(...) fail_here(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond) do { if (!(cond)) fail_here(__FILE__, __LINE__, "check failed: %s", #cond); } while (0)
#define CHECKF(cond, ...) do { if (!(cond)) fail_here(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_EQ(actual, expected) do { \
        long long actual_ = (long long)(actual), expected_ = (long long)(expected); \
        if (actual_ != expected_) \
            fail_here(__FILE__, __LINE__, "%s is %lld, expected %lld", #actual, actual_, expected_); \
    } while (0)

/* Things to undo after the test, last first. */
struct cleanup {
    void (*fn)(void *);
    void *arg;
};
static struct cleanup cleanups[256];
static int cleanup_count;

static void defer(void (*fn)(void *), void *arg)
{
    if (cleanup_count == (int)(sizeof(cleanups) / sizeof(cleanups[0]))) {
        fn(arg);
        FAIL("too many deferred cleanups");
    }
    cleanups[cleanup_count].fn = fn;
    cleanups[cleanup_count].arg = arg;
    cleanup_count++;
}

/* Removes the latest cleanup registered with arg; runs it first when run is set. */
static void undefer(void *arg, int run)
{
    for (int i = cleanup_count - 1; i >= 0; i--) {
        if (cleanups[i].arg == arg) {
            struct cleanup c = cleanups[i];
            memmove(&cleanups[i], &cleanups[i + 1], (size_t)(cleanup_count - i - 1) * sizeof(cleanups[0]));
            cleanup_count--;
            if (run)
                c.fn(c.arg);
            return;
        }
    }
}

static void run_cleanups(void)
{
    while (cleanup_count > 0) {
        struct cleanup c = cleanups[--cleanup_count];
        c.fn(c.arg);
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n == 0 ? 1 : n);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

/* Memory freed after the test. */
static void *test_alloc(size_t n)
{
    void *p = xmalloc(n);
    defer(free, p);
    return p;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* ---- Environment, restored after the test ---- */

struct saved_env {
    char *name;
    char *value;   /* NULL: was unset */
};

static void restore_env(void *p)
{
    struct saved_env *s = p;
    if (s->value != NULL)
        setenv(s->name, s->value, 1);
    else
        unsetenv(s->name);
    free(s->name);
    free(s->value);
    free(s);
}

/* Sets (value != NULL) or unsets an environment variable for the rest of the test. */
static void set_env(const char *name, const char *value)
{
    struct saved_env *s = xmalloc(sizeof(*s));
    const char *old = getenv(name);
    s->name = strdup(name);
    s->value = old != NULL ? strdup(old) : NULL;
    defer(restore_env, s);
    if (value != NULL)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

static const char *need_env(const char *name)
{
    const char *value = getenv(name);
    const char *what = strcmp(name, "DISTCACHE_TEST_SERVER") == 0 ? "dc_server"
                       : strcmp(name, "DISTCACHE_TEST_PROXY") == 0 ? "dc_client in front of a dc_server"
                       : "dc_client whose dc_server is not running";
    CHECKF(value != NULL && *value != '\0',
           "%s is not set: this test needs the address of a real %s (the xunit wrapper test/Distcache.Native.Tests "
           "starts one and sets it)", name, what);
    return value;
}

/* ---- A temporary folder for unix sockets ---- */

static char *test_dir_path;

static void remove_dir(void *p)
{
    char *path = p;
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char file[512];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
            unlink(file);
        }
        closedir(d);
    }
    rmdir(path);
    if (test_dir_path == path)
        test_dir_path = NULL;
    free(path);
}

/* The test's temporary folder (made on first use, removed after the test). */
static const char *test_dir(void)
{
    if (test_dir_path == NULL) {
        char templ[] = "/tmp/dclib-XXXXXX";
        CHECKF(mkdtemp(templ) != NULL, "mkdtemp: %s", strerror(errno));
        test_dir_path = strdup(templ);
        defer(remove_dir, test_dir_path);
    }
    return test_dir_path;
}

/* ---- Contexts ---- */

static void free_ctx(void *ctx)
{
    DC_CTX_free(ctx);
}

/* DC_CTX_new, freed after the test when not NULL. */
static DC_CTX *new_ctx(const char *target, unsigned int flags)
{
    DC_CTX *ctx = DC_CTX_new(target, flags);
    if (ctx != NULL)
        defer(free_ctx, ctx);
    return ctx;
}

#define MUST_CTX(target, flags) must_ctx(target, flags, __FILE__, __LINE__)
static DC_CTX *must_ctx(const char *target, unsigned int flags, const char *file, int line)
{
    DC_CTX *ctx = new_ctx(target, flags);
    if (ctx == NULL)
        fail_here(file, line, "DC_CTX_new(\"%s\", %u) returned NULL", target, flags);
    return ctx;
}

static void free_ctx_now(DC_CTX *ctx)
{
    undefer(ctx, 1);
}

/* ---- Session ids and data ---- */

static uint64_t id_seed;
static uint64_t id_counter;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void seed_ids(void)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    uint64_t seed = 0;
    if (fd < 0 || read(fd, &seed, sizeof(seed)) != (ssize_t)sizeof(seed))
        seed = (uint64_t)time(NULL) * 1000003u;
    if (fd >= 0)
        close(fd);
    id_seed = seed ^ ((uint64_t)getpid() << 32) ^ (uint64_t)now_ms();
}

/* A fresh random id, unique in this process and (with overwhelming odds) on the shared server. */
static void make_id(unsigned char *id, unsigned int len)
{
    uint64_t state = id_seed ^ (__atomic_add_fetch(&id_counter, 1, __ATOMIC_RELAXED) * 0xD1B54A32D192ED03ULL);
    uint64_t v = 0;
    for (unsigned int i = 0; i < len; i++) {
        if (i % 8 == 0)
            v = splitmix(&state);
        id[i] = (unsigned char)(v >> (8 * (i % 8)));
    }
}

/* Session data derived from the id, so that every session's bytes differ. */
static void make_data(unsigned char *data, unsigned int len, const unsigned char *id, unsigned int id_len)
{
    uint64_t state = 0xCBF29CE484222325ULL, v = 0;
    for (unsigned int i = 0; i < id_len; i++)
        state = (state ^ id[i]) * 0x100000001B3ULL;
    for (unsigned int i = 0; i < len; i++) {
        if (i % 8 == 0)
            v = splitmix(&state);
        data[i] = (unsigned char)(v >> (8 * (i % 8)));
    }
}

/* ---- Process facts ---- */

/* Open descriptors below 1024 (valgrind keeps its own near the top of the range and opens some lazily). */
static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && atoi(e->d_name) < 1024)
            n++;
    closedir(d);
    return n - 1;   /* the directory's own descriptor */
}

static long rss_kb(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    CHECK(resident >= 0);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---- Threads ---- */

struct thread_group {
    pthread_t *threads;
    int count;
    int *stop;     /* set before joining, for threads that run until told to stop */
};

static void join_group(void *p)
{
    struct thread_group *g = p;
    if (g->stop != NULL)
        __atomic_store_n(g->stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < g->count; i++)
        pthread_join(g->threads[i], NULL);
    free(g->threads);
    free(g);
}

/* Starts fn(arg + i * arg_size) on n threads; *stop is set and they are joined by stop_threads() or after the test. */
static struct thread_group *start_threads(int n, void *(*fn)(void *), void *args, size_t arg_size, int *stop)
{
    struct thread_group *g = xmalloc(sizeof(*g));
    pthread_attr_t attr;
    g->threads = xmalloc(sizeof(pthread_t) * (size_t)n);
    g->count = 0;
    g->stop = stop;
    defer(join_group, g);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1024 * 1024);
    for (int i = 0; i < n; i++) {
        int error = pthread_create(&g->threads[i], &attr, fn, (char *)args + (size_t)i * arg_size);
        if (error != 0) {
            pthread_attr_destroy(&attr);
            FAIL("pthread_create: %s", strerror(error));
        }
        g->count++;
    }
    pthread_attr_destroy(&attr);
    return g;
}

static void stop_threads(struct thread_group *g)
{
    undefer(g, 1);
}

/* Runs fn(arg + i * arg_size) on n threads and waits for them all. */
static void run_threads(int n, void *(*fn)(void *), void *args, size_t arg_size)
{
    stop_threads(start_threads(n, fn, args, arg_size, NULL));
}

/* ---- Child processes ---- */

static void reap_child(void *p)
{
    pid_t pid = (pid_t)(intptr_t)p;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

static void became_child(void)
{
    in_child = 1;
    /* The child must not draw the parent's ids. */
    id_seed ^= (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
}

/* fork(); in the parent the child is killed and reaped after the test unless wait_child() reaped it. */
static pid_t fork_child(void)
{
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    CHECKF(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0)
        became_child();
    else
        defer(reap_child, (void *)(intptr_t)pid);
    return pid;
}

/* The child's exit status (128 + signal when killed), failing when it is not done within timeout_ms. */
static int wait_child(pid_t pid, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            FAIL("waitpid: %s", strerror(errno));
        if (now_ms() > deadline)
            FAIL("the child %d did not finish within %d ms", (int)pid, timeout_ms);
        sleep_ms(5);
    }
    undefer((void *)(intptr_t)pid, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ==== The fake server ==== */

/* What the fake server does with a request. */
enum behaviour {
    B_NORMAL,              /* answers as dc_server would (from a small map) */
    B_STALL,               /* never answers */
    B_WRONG_UID,           /* answers with another request's uid */
    B_WRONG_OP,            /* answers with another operation */
    B_NOT_RESPONSE,        /* answers with is_response = 0 */
    B_BAD_VERSION,         /* answers with protocol version 0x0012 */
    B_BAD_CLASS,           /* answers with op_class 1 */
    B_BAD_COMPLETE,        /* answers with complete = 2 */
    B_BAD_LENGTH,          /* answers with a 2049-byte frame */
    B_SHORT_NONFINAL,      /* answers with a non-final frame shorter than 2048 bytes */
    B_OVERLONG,            /* answers with 17 frames, 32769 bytes */
    B_CLOSE_BEFORE,        /* closes the connection after reading the request */
    B_CLOSE_MID_HEADER,    /* sends 7 bytes of the header, then closes */
    B_CLOSE_MID_PAYLOAD,   /* sends a header promising 2048 bytes and 1000 of them, then closes */
    B_STALL_MID_HEADER,    /* sends 7 bytes of the header, then nothing */
    B_STALL_MID_PAYLOAD,   /* sends a header promising 2048 bytes and 1000 of them, then nothing */
    B_DISCONNECTED,        /* answers the one byte DISCONNECTED (2), as a proxy without a server link */
    B_EMPTY,               /* answers an empty payload, as 1.5.1's proxy without a server link */
    B_BIG_ANSWER,          /* answers 32768 bytes (the largest legal message) */
    B_TRICKLE,             /* answers correctly, one byte per millisecond */
    B_EXTRA_AFTER,         /* answers correctly, followed by 14 bytes nobody asked for */
    B_CLOSE_AFTER,         /* answers correctly, then closes the connection */
    B_DELAY,               /* answers correctly after delay_ms */
    B_PATCH_LEVEL,         /* answers correctly with a non-zero patch level (0x00110007) */
};

static const char *behaviour_name(enum behaviour b)
{
    static const char *const names[] = {
        "normal", "stall", "wrong uid", "wrong operation", "is_response 0", "bad version", "op_class 1",
        "complete 2", "frame of 2049 bytes", "short non-final frame", "message over 32768 bytes",
        "close before answering", "close mid-header", "close mid-payload", "stall mid-header", "stall mid-payload",
        "DISCONNECTED", "empty answer", "32768-byte answer", "trickled answer", "extra bytes after the answer",
        "close after answering", "delayed answer", "non-zero patch level",
    };
    return (size_t)b < sizeof(names) / sizeof(names[0]) ? names[b] : "?";
}

#define FAKE_MAX_CONNS 200
#define FAKE_IN_CAP (4 * (FRAME_HEADER + FRAME_MAX))
#define FAKE_MAP_MAX 4096

struct fake_conn {
    int fd;
    unsigned long serial;
    unsigned char *in;       /* bytes received and not yet decoded */
    size_t in_len;
    unsigned char *msg;      /* the request being assembled */
    size_t msg_len;
    int in_message;
    uint32_t msg_uid;
    unsigned char msg_op;
    unsigned char *out;      /* bytes to send */
    size_t out_len, out_sent, out_cap;
    int64_t send_at;
    int trickle;
    int close_when_sent;
};

struct record {
    uint32_t uid;
    unsigned char op;
    unsigned long conn;      /* the serial of the connection it came on */
    size_t len;
    unsigned char *payload;
};

struct map_entry {
    unsigned char id[LARGEST_ID];
    unsigned int id_len;
    unsigned char *data;
    size_t len;
};

struct fake {
    char address[160];
    char path[120];          /* the unix socket, or "" for TCP */
    int listen_fd;
    int wake[2];
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Under lock. */
    enum behaviour behaviour;
    int behaviour_count;     /* requests left to treat so (then "then"); -1 for ever */
    enum behaviour then;
    int delay_ms;
    int gate_open;           /* while > 0: no answer leaves until this many connections are open at once (then 0) */
    int64_t gate_deadline;   /* ... or until this time */
    int close_on_accept;     /* accept connections and close them at once */
    int stop;
    unsigned long close_idle_asked, close_idle_done;
    unsigned long accepts;
    int open;
    struct record *records;
    size_t record_count, record_cap;
    int errors;
    char error[300];
    struct map_entry *map;
    size_t map_len;
    /* The server thread's own. */
    struct fake_conn conns[FAKE_MAX_CONNS];
    int conn_count;
    unsigned long next_serial;
    struct pollfd pfd[2 + FAKE_MAX_CONNS];
};

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

/* Under lock: the first fault of the library that the fake server saw. */
static void fake_error(struct fake *f, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void fake_error(struct fake *f, const char *format, ...)
{
    va_list args;
    if (f->errors++ == 0) {
        va_start(args, format);
        vsnprintf(f->error, sizeof(f->error), format, args);
        va_end(args);
    }
}

static void out_append(struct fake_conn *c, const void *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = xrealloc(c->out, c->out_cap);
    }
    if (n > 0)
        memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void out_header(struct fake_conn *c, uint32_t level, unsigned char is_response, uint32_t uid,
                       unsigned char op_class, unsigned char op, unsigned char complete, unsigned int len)
{
    unsigned char h[FRAME_HEADER];
    put32(h, level);
    h[4] = is_response;
    put32(h + 5, uid);
    h[9] = op_class;
    h[10] = op;
    h[11] = complete;
    h[12] = (unsigned char)(len >> 8);
    h[13] = (unsigned char)len;
    out_append(c, h, sizeof(h));
}

/* A message in frames of 2048 bytes, with the given header fields. */
static void out_message(struct fake_conn *c, uint32_t level, unsigned char is_response, uint32_t uid,
                        unsigned char op_class, unsigned char op, const unsigned char *payload, size_t len)
{
    size_t sent = 0;
    do {
        size_t chunk = len - sent > FRAME_MAX ? FRAME_MAX : len - sent;
        out_header(c, level, is_response, uid, op_class, op, (unsigned char)(sent + chunk == len),
                   (unsigned int)chunk);
        out_append(c, payload + sent, chunk);
        sent += chunk;
    } while (sent < len);
}

static struct map_entry *map_find(struct fake *f, const unsigned char *id, size_t id_len)
{
    for (size_t i = 0; i < f->map_len; i++)
        if (f->map[i].id_len == id_len && memcmp(f->map[i].id, id, id_len) == 0)
            return &f->map[i];
    return NULL;
}

/* Under lock: the answer dc_server would give; applies it to the map when modify is set. */
static size_t fake_compute(struct fake *f, unsigned char op, const unsigned char *p, size_t len, int modify,
                           const unsigned char **answer, unsigned char *code)
{
    struct map_entry *e;
    *answer = code;
    switch (op) {
    case 0: {   /* ADD */
        uint32_t timeout, id_len;
        if (len < 8) {
            fake_error(f, "an ADD payload of %zu bytes", len);
            *code = 100;
            return 1;
        }
        timeout = get32(p);
        id_len = get32(p + 4);
        if (timeout > 604800000u)
            *code = 102;
        else if (id_len >= len - 8)
            *code = 100;
        else if (id_len == 0 || id_len > LARGEST_ID)
            *code = 103;
        else if (len - 8 - id_len > MESSAGE_MAX)
            *code = 104;
        else if (map_find(f, p + 8, id_len) != NULL)
            *code = 101;
        else if (f->map_len == FAKE_MAP_MAX) {
            fake_error(f, "the fake server's map is full");
            *code = 1;
        } else {
            *code = 0;
            if (modify) {
                e = &f->map[f->map_len++];
                memcpy(e->id, p + 8, id_len);
                e->id_len = id_len;
                e->len = len - 8 - id_len;
                e->data = xmalloc(e->len);
                memcpy(e->data, p + 8 + id_len, e->len);
            }
        }
        return 1;
    }
    case 1:   /* GET */
        e = map_find(f, p, len);
        if (e != NULL) {
            *answer = e->data;
            return e->len;
        }
        *code = 1;
        return 1;
    case 2:   /* REMOVE */
        e = map_find(f, p, len);
        *code = e != NULL ? 0 : 1;
        if (e != NULL && modify) {
            free(e->data);
            *e = f->map[--f->map_len];
        }
        return 1;
    default:  /* HAVE */
        *code = map_find(f, p, len) != NULL ? 0 : 1;
        return 1;
    }
}

/* Server thread: one whole request arrived on c. Returns 1 when the connection is to be closed now. */
static int fake_answer(struct fake *f, struct fake_conn *c)
{
    static unsigned char big[MESSAGE_MAX + 1];
    uint32_t uid = c->msg_uid, level = 0x00110000u;
    unsigned char op = c->msg_op, code = 0;
    const unsigned char *answer;
    size_t alen;
    enum behaviour b;
    int modify, result = 0;
    struct record *r;

    pthread_mutex_lock(&f->lock);
    if (f->record_count == f->record_cap) {
        f->record_cap = f->record_cap == 0 ? 64 : f->record_cap * 2;
        f->records = xrealloc(f->records, f->record_cap * sizeof(*f->records));
    }
    r = &f->records[f->record_count++];
    r->uid = uid;
    r->op = op;
    r->conn = c->serial;
    r->len = c->msg_len;
    r->payload = xmalloc(c->msg_len);
    memcpy(r->payload, c->msg, c->msg_len);
    if ((op == 1 || op == 2 || op == 3) && (c->msg_len == 0 || c->msg_len > LARGEST_ID))
        fake_error(f, "a request of operation %u with an id of %zu bytes", op, c->msg_len);

    b = f->behaviour;
    if (f->behaviour_count > 0 && --f->behaviour_count == 0)
        f->behaviour = f->then;
    modify = b == B_NORMAL || b == B_TRICKLE || b == B_EXTRA_AFTER || b == B_CLOSE_AFTER || b == B_DELAY
             || b == B_PATCH_LEVEL;
    alen = fake_compute(f, op, c->msg, c->msg_len, modify, &answer, &code);

    switch (b) {
    case B_NORMAL:
    case B_TRICKLE:
    case B_EXTRA_AFTER:
    case B_CLOSE_AFTER:
    case B_DELAY:
    case B_PATCH_LEVEL:
        out_message(c, b == B_PATCH_LEVEL ? 0x00110007u : level, 1, uid, 0, op, answer, alen);
        if (b == B_TRICKLE)
            c->trickle = 1;
        if (b == B_EXTRA_AFTER) {
            unsigned char junk[FRAME_HEADER];
            memset(junk, 0x5A, sizeof(junk));
            out_append(c, junk, sizeof(junk));
        }
        if (b == B_CLOSE_AFTER)
            c->close_when_sent = 1;
        if (b == B_DELAY)
            c->send_at = now_ms() + f->delay_ms;
        break;
    case B_STALL:
        break;
    case B_WRONG_UID:
        out_message(c, level, 1, uid + 1, 0, op, answer, alen);
        break;
    case B_WRONG_OP:
        out_message(c, level, 1, uid, 0, (unsigned char)(op ^ 1), answer, alen);
        break;
    case B_NOT_RESPONSE:
        out_message(c, level, 0, uid, 0, op, answer, alen);
        break;
    case B_BAD_VERSION:
        out_message(c, 0x00120000u, 1, uid, 0, op, answer, alen);
        break;
    case B_BAD_CLASS:
        out_message(c, level, 1, uid, 1, op, answer, alen);
        break;
    case B_BAD_COMPLETE:
        if (alen > FRAME_MAX)
            alen = FRAME_MAX;
        out_header(c, level, 1, uid, 0, op, 2, (unsigned int)alen);
        out_append(c, answer, alen);
        break;
    case B_BAD_LENGTH:
        memset(big, 0, FRAME_MAX + 1);
        out_header(c, level, 1, uid, 0, op, 1, FRAME_MAX + 1);
        out_append(c, big, FRAME_MAX + 1);
        break;
    case B_SHORT_NONFINAL:
        if (alen > FRAME_MAX - 1)
            alen = FRAME_MAX - 1;
        out_header(c, level, 1, uid, 0, op, 0, (unsigned int)alen);
        out_append(c, answer, alen);
        out_header(c, level, 1, uid, 0, op, 1, 0);
        break;
    case B_OVERLONG:
        memset(big, 0x33, sizeof(big));
        for (int i = 0; i < MESSAGE_MAX / FRAME_MAX; i++) {
            out_header(c, level, 1, uid, 0, op, 0, FRAME_MAX);
            out_append(c, big, FRAME_MAX);
        }
        out_header(c, level, 1, uid, 0, op, 1, 1);
        out_append(c, big, 1);
        break;
    case B_CLOSE_BEFORE:
        result = 1;
        break;
    case B_CLOSE_MID_HEADER:
    case B_STALL_MID_HEADER: {
        size_t start = c->out_len;
        out_message(c, level, 1, uid, 0, op, answer, alen);
        c->out_len = start + 7;
        c->close_when_sent = b == B_CLOSE_MID_HEADER;
        break;
    }
    case B_CLOSE_MID_PAYLOAD:
    case B_STALL_MID_PAYLOAD:
        memset(big, 0x44, 1000);
        out_header(c, level, 1, uid, 0, op, 1, FRAME_MAX);
        out_append(c, big, 1000);
        c->close_when_sent = b == B_CLOSE_MID_PAYLOAD;
        break;
    case B_DISCONNECTED:
        code = 2;
        out_message(c, level, 1, uid, 0, op, &code, 1);
        break;
    case B_EMPTY:
        out_message(c, level, 1, uid, 0, op, &code, 0);
        break;
    case B_BIG_ANSWER:
        for (size_t i = 0; i < MESSAGE_MAX; i++)
            big[i] = (unsigned char)(i * 7 + 3);
        out_message(c, level, 1, uid, 0, op, big, MESSAGE_MAX);
        break;
    }
    pthread_mutex_unlock(&f->lock);
    return result;
}

/* Server thread: reads what arrived and answers whole requests. Returns 1 when the connection is to be closed. */
static int fake_read(struct fake *f, struct fake_conn *c)
{
    ssize_t n = recv(c->fd, c->in + c->in_len, FAKE_IN_CAP - c->in_len, MSG_DONTWAIT);
    if (n == 0)
        return 1;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : 1;
    c->in_len += (size_t)n;
    while (c->in_len >= FRAME_HEADER) {
        const unsigned char *h = c->in;
        size_t flen = ((size_t)h[12] << 8) | h[13];
        int complete = h[11];
        if ((get32(h) >> 16) != 0x0011 || h[4] != 0 || h[9] != 0 || h[10] > 3 || complete > 1 || flen > FRAME_MAX
            || (!complete && flen != FRAME_MAX)
            || (c->in_message && (get32(h + 5) != c->msg_uid || h[10] != c->msg_op))) {
            pthread_mutex_lock(&f->lock);
            fake_error(f, "the library sent a bad frame header: level %08x response %u uid %u class %u op %u "
                       "complete %u length %zu", get32(h), h[4], get32(h + 5), h[9], h[10], h[11], flen);
            pthread_mutex_unlock(&f->lock);
            return 1;
        }
        if (c->in_len < FRAME_HEADER + flen)
            break;
        if (!c->in_message) {
            c->in_message = 1;
            c->msg_uid = get32(h + 5);
            c->msg_op = h[10];
            c->msg_len = 0;
        }
        if (c->msg_len + flen > MESSAGE_MAX) {
            pthread_mutex_lock(&f->lock);
            fake_error(f, "the library sent a message over %d bytes", MESSAGE_MAX);
            pthread_mutex_unlock(&f->lock);
            return 1;
        }
        memcpy(c->msg + c->msg_len, h + FRAME_HEADER, flen);
        c->msg_len += flen;
        memmove(c->in, c->in + FRAME_HEADER + flen, c->in_len - FRAME_HEADER - flen);
        c->in_len -= FRAME_HEADER + flen;
        if (complete) {
            c->in_message = 0;
            if (fake_answer(f, c))
                return 1;
        }
    }
    return 0;
}

/* Server thread: sends what is due. Returns 1 when the connection is to be closed. */
static int fake_write(struct fake_conn *c)
{
    while (c->out_sent < c->out_len && c->send_at <= now_ms()) {
        size_t n = c->trickle ? 1 : c->out_len - c->out_sent;
        ssize_t sent = send(c->fd, c->out + c->out_sent, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : 1;
        c->out_sent += (size_t)sent;
        if (c->trickle)
            c->send_at = now_ms() + 1;
    }
    if (c->out_len > 0 && c->out_sent == c->out_len) {
        c->out_len = c->out_sent = 0;
        c->trickle = 0;
        if (c->close_when_sent)
            return 1;
    }
    return 0;
}

static void fake_close_conn(struct fake *f, int i)
{
    struct fake_conn *c = &f->conns[i];
    close(c->fd);
    free(c->in);
    free(c->msg);
    free(c->out);
    pthread_mutex_lock(&f->lock);
    f->open--;
    pthread_mutex_unlock(&f->lock);
    f->conns[i] = f->conns[--f->conn_count];
}

static void fake_accept(struct fake *f)
{
    while (f->conn_count < FAKE_MAX_CONNS) {
        int fd = accept4(f->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct fake_conn *c;
        if (fd < 0)
            return;
        pthread_mutex_lock(&f->lock);
        if (f->close_on_accept) {
            f->accepts++;
            pthread_mutex_unlock(&f->lock);
            close(fd);
            continue;
        }
        pthread_mutex_unlock(&f->lock);
        c = &f->conns[f->conn_count++];
        memset(c, 0, sizeof(*c));
        c->fd = fd;
        c->serial = ++f->next_serial;
        c->in = xmalloc(FAKE_IN_CAP);
        c->msg = xmalloc(MESSAGE_MAX);
        pthread_mutex_lock(&f->lock);
        f->accepts++;
        f->open++;
        pthread_mutex_unlock(&f->lock);
    }
}

/* Server thread: commands from the test. Returns 1 to stop. */
static int fake_commands(struct fake *f)
{
    char drain[64];
    unsigned long asked;
    while (read(f->wake[0], drain, sizeof(drain)) > 0) {
    }
    pthread_mutex_lock(&f->lock);
    if (f->stop) {
        pthread_mutex_unlock(&f->lock);
        return 1;
    }
    asked = f->close_idle_asked;
    pthread_mutex_unlock(&f->lock);
    if (asked != f->close_idle_done) {
        for (int i = f->conn_count - 1; i >= 0; i--)
            if (f->conns[i].out_len == 0 && !f->conns[i].in_message && f->conns[i].in_len == 0)
                fake_close_conn(f, i);
        pthread_mutex_lock(&f->lock);
        f->close_idle_done = asked;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
    }
    return 0;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    for (;;) {
        int n = 0, timeout = -1, listening = f->conn_count < FAKE_MAX_CONNS, gated;
        int64_t now = now_ms();
        pthread_mutex_lock(&f->lock);
        if (f->gate_open > 0 && (f->conn_count >= f->gate_open || now >= f->gate_deadline))
            f->gate_open = 0;
        gated = f->gate_open > 0;
        if (gated)
            timeout = (int)(f->gate_deadline - now);
        pthread_mutex_unlock(&f->lock);
        f->pfd[n].fd = f->wake[0];
        f->pfd[n].events = POLLIN;
        f->pfd[n++].revents = 0;
        f->pfd[n].fd = listening ? f->listen_fd : -1;
        f->pfd[n].events = POLLIN;
        f->pfd[n++].revents = 0;
        for (int i = 0; i < f->conn_count; i++) {
            struct fake_conn *c = &f->conns[i];
            short events = POLLIN;
            if (c->out_sent < c->out_len && !gated) {
                if (c->send_at <= now) {
                    events |= POLLOUT;
                } else {
                    int64_t left = c->send_at - now;
                    if (timeout < 0 || left < timeout)
                        timeout = (int)left;
                }
            }
            f->pfd[n].fd = c->fd;
            f->pfd[n].events = events;
            f->pfd[n++].revents = 0;
        }
        if (poll(f->pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
            sleep_ms(1);
        if (f->pfd[0].revents != 0) {
            if (fake_commands(f))
                break;
            continue;
        }
        /* Backwards, so that closing conns[i] (which moves the last one into its place) skips nothing. */
        for (int i = f->conn_count - 1; i >= 0; i--) {
            struct fake_conn *c = &f->conns[i];
            if ((f->pfd[2 + i].revents & (POLLIN | POLLHUP | POLLERR)) && fake_read(f, c) != 0) {
                fake_close_conn(f, i);
                continue;
            }
            if (!gated && fake_write(c) != 0)
                fake_close_conn(f, i);
        }
        if (listening && (f->pfd[1].revents & POLLIN))
            fake_accept(f);
    }
    return NULL;
}

static void fake_stop(void *p)
{
    struct fake *f = p;
    if (f->thread_started) {
        pthread_mutex_lock(&f->lock);
        f->stop = 1;
        pthread_mutex_unlock(&f->lock);
        if (write(f->wake[1], "s", 1) < 0) {
        }
        pthread_join(f->thread, NULL);
    }
    while (f->conn_count > 0)
        fake_close_conn(f, f->conn_count - 1);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    close(f->wake[0]);
    close(f->wake[1]);
    if (f->path[0] != '\0')
        unlink(f->path);
    for (size_t i = 0; i < f->record_count; i++)
        free(f->records[i].payload);
    free(f->records);
    for (size_t i = 0; i < f->map_len; i++)
        free(f->map[i].data);
    free(f->map);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* A fake server listening on the unix socket path (NULL: a new one in the test's folder), or on TCP loopback with
 * tcp set (1: IPv4, 2: IPv6, NULL when the system has no IPv6 loopback); stopped after the test. */
static struct fake *fake_start_any(const char *path, int tcp)
{
    static int serial;
    struct fake *f = calloc(1, sizeof(*f));
    CHECK(f != NULL);
    f->listen_fd = -1;
    f->map = xmalloc(sizeof(*f->map) * FAKE_MAP_MAX);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    if (pipe2(f->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(f->map);
        free(f);
        FAIL("pipe2: %s", strerror(errno));
    }
    defer(fake_stop, f);
    if (tcp == 2) {
        struct sockaddr_in6 sin6;
        socklen_t length = sizeof(sin6);
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        sin6.sin6_addr = in6addr_loopback;
        f->listen_fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&sin6, sizeof(sin6)) != 0) {
            undefer(f, 1);
            return NULL;
        }
        CHECK(getsockname(f->listen_fd, (struct sockaddr *)&sin6, &length) == 0);
        snprintf(f->address, sizeof(f->address), "IPv6:[::1]:%u", ntohs(sin6.sin6_port));
    } else if (tcp) {
        struct sockaddr_in sin;
        socklen_t length = sizeof(sin);
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(f->listen_fd >= 0);
        CHECKF(bind(f->listen_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind: %s", strerror(errno));
        CHECK(getsockname(f->listen_fd, (struct sockaddr *)&sin, &length) == 0);
        snprintf(f->address, sizeof(f->address), "IP:127.0.0.1:%u", ntohs(sin.sin_port));
    } else {
        struct sockaddr_un sun;
        if (path == NULL)
            snprintf(f->path, sizeof(f->path), "%s/fake%d.sock", test_dir(), ++serial);
        else
            snprintf(f->path, sizeof(f->path), "%s", path);
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        CHECKF(strlen(f->path) < sizeof(sun.sun_path), "socket path too long: %s", f->path);
        memcpy(sun.sun_path, f->path, strlen(f->path) + 1);
        f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(f->listen_fd >= 0);
        CHECKF(bind(f->listen_fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "bind %s: %s", f->path,
               strerror(errno));
        snprintf(f->address, sizeof(f->address), "UNIX:%s", f->path);
    }
    CHECKF(listen(f->listen_fd, 128) == 0, "listen: %s", strerror(errno));
    CHECK(pthread_create(&f->thread, NULL, fake_main, f) == 0);
    f->thread_started = 1;
    return f;
}

static struct fake *fake_start(void)
{
    return fake_start_any(NULL, 0);
}

/* Treats the next count requests (-1: all) as b, and the ones after as then. */
static void fake_set_then(struct fake *f, enum behaviour b, int count, enum behaviour then)
{
    pthread_mutex_lock(&f->lock);
    f->behaviour = b;
    f->behaviour_count = count;
    f->then = then;
    pthread_mutex_unlock(&f->lock);
}

/* Treats the next count requests (-1: all) as b, and the ones after normally. */
static void fake_set(struct fake *f, enum behaviour b, int count)
{
    fake_set_then(f, b, count, B_NORMAL);
}

static int fake_open(struct fake *f)
{
    int n;
    pthread_mutex_lock(&f->lock);
    n = f->open;
    pthread_mutex_unlock(&f->lock);
    return n;
}

/* Waits (up to 3 s) until the fake server has at most n connections open; their number. */
static int fake_wait_open_at_most(struct fake *f, int n)
{
    int64_t deadline = now_ms() + 3000;
    int open;
    while ((open = fake_open(f)) > n && now_ms() < deadline)
        sleep_ms(5);
    return open;
}

static void fake_set_delay(struct fake *f, int ms)
{
    pthread_mutex_lock(&f->lock);
    f->delay_ms = ms;
    pthread_mutex_unlock(&f->lock);
}

/* Holds every answer until n connections are open at once (or ms have passed), so that the clients overlap however
 * slowly they are scheduled (under valgrind, one thread runs at a time). Released once, then answers flow as before. */
static void fake_set_gate(struct fake *f, int n, int ms)
{
    pthread_mutex_lock(&f->lock);
    f->gate_open = n;
    f->gate_deadline = now_ms() + ms;
    pthread_mutex_unlock(&f->lock);
    /* The server thread reads the gate at its next wake-up, which the first connection gives it. */
}

static unsigned long fake_accepts(struct fake *f)
{
    unsigned long n;
    pthread_mutex_lock(&f->lock);
    n = f->accepts;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static size_t fake_record_count(struct fake *f)
{
    size_t n;
    pthread_mutex_lock(&f->lock);
    n = f->record_count;
    pthread_mutex_unlock(&f->lock);
    return n;
}

/* A copy of the i-th request received (its payload stays valid while the fake server runs). */
static struct record fake_record(struct fake *f, size_t i)
{
    struct record r;
    pthread_mutex_lock(&f->lock);
    if (i >= f->record_count) {
        pthread_mutex_unlock(&f->lock);
        FAIL("the fake server received %zu requests, not %zu", f->record_count, i + 1);
    }
    r = f->records[i];
    pthread_mutex_unlock(&f->lock);
    return r;
}

/* The lifetime field of the last request, which must be an ADD. */
static uint32_t fake_last_add_timeout(struct fake *f)
{
    size_t n = fake_record_count(f);
    struct record r;
    CHECKF(n > 0, "the fake server received nothing");
    r = fake_record(f, n - 1);
    CHECKF(r.op == 0 && r.len >= 8, "the last request was operation %u of %zu bytes, not an ADD", r.op, r.len);
    return get32(r.payload);
}

/* Fails if the library sent the fake server anything the protocol forbids. */
#define FAKE_CLEAN(f) fake_clean(f, __FILE__, __LINE__)
static void fake_clean(struct fake *f, const char *file, int line)
{
    char error[sizeof(f->error)];
    int errors;
    pthread_mutex_lock(&f->lock);
    errors = f->errors;
    memcpy(error, f->error, sizeof(error));
    pthread_mutex_unlock(&f->lock);
    if (errors != 0)
        fail_here(file, line, "the fake server saw %d faults of the library, first: %s", errors, error);
}

/* Closes every idle connection of the fake server and waits until it has. */
static void fake_close_idle(struct fake *f)
{
    int64_t deadline = now_ms() + 5000;
    unsigned long asked;
    pthread_mutex_lock(&f->lock);
    asked = ++f->close_idle_asked;
    pthread_mutex_unlock(&f->lock);
    if (write(f->wake[1], "c", 1) < 0) {
    }
    pthread_mutex_lock(&f->lock);
    while (f->close_idle_done < asked && now_ms() < deadline) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 10000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&f->cond, &f->lock, &until);
    }
    asked = f->close_idle_done >= asked;
    pthread_mutex_unlock(&f->lock);
    CHECKF(asked, "the fake server did not close its idle connections");
}

/* Waits until the fake server has accepted at least n connections, then checks that it has accepted exactly n. */
#define EXPECT_ACCEPTS(f, n) expect_accepts(f, n, __FILE__, __LINE__)
static void expect_accepts(struct fake *f, unsigned long n, const char *file, int line)
{
    int64_t deadline = now_ms() + 3000;
    unsigned long seen;
    while ((seen = fake_accepts(f)) < n && now_ms() < deadline)
        sleep_ms(2);
    sleep_ms(under_valgrind ? 100 : 30);   /* a connection that should not be there has time to show up */
    seen = fake_accepts(f);
    if (seen != n)
        fail_here(file, line, "the fake server accepted %lu connections, expected %lu", seen, n);
}

/* ==== Operations used by many tests ==== */

enum { DO_ADD, DO_GET, DO_REMOVE, DO_HAVE };
static const char *const op_names[] = { "add", "get", "remove", "has" };

/* One operation on an id with a small fixed session; the library's return value. */
static int do_op(DC_CTX *ctx, int which, const unsigned char *id, unsigned int id_len)
{
    static const unsigned char data[16] = { 's', 'e', 's', 's', 'i', 'o', 'n', ' ', 'd', 'a', 't', 'a', 0, 1, 2, 3 };
    unsigned char buf[64];
    unsigned int used = 0;
    switch (which) {
    case DO_ADD:
        return DC_CTX_add_session(ctx, id, id_len, data, sizeof(data), 600000);
    case DO_GET:
        return DC_CTX_get_session(ctx, id, id_len, buf, sizeof(buf), &used);
    case DO_REMOVE:
        return DC_CTX_remove_session(ctx, id, id_len);
    default:
        return DC_CTX_has_session(ctx, id, id_len);
    }
}

static int failure_value(int which)
{
    return which == DO_HAVE ? -1 : 0;
}

/* A checked round on a fresh id: add, get (the exact bytes), has, remove. Safe from any thread. */
static void small_round(DC_CTX *ctx, unsigned int sess_len, const char *who, int round)
{
    unsigned char id[32], data[4096], buf[4096 + 16];
    unsigned int used = 0;
    if (sess_len > sizeof(data))
        sess_len = sizeof(data);
    make_id(id, sizeof(id));
    make_data(data, sess_len, id, sizeof(id));
    CHECKF(DC_CTX_add_session(ctx, id, sizeof(id), data, sess_len, 600000) == 1, "%s round %d: add of %u bytes "
           "failed", who, round, sess_len);
    memset(buf, 0xA5, sizeof(buf));
    CHECKF(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used) == 1, "%s round %d: get missed",
           who, round);
    CHECKF(used == sess_len && memcmp(buf, data, sess_len) == 0 && buf[sess_len] == 0xA5,
           "%s round %d: get returned %u bytes, not the %u stored", who, round, used, sess_len);
    CHECKF(DC_CTX_has_session(ctx, id, sizeof(id)) == 1, "%s round %d: has did not find it", who, round);
    CHECKF(DC_CTX_remove_session(ctx, id, sizeof(id)) == 1, "%s round %d: remove failed", who, round);
    if (round % 4 == 0) {
        CHECKF(DC_CTX_has_session(ctx, id, sizeof(id)) == 0, "%s round %d: has after remove", who, round);
        CHECKF(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used) == 0, "%s round %d: get after "
               "remove", who, round);
    }
}

/* Every function on one id with a session of sess_len bytes: add 1, add again 0, get (exact bytes, the byte after
 * untouched) 1, reget 1, has 1, remove 1, remove again 0, get 0, reget 0, has 0. Main thread only. */
static void full_round(DC_CTX *ctx, unsigned int id_len, unsigned int sess_len, unsigned int flags)
{
    static unsigned char data[MESSAGE_MAX + 16], buf[MESSAGE_MAX + 16];
    unsigned char id[LARGEST_ID];
    unsigned int used = 0;
    make_id(id, id_len);
    make_data(data, sess_len, id, id_len);
    CHECKF(DC_CTX_add_session(ctx, id, id_len, data, sess_len, 600000) == 1,
           "flags %u, id %u bytes, session %u bytes: add failed", flags, id_len, sess_len);
    CHECKF(DC_CTX_add_session(ctx, id, id_len, data, sess_len, 600000) == 0,
           "flags %u, session %u bytes: a second add of the same id succeeded", flags, sess_len);
    memset(buf, 0xA5, sizeof(buf));
    CHECKF(DC_CTX_get_session(ctx, id, id_len, buf, sess_len + 16, &used) == 1,
           "flags %u, session %u bytes: get missed", flags, sess_len);
    CHECKF(used == sess_len, "flags %u: get said %u bytes, not %u", flags, used, sess_len);
    CHECKF(memcmp(buf, data, sess_len) == 0, "flags %u, session %u bytes: get returned other bytes", flags,
           sess_len);
    CHECKF(buf[sess_len] == 0xA5, "flags %u, session %u bytes: get wrote past the session", flags, sess_len);
    memset(buf, 0, sizeof(buf));
    used = 0;
    CHECKF(DC_CTX_reget_session(ctx, id, id_len, buf, sess_len, &used) == 1 && used == sess_len
           && memcmp(buf, data, sess_len) == 0, "flags %u, session %u bytes: reget after get", flags, sess_len);
    CHECKF(DC_CTX_has_session(ctx, id, id_len) == 1, "flags %u, session %u bytes: has", flags, sess_len);
    CHECKF(DC_CTX_remove_session(ctx, id, id_len) == 1, "flags %u, session %u bytes: remove", flags, sess_len);
    CHECKF(DC_CTX_remove_session(ctx, id, id_len) == 0, "flags %u, session %u bytes: second remove", flags,
           sess_len);
    CHECKF(DC_CTX_get_session(ctx, id, id_len, buf, sess_len + 16, &used) == 0,
           "flags %u, session %u bytes: get after remove", flags, sess_len);
    CHECKF(DC_CTX_reget_session(ctx, id, id_len, buf, sess_len + 16, &used) == 0,
           "flags %u, session %u bytes: reget after a missed get", flags, sess_len);
    CHECKF(DC_CTX_has_session(ctx, id, id_len) == 0, "flags %u, session %u bytes: has after remove", flags,
           sess_len);
}

static const unsigned int flag_sets[] = { 0, P, P | PIDCHECK, P | RETRY, P | LATE, P | PIDCHECK | RETRY | LATE };
#define FLAG_SET_COUNT (sizeof(flag_sets) / sizeof(flag_sets[0]))

/* ==== Tests: the API's shape and DC_CTX_new ==== */

static void test_constants(void)
{
    /* The exact prototypes of 1.5.1: a different type is a compile error (-Werror). */
    DC_CTX *(*p_new)(const char *, unsigned int) = DC_CTX_new;
    void (*p_free)(DC_CTX *) = DC_CTX_free;
    int (*p_add)(DC_CTX *, const unsigned char *, unsigned int, const unsigned char *, unsigned int,
                 unsigned long) = DC_CTX_add_session;
    int (*p_remove)(DC_CTX *, const unsigned char *, unsigned int) = DC_CTX_remove_session;
    int (*p_get)(DC_CTX *, const unsigned char *, unsigned int, unsigned char *, unsigned int,
                 unsigned int *) = DC_CTX_get_session;
    int (*p_reget)(DC_CTX *, const unsigned char *, unsigned int, unsigned char *, unsigned int,
                   unsigned int *) = DC_CTX_reget_session;
    int (*p_has)(DC_CTX *, const unsigned char *, unsigned int) = DC_CTX_has_session;
    CHECK(p_new != NULL && p_free != NULL && p_add != NULL && p_remove != NULL && p_get != NULL && p_reget != NULL
          && p_has != NULL);
#if DISTCACHE_CLIENT_API != 0x0001
#error "DISTCACHE_CLIENT_API must be 0x0001 (Apache's configure checks it)"
#endif
#if DISTCACHE_CLIENT_BINARY != 0x0001
#error "DISTCACHE_CLIENT_BINARY must be 0x0001"
#endif
    CHECK_EQ(DISTCACHE_CLIENT_API, 0x0001);
    CHECK_EQ(DISTCACHE_CLIENT_BINARY, 0x0001);
    CHECK_EQ(DC_CTX_FLAG_PERSISTENT, 1);
    CHECK_EQ(DC_CTX_FLAG_PERSISTENT_PIDCHECK, 2);
    CHECK_EQ(DC_CTX_FLAG_PERSISTENT_RETRY, 4);
    CHECK_EQ(DC_CTX_FLAG_PERSISTENT_LATE, 8);
    /* unsigned int, as 1.5.1 declares them */
    CHECK(sizeof(DC_CTX_FLAG_PERSISTENT) == sizeof(unsigned int) && DC_CTX_FLAG_PERSISTENT - 2 > 0);
    CHECK(sizeof(DC_CTX_FLAG_PERSISTENT_LATE) == sizeof(unsigned int) && DC_CTX_FLAG_PERSISTENT_LATE - 9 > 0);
    CHECK_EQ(DC_MIN_TIMEOUT, 500);
}

static void test_new_null_target(void)
{
    /* What Apache's configure probe calls. */
    CHECK(DC_CTX_new((const char *)0, 0) == NULL);
    CHECK(DC_CTX_new(NULL, P) == NULL);
    CHECK(DC_CTX_new(NULL, P | LATE) == NULL);
    DC_CTX_free(NULL);
}

static void test_new_malformed_targets(void)
{
    char long_path[200], longest_path[200];
    const char *bad[] = {
        "", "garbage", "IP:9001", "IP::9001", "FD:3", "FD:0", "UNIX:", "IP:127.0.0.1:0", "IP:127.0.0.1:99999",
        "IP:127.0.0.1:65536", "IP:1.2.3:80", "IP:1.2.3.999:80", "IP:127.0.0.1:", "IP:127.0.0.1:80x",
        "IP:127.0.0.1:-1", "IPv6:::1:80", "IPv6:[::1]", "IPv6:[]:80", "TCP:127.0.0.1:80", "UNIX", "IP",
        long_path,
    };
    const char *good[] = {
        "UNIX:/nonexistent-distcache-dir/x.sock", "IP:127.0.0.1:1", "IPv4:127.0.0.1:9", "IPv6:[::1]:9",
        longest_path,
    };
    const unsigned int flags[] = { 0, P, P | LATE, LATE };
    /* sun_path holds 107 bytes and a NUL. */
    snprintf(long_path, sizeof(long_path), "UNIX:/tmp/%0108d", 0);
    snprintf(longest_path, sizeof(longest_path), "UNIX:/tmp/%0102d", 0);
    CHECK_EQ(strlen(longest_path) - 5, 107);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t j = 0; j < sizeof(flags) / sizeof(flags[0]); j++) {
            DC_CTX *ctx = DC_CTX_new(bad[i], flags[j]);
            if (ctx != NULL) {
                DC_CTX_free(ctx);
                FAIL("DC_CTX_new(\"%s\", %u) accepted a malformed target", bad[i], flags[j]);
            }
        }
    }
    /* Well-formed targets: without PERSISTENT (or with LATE) nothing is connected, so a context is made. */
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        DC_CTX *ctx = DC_CTX_new(good[i], 0);
        CHECKF(ctx != NULL, "DC_CTX_new(\"%s\", 0) refused a well-formed target", good[i]);
        DC_CTX_free(ctx);
        ctx = DC_CTX_new(good[i], P | LATE);
        CHECKF(ctx != NULL, "DC_CTX_new(\"%s\", P|LATE) refused a well-formed target", good[i]);
        DC_CTX_free(ctx);
    }
    DC_CTX_free(NULL);
}

static void test_new_missing_socket(void)
{
    char target[200];
    DC_CTX *plain, *late;
    unsigned char id[32], buf[64];
    unsigned int used = 0;
    int64_t started;
    snprintf(target, sizeof(target), "UNIX:%s/missing.sock", test_dir());
    make_id(id, sizeof(id));
    started = now_ms();
    CHECK(DC_CTX_new(target, P) == NULL);
    CHECK(DC_CTX_new(target, P | PIDCHECK) == NULL);
    CHECK(DC_CTX_new(target, P | RETRY) == NULL);
    CHECK(DC_CTX_new(target, P | PIDCHECK | RETRY) == NULL);
    plain = MUST_CTX(target, 0);
    late = MUST_CTX(target, P | LATE);
    for (int i = 0; i < 2; i++) {
        DC_CTX *ctx = i == 0 ? plain : late;
        CHECK_EQ(do_op(ctx, DO_ADD, id, sizeof(id)), 0);
        CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);
        CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);
        CHECK_EQ(DC_CTX_remove_session(ctx, id, sizeof(id)), 0);
        CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), -1);
    }
    CHECKF(now_ms() - started < 1000, "a missing socket took %lld ms to fail", (long long)(now_ms() - started));
}

static void test_late_connect_after_server_appears(void)
{
    char path[200], target[220];
    DC_CTX *plain, *late;
    struct fake *f;
    unsigned char id[32];
    snprintf(path, sizeof(path), "%s/later.sock", test_dir());
    snprintf(target, sizeof(target), "UNIX:%s", path);
    make_id(id, sizeof(id));
    plain = MUST_CTX(target, 0);
    late = MUST_CTX(target, P | LATE);
    CHECK_EQ(DC_CTX_has_session(late, id, sizeof(id)), -1);
    CHECK_EQ(DC_CTX_has_session(plain, id, sizeof(id)), -1);
    f = fake_start_any(path, 0);
    CHECK_EQ(do_op(late, DO_ADD, id, sizeof(id)), 1);
    CHECK_EQ(DC_CTX_has_session(late, id, sizeof(id)), 1);
    CHECK_EQ(DC_CTX_has_session(plain, id, sizeof(id)), 1);
    CHECK_EQ(DC_CTX_remove_session(plain, id, sizeof(id)), 1);
    EXPECT_ACCEPTS(f, 3);
    FAKE_CLEAN(f);
}

static void test_new_no_network(void)
{
    struct fake *f = fake_start();
    MUST_CTX(f->address, 0);
    MUST_CTX(f->address, P | LATE);
    MUST_CTX(f->address, P | PIDCHECK | RETRY | LATE);
    MUST_CTX(f->address, LATE);
    MUST_CTX(f->address, PIDCHECK | RETRY);   /* the PERSISTENT_* modifiers alone do not make it persistent */
    EXPECT_ACCEPTS(f, 0);
    MUST_CTX(f->address, P);
    EXPECT_ACCEPTS(f, 1);
    MUST_CTX(f->address, P | PIDCHECK | RETRY);
    EXPECT_ACCEPTS(f, 2);
    CHECK_EQ(fake_record_count(f), 0);
}

static void test_ip_targets(void)
{
    struct fake *f = fake_start_any(NULL, 1);
    char target[200];
    const char *port = strrchr(f->address, ':') + 1;
    DC_CTX *ctx;
    int closed_port;
    for (int i = 0; i < 3; i++) {
        if (i == 0)
            snprintf(target, sizeof(target), "%s", f->address);
        else if (i == 1)
            snprintf(target, sizeof(target), "IPv4:127.0.0.1:%s", port);
        else
            snprintf(target, sizeof(target), "IP:localhost:%s", port);
        ctx = MUST_CTX(target, P);
        small_round(ctx, 100, target, 0);
        small_round(ctx, 5000, target, 1);
        free_ctx_now(ctx);
        ctx = MUST_CTX(target, 0);
        small_round(ctx, 100, target, 0);
        free_ctx_now(ctx);
    }
    FAKE_CLEAN(f);
    /* IPv6, when the system has a loopback for it. */
    {
        struct fake *f6 = fake_start_any(NULL, 2);
        if (f6 != NULL) {
            ctx = MUST_CTX(f6->address, P);
            small_round(ctx, 3000, f6->address, 0);
            free_ctx_now(ctx);
            FAKE_CLEAN(f6);
        }
    }
    /* A host name that does not resolve (.invalid never does). */
    CHECK(DC_CTX_new("IP:distcache-test.invalid:9001", 0) == NULL);
    /* A TCP port where nothing listens: PERSISTENT fails at once; otherwise operations fail. */
    {
        struct sockaddr_in sin;
        socklen_t length = sizeof(sin);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(fd >= 0);
        CHECK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
        CHECK(getsockname(fd, (struct sockaddr *)&sin, &length) == 0);
        closed_port = ntohs(sin.sin_port);
        close(fd);
    }
    snprintf(target, sizeof(target), "IP:127.0.0.1:%d", closed_port);
    CHECK(DC_CTX_new(target, P) == NULL);
    ctx = MUST_CTX(target, 0);
    {
        unsigned char id[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), -1);
    }
}

/* ==== Tests: every function against the real servers ==== */

static void functions_against(const char *variable)
{
    const char *target = need_env(variable);
    static const unsigned int sizes[] = { 5, 6, 100, 2008, 2009, 2047, 2048, 2049, 4096, 4097, 20000 };
    for (size_t i = 0; i < FLAG_SET_COUNT; i++) {
        DC_CTX *ctx = MUST_CTX(target, flag_sets[i]);
        for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++)
            full_round(ctx, 32, sizes[j], flag_sets[i]);
        full_round(ctx, 1, 5, flag_sets[i]);
        full_round(ctx, LARGEST_ID, 5, flag_sets[i]);
        /* The largest session that fits in one message: id 64 bytes, data 32768 - 8 - 64. */
        full_round(ctx, LARGEST_ID, LARGEST_SESSION, flag_sets[i]);
        full_round(ctx, 32, MESSAGE_MAX - 8 - 32, flag_sets[i]);
        free_ctx_now(ctx);
    }
}

static void test_server_functions(void)
{
    functions_against("DISTCACHE_TEST_SERVER");
}

static void test_proxy_functions(void)
{
    functions_against("DISTCACHE_TEST_PROXY");
}

/* The real server refuses what the protocol refuses; the library reports 0, never a crash. */
static void test_server_refusals(void)
{
    const char *target = need_env("DISTCACHE_TEST_SERVER");
    DC_CTX *ctx = MUST_CTX(target, P);
    unsigned char id[LARGEST_ID + 1], data[16] = { 0 };
    make_id(id, sizeof(id));
    CHECK_EQ(DC_CTX_add_session(ctx, id, LARGEST_ID + 1, data, sizeof(data), 600000), 0);   /* id over 64: 103 */
    CHECK_EQ(DC_CTX_has_session(ctx, id, LARGEST_ID + 1), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, 32, data, sizeof(data), 604800001UL), 0);           /* over 7 days: 102 */
    CHECK_EQ(DC_CTX_has_session(ctx, id, 32), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, 32, data, sizeof(data), 604800000UL), 1);           /* 7 days exactly */
    CHECK_EQ(DC_CTX_remove_session(ctx, id, 32), 1);
    /* The connection is still good after the refusals. */
    small_round(ctx, 300, "after refusals", 0);
}

/* ==== Tests: get and reget ==== */

struct reget_args {
    DC_CTX *ctx;
    const unsigned char *id;
    int result;
};

static void *reget_thread(void *p)
{
    struct reget_args *a = p;
    unsigned char buf[256];
    unsigned int used = 0;
    a->result = DC_CTX_reget_session(a->ctx, a->id, 32, buf, sizeof(buf), &used);
    return NULL;
}

static void test_get_buffer_rules(void)
{
    struct fake *f = fake_start();
    DC_CTX *ctx = MUST_CTX(f->address, P);
    unsigned char id[32], data[100], buf[256];
    unsigned int used;
    make_id(id, sizeof(id));
    make_data(data, sizeof(data), id, sizeof(id));
    CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 600000), 1);

    /* NULL storage: 1 and the full length. */
    used = 0;
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), NULL, 0, &used), 1);
    CHECK_EQ(used, sizeof(data));
    used = 0;
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), NULL, 1000, &used), 1);
    CHECK_EQ(used, sizeof(data));
    /* A short buffer: result_size bytes copied, the byte after untouched, the full length reported. */
    memset(buf, 0xEE, sizeof(buf));
    used = 0;
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, 10, &used), 1);
    CHECK_EQ(used, sizeof(data));
    CHECK(memcmp(buf, data, 10) == 0);
    CHECK_EQ(buf[10], 0xEE);
    /* A zero-sized buffer copies nothing. */
    memset(buf, 0xEE, sizeof(buf));
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, 0, &used), 1);
    CHECK_EQ(buf[0], 0xEE);
    /* An exact buffer. */
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(data), &used), 1);
    CHECK(memcmp(buf, data, sizeof(data)) == 0 && buf[sizeof(data)] == 0xEE);
    /* result_used NULL: no crash. */
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), NULL), 1);
    EXPECT_ACCEPTS(f, 1);
    FAKE_CLEAN(f);
}

static void test_reget_rules(void)
{
    struct fake *f = fake_start();
    DC_CTX *ctx = MUST_CTX(f->address, P), *other = MUST_CTX(f->address, P), *third;
    unsigned char id[32], id2[32], data[100], buf[256];
    unsigned int used;
    size_t before;
    struct reget_args *args = test_alloc(sizeof(*args));
    make_id(id, sizeof(id));
    make_id(id2, sizeof(id2));
    make_data(data, sizeof(data), id, sizeof(id));
    CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 600000), 1);
    CHECK_EQ(do_op(ctx, DO_ADD, id2, sizeof(id2)), 1);

    /* Nothing to hand back before any get. */
    CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);

    /* get into a short buffer, then reget into a big one: the whole session, without the network. */
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, 10, &used), 1);
    before = fake_record_count(f);
    memset(buf, 0xEE, sizeof(buf));
    used = 0;
    CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
    CHECK_EQ(used, sizeof(data));
    CHECK(memcmp(buf, data, sizeof(data)) == 0 && buf[sizeof(data)] == 0xEE);
    used = 0;
    CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), NULL, 0, &used), 1);
    CHECK_EQ(used, sizeof(data));
    memset(buf, 0xEE, sizeof(buf));
    CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, 7, &used), 1);
    CHECK(memcmp(buf, data, 7) == 0 && buf[7] == 0xEE && used == sizeof(data));
    sleep_ms(20);
    CHECK_EQ(fake_record_count(f), before);

    /* Another id, a shorter or longer prefix of it. */
    CHECK_EQ(DC_CTX_reget_session(ctx, id2, sizeof(id2), buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id) - 1, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_reget_session(ctx, NULL, sizeof(id), buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_reget_session(ctx, id, 0, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_reget_session(NULL, id, sizeof(id), buf, sizeof(buf), &used), 0);

    /* Another context. */
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
    CHECK_EQ(DC_CTX_reget_session(other, id, sizeof(id), buf, sizeof(buf), &used), 0);

    /* Another thread; the thread that did the get still can. */
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
    args->ctx = ctx;
    args->id = id;
    args->result = -99;
    run_threads(1, reget_thread, args, sizeof(*args));
    CHECK_EQ(args->result, 0);
    CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);

    /* After any other operation, on this context or another one. */
    for (int op = 0; op < 5; op++) {
        unsigned char fresh[32];
        make_id(fresh, sizeof(fresh));
        CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
        switch (op) {
        case 0:
            CHECK_EQ(do_op(ctx, DO_ADD, fresh, sizeof(fresh)), 1);
            break;
        case 1:
            CHECK_EQ(do_op(ctx, DO_REMOVE, fresh, sizeof(fresh)), 0);
            break;
        case 2:
            CHECK_EQ(do_op(ctx, DO_HAVE, id, sizeof(id)), 1);
            break;
        case 3:
            CHECK_EQ(do_op(ctx, DO_GET, fresh, sizeof(fresh)), 0);   /* a missed get */
            break;
        default:
            CHECK_EQ(do_op(other, DO_HAVE, id, sizeof(id)), 1);      /* on another context */
            break;
        }
        CHECKF(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used) == 0,
               "reget succeeded after %s", op == 4 ? "an operation on another context" : op_names[op]);
    }

    /* A get of another id replaces what is remembered. */
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
    CHECK_EQ(DC_CTX_get_session(ctx, id2, sizeof(id2), buf, sizeof(buf), &used), 1);
    CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_reget_session(ctx, id2, sizeof(id2), buf, sizeof(buf), &used), 1);
    CHECK_EQ(used, 16);

    /* A freed context's memory: a new context (perhaps at the same address) has nothing to hand back. */
    CHECK_EQ(DC_CTX_get_session(other, id, sizeof(id), buf, sizeof(buf), &used), 1);
    free_ctx_now(other);
    third = MUST_CTX(f->address, P);
    CHECK_EQ(DC_CTX_reget_session(third, id, sizeof(id), buf, sizeof(buf), &used), 0);
    FAKE_CLEAN(f);
}

static void test_short_session_is_miss(void)
{
    struct fake *f = fake_start();
    DC_CTX *ctx = MUST_CTX(f->address, P);
    unsigned char buf[64];
    unsigned int used;
    for (unsigned int len = 1; len <= 5; len++) {
        unsigned char id[32], data[5] = { 9, 8, 7, 6, 5 };
        make_id(id, sizeof(id));
        CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, len, 600000), 1);
        CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), 1);
        used = 12345;
        if (len < 5) {
            /* 1.5.1 reads any answer shorter than 5 bytes as a miss (NOTOK is one byte). */
            CHECKF(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used) == 0,
                   "a session of %u bytes read as a hit", len);
            CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);
        } else {
            CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
            CHECK_EQ(used, 5);
            CHECK(memcmp(buf, data, 5) == 0);
        }
    }
    FAKE_CLEAN(f);
}

/* ==== Tests: bad arguments and lifetimes ==== */

static void test_bad_arguments(void)
{
    static unsigned char data[MESSAGE_MAX + 8];
    struct fake *f = fake_start();
    DC_CTX *ctx = MUST_CTX(f->address, P);
    unsigned char id[LARGEST_ID], buf[64];
    unsigned int used = 0;
    size_t before;
    make_id(id, sizeof(id));
    memset(data, 0x77, sizeof(data));
    before = fake_record_count(f);

    /* NULL context */
    CHECK_EQ(DC_CTX_add_session(NULL, id, 32, data, 10, 600000), 0);
    CHECK_EQ(DC_CTX_get_session(NULL, id, 32, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_reget_session(NULL, id, 32, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_remove_session(NULL, id, 32), 0);
    CHECK_EQ(DC_CTX_has_session(NULL, id, 32), -1);
    /* NULL id, zero-length id */
    CHECK_EQ(DC_CTX_add_session(ctx, NULL, 32, data, 10, 600000), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, 0, data, 10, 600000), 0);
    CHECK_EQ(DC_CTX_get_session(ctx, NULL, 32, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_get_session(ctx, id, 0, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_reget_session(ctx, NULL, 32, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_reget_session(ctx, id, 0, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_remove_session(ctx, NULL, 32), 0);
    CHECK_EQ(DC_CTX_remove_session(ctx, id, 0), 0);
    CHECK_EQ(DC_CTX_has_session(ctx, NULL, 32), -1);
    CHECK_EQ(DC_CTX_has_session(ctx, id, 0), -1);
    /* NULL session, empty session */
    CHECK_EQ(DC_CTX_add_session(ctx, id, 32, NULL, 10, 600000), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, 32, data, 0, 600000), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, 32, NULL, 0, 600000), 0);
    /* A payload over 32768 bytes (8 + id + data) */
    CHECK_EQ(DC_CTX_add_session(ctx, id, LARGEST_ID, data, LARGEST_SESSION + 1, 600000), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, 32, data, MESSAGE_MAX - 8 - 32 + 1, 600000), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, 1, data, MESSAGE_MAX, 600000), 0);
    /* Lengths whose sum overflows 32 bits, and ids longer than a message: refused before reading them. */
    CHECK_EQ(DC_CTX_add_session(ctx, id, 0x80000000u, data, 0x80000000u, 600000), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, 32, data, 0xFFFFFFFFu, 600000), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, 0xFFFFFFFFu, data, 10, 600000), 0);
    CHECK_EQ(DC_CTX_get_session(ctx, id, 0xFFFFFFFFu, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_reget_session(ctx, id, 0xFFFFFFFFu, buf, sizeof(buf), &used), 0);
    CHECK_EQ(DC_CTX_remove_session(ctx, id, MESSAGE_MAX + 1), 0);
    CHECK_EQ(DC_CTX_has_session(ctx, id, MESSAGE_MAX + 1), -1);
    sleep_ms(20);
    CHECK_EQ(fake_record_count(f), before);

    /* The largest payload goes out; the fake server (like dc_server) then refuses ids over 64 bytes. */
    CHECK_EQ(DC_CTX_add_session(ctx, id, 32, data, MESSAGE_MAX - 8 - 32, 600000), 1);
    CHECK_EQ(fake_record_count(f), before + 1);
    CHECK_EQ(fake_record(f, before).len, MESSAGE_MAX);
    CHECK_EQ(DC_CTX_add_session(ctx, id, LARGEST_ID, data, LARGEST_SESSION, 600000), 1);
    CHECK_EQ(fake_record(f, before + 1).len, MESSAGE_MAX);
    /* The context still works. */
    small_round(ctx, 50, "after bad arguments", 0);
    EXPECT_ACCEPTS(f, 1);
    FAKE_CLEAN(f);
}

static void test_timeout_refused(void)
{
    struct fake *f = fake_start();
    DC_CTX *ctx;
    unsigned char id[32], data[10] = { 0 };
    static const unsigned long refused[] = { 0, 1, 100, 499, 500 };
    size_t before;
    set_env("DISTCACHE_MIN_SESSION_TIMEOUT_MS", "0");
    ctx = MUST_CTX(f->address, P);
    make_id(id, sizeof(id));
    before = fake_record_count(f);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        CHECKF(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), refused[i]) == 0,
               "an add with a lifetime of %lu ms (floor 0) succeeded", refused[i]);
#if ULONG_MAX > 0xFFFFFFFFUL
    CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 0x100000000UL), 0);
    CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), ULONG_MAX), 0);
#endif
    sleep_ms(20);
    CHECK_EQ(fake_record_count(f), before);
    CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 501), 1);
    CHECK_EQ(fake_last_add_timeout(f), 501);
    CHECK_EQ(fake_record_count(f), before + 1);
    free_ctx_now(ctx);

#if ULONG_MAX > 0xFFFFFFFFUL
    /* With the default floor too: the floor only lifts short lifetimes. */
    set_env("DISTCACHE_MIN_SESSION_TIMEOUT_MS", NULL);
    ctx = MUST_CTX(f->address, 0);
    make_id(id, sizeof(id));
    CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 0x100000000UL), 0);
    /* 0xFFFFFFFF fits the field and goes out; the server (like dc_server) refuses it: over 7 days. */
    CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 0xFFFFFFFFUL), 0);
    CHECK_EQ(fake_last_add_timeout(f), 0xFFFFFFFFUL);
    CHECK_EQ(fake_record_count(f), before + 2);
#endif
    FAKE_CLEAN(f);
}

/* The lifetime the fake server receives for an add of timeout ms, with the floor variable set to value. */
static uint32_t lifetime_sent(struct fake *f, const char *value, unsigned long timeout)
{
    DC_CTX *ctx;
    unsigned char id[32], data[10] = { 1 };
    uint32_t sent;
    set_env("DISTCACHE_MIN_SESSION_TIMEOUT_MS", value);
    ctx = MUST_CTX(f->address, 0);
    make_id(id, sizeof(id));
    CHECKF(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), timeout) == 1,
           "DISTCACHE_MIN_SESSION_TIMEOUT_MS=%s: an add of %lu ms failed", value ? value : "(unset)", timeout);
    sent = fake_last_add_timeout(f);
    free_ctx_now(ctx);
    return sent;
}

static void test_lifetime_floor(void)
{
    struct fake *f = fake_start();
    /* Unset: the default floor of 300000 ms (Apache's mod_socache_dc passes 0-999 ms). */
    CHECK_EQ(lifetime_sent(f, NULL, 100), 300000);
    CHECK_EQ(lifetime_sent(f, NULL, 0), 300000);
    CHECK_EQ(lifetime_sent(f, NULL, 999), 300000);
    CHECK_EQ(lifetime_sent(f, NULL, 300000), 300000);
    CHECK_EQ(lifetime_sent(f, NULL, 400000), 400000);
    CHECK_EQ(lifetime_sent(f, "", 100), 300000);
    /* 5000 */
    CHECK_EQ(lifetime_sent(f, "5000", 100), 5000);
    CHECK_EQ(lifetime_sent(f, "5000", 8000), 8000);
    CHECK_EQ(lifetime_sent(f, "5000", 5000), 5000);
    /* 0: no floor, 1.5.1's behaviour */
    CHECK_EQ(lifetime_sent(f, "0", 600), 600);
    CHECK_EQ(lifetime_sent(f, "0", 501), 501);
    /* The largest floor, 7 days */
    CHECK_EQ(lifetime_sent(f, "604800000", 100), 604800000);
    FAKE_CLEAN(f);
}

static void test_lifetime_floor_invalid(void)
{
    struct fake *f = fake_start();
    static const char *const invalid[] = { "abc", "-1", "999999999999", "99999999999999999999999", "5000ms",
                                           "604800001", "+5000", "5e3", "0x1000" };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        uint32_t sent = lifetime_sent(f, invalid[i], 100);
        CHECKF(sent == 300000, "DISTCACHE_MIN_SESSION_TIMEOUT_MS=%s: an add of 100 ms went out as %u, not the "
               "default 300000", invalid[i], sent);
    }
    FAKE_CLEAN(f);
}

static void test_lifetime_real_server(void)
{
    const char *target = need_env("DISTCACHE_TEST_SERVER");
    DC_CTX *floor_ctx, *plain_ctx;
    unsigned char short_id[32], plain_id[32], data[200], buf[256];
    unsigned int used = 0;
    set_env("DISTCACHE_MIN_SESSION_TIMEOUT_MS", NULL);
    floor_ctx = MUST_CTX(target, 0);
    set_env("DISTCACHE_MIN_SESSION_TIMEOUT_MS", "0");
    plain_ctx = MUST_CTX(target, 0);
    make_id(short_id, sizeof(short_id));
    make_id(plain_id, sizeof(plain_id));
    make_data(data, sizeof(data), short_id, sizeof(short_id));
    /* The mod_socache_dc case: 100 ms, lifted to the default floor. */
    CHECK_EQ(DC_CTX_add_session(floor_ctx, short_id, sizeof(short_id), data, sizeof(data), 100), 1);
    /* Without a floor, 600 ms is 600 ms. */
    CHECK_EQ(DC_CTX_add_session(plain_ctx, plain_id, sizeof(plain_id), data, sizeof(data), 600), 1);
    sleep_ms(1500);
    CHECK_EQ(DC_CTX_get_session(floor_ctx, short_id, sizeof(short_id), buf, sizeof(buf), &used), 1);
    CHECK(used == sizeof(data) && memcmp(buf, data, sizeof(data)) == 0);
    CHECK_EQ(DC_CTX_has_session(plain_ctx, plain_id, sizeof(plain_id)), 0);
    CHECK_EQ(DC_CTX_remove_session(floor_ctx, short_id, sizeof(short_id)), 1);
}

/* ==== Tests: the time limit ==== */

/* Runs one operation and checks that it fails after between low and high ms. */
static void expect_bounded(DC_CTX *ctx, int which, int64_t low, int64_t high, const char *what)
{
    unsigned char id[32];
    int64_t started, took;
    int r;
    make_id(id, sizeof(id));
    started = now_ms();
    r = do_op(ctx, which, id, sizeof(id));
    took = now_ms() - started;
    CHECKF(r == failure_value(which), "%s: %s returned %d", what, op_names[which], r);
    CHECKF(took >= low && took < high, "%s: %s failed after %lld ms, not %lld to %lld", what, op_names[which],
           (long long)took, (long long)low, (long long)high);
}

static void test_bound_stall(void)
{
    struct fake *f = fake_start();
    static const unsigned int flags[] = { 0, P, P | RETRY, P | LATE };
    char what[64];
    set_env("DISTCACHE_TIMEOUT_MS", "300");
    fake_set(f, B_STALL, -1);
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        DC_CTX *ctx = MUST_CTX(f->address, flags[i]);
        snprintf(what, sizeof(what), "stalled server, flags %u", flags[i]);
        for (int op = 0; op < 4; op++)
            expect_bounded(ctx, op, 250, 2000, what);
        free_ctx_now(ctx);
    }
    /* Once the server answers again, so does the library. */
    fake_set(f, B_NORMAL, 0);
    {
        DC_CTX *ctx = MUST_CTX(f->address, P);
        small_round(ctx, 100, "after the stall", 0);
    }
    FAKE_CLEAN(f);
}

static void test_bound_stall_mid_answer(void)
{
    struct fake *f = fake_start();
    static const enum behaviour stalls[] = { B_STALL_MID_HEADER, B_STALL_MID_PAYLOAD };
    char what[96];
    set_env("DISTCACHE_TIMEOUT_MS", "300");
    for (size_t s = 0; s < 2; s++) {
        fake_set(f, stalls[s], -1);
        for (int persistent = 0; persistent < 2; persistent++) {
            DC_CTX *ctx = MUST_CTX(f->address, persistent ? P : 0);
            snprintf(what, sizeof(what), "%s, flags %u", behaviour_name(stalls[s]), persistent ? P : 0);
            expect_bounded(ctx, DO_HAVE, 250, 2000, what);
            expect_bounded(ctx, DO_GET, 250, 2000, what);
            free_ctx_now(ctx);
        }
    }
    /* A trickled answer that takes longer than the limit fails too. */
    {
        DC_CTX *ctx = MUST_CTX(f->address, P);
        unsigned char id[32];
        make_id(id, sizeof(id));
        fake_set(f, B_NORMAL, 0);
        CHECK_EQ(do_op(ctx, DO_ADD, id, sizeof(id)), 1);
        set_env("DISTCACHE_TIMEOUT_MS", "20");
        {
            DC_CTX *quick = MUST_CTX(f->address, P);
            unsigned char buf[64];
            unsigned int used;
            fake_set(f, B_TRICKLE, 1);   /* 30 bytes at 1 ms a byte, at least 30 ms */
            CHECK_EQ(DC_CTX_get_session(quick, id, sizeof(id), buf, sizeof(buf), &used), 0);
        }
        CHECK_EQ(do_op(ctx, DO_HAVE, id, sizeof(id)), 1);
    }
    FAKE_CLEAN(f);
}

static void test_bound_invalid_env(void)
{
    struct fake *f = fake_start();
    static const char *const invalid[] = { "abc", "0", "-1", "3600001" };
    char what[96];
    fake_set(f, B_STALL, -1);
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        DC_CTX *ctx;
        set_env("DISTCACHE_TIMEOUT_MS", invalid[i]);
        ctx = MUST_CTX(f->address, 0);
        snprintf(what, sizeof(what), "DISTCACHE_TIMEOUT_MS=%s (the default, 1000 ms)", invalid[i]);
        expect_bounded(ctx, DO_HAVE, 950, 2500, what);
        free_ctx_now(ctx);
    }
    set_env("DISTCACHE_TIMEOUT_MS", "150");
    {
        DC_CTX *ctx = MUST_CTX(f->address, 0);
        expect_bounded(ctx, DO_HAVE, 120, 900, "DISTCACHE_TIMEOUT_MS=150");
        /* Read by DC_CTX_new: a later change does not reach an existing context. */
        set_env("DISTCACHE_TIMEOUT_MS", "5000");
        expect_bounded(ctx, DO_HAVE, 120, 900, "DISTCACHE_TIMEOUT_MS=150, then changed to 5000");
    }
    FAKE_CLEAN(f);
}

static void close_fd(void *p)
{
    close((int)(intptr_t)p);
}

/* A listener whose backlog is full (it never accepts): connecting waits, bounded by the time limit. */
static void test_connect_bound(void)
{
    struct sockaddr_un sun;
    char target[200];
    int listener, filled = 0;
    DC_CTX *ctx;
    int64_t started;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/full.sock", test_dir());
    snprintf(target, sizeof(target), "UNIX:%s", sun.sun_path);
    listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(listener >= 0);
    defer(close_fd, (void *)(intptr_t)listener);
    CHECK(bind(listener, (struct sockaddr *)&sun, sizeof(sun)) == 0);
    CHECK(listen(listener, 0) == 0);
    for (int i = 0; i < 64; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
            int error = errno;
            close(fd);
            CHECKF(error == EAGAIN, "connect: %s", strerror(error));
            filled = 1;
            break;
        }
        defer(close_fd, (void *)(intptr_t)fd);
    }
    CHECKF(filled, "could not fill the listener's backlog");
    set_env("DISTCACHE_TIMEOUT_MS", "300");
    started = now_ms();
    CHECK(DC_CTX_new(target, P) == NULL);
    CHECKF(now_ms() - started >= 250 && now_ms() - started < 2000, "DC_CTX_new gave up after %lld ms",
           (long long)(now_ms() - started));
    ctx = MUST_CTX(target, 0);
    expect_bounded(ctx, DO_HAVE, 250, 2000, "a full backlog, flags 0");
    ctx = MUST_CTX(target, P | LATE);
    expect_bounded(ctx, DO_ADD, 250, 2000, "a full backlog, flags P|LATE");
}

/* ==== Tests: checking answers ==== */

static const enum behaviour bad_answers[] = {
    B_WRONG_UID, B_WRONG_OP, B_NOT_RESPONSE, B_BAD_VERSION, B_BAD_CLASS, B_BAD_COMPLETE, B_BAD_LENGTH,
    B_SHORT_NONFINAL, B_OVERLONG, B_CLOSE_BEFORE, B_CLOSE_MID_HEADER, B_CLOSE_MID_PAYLOAD,
};

static void test_answer_checks(void)
{
    struct fake *f = fake_start();
    static const unsigned int flags[] = { 0, P, P | LATE, P | PIDCHECK };
    unsigned char known[32];
    make_id(known, sizeof(known));
    {
        DC_CTX *ctx = MUST_CTX(f->address, 0);
        CHECK_EQ(do_op(ctx, DO_ADD, known, sizeof(known)), 1);
        free_ctx_now(ctx);
    }
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        DC_CTX *ctx = MUST_CTX(f->address, flags[i]);
        for (size_t b = 0; b < sizeof(bad_answers) / sizeof(bad_answers[0]); b++) {
            for (int op = 0; op < 4; op++) {
                unsigned char id[32];
                unsigned long accepts;
                int r;
                make_id(id, sizeof(id));
                /* A connection to spoil (for PERSISTENT contexts), then the spoiled answer. */
                CHECK_EQ(do_op(ctx, DO_HAVE, known, sizeof(known)), 1);
                accepts = fake_accepts(f);
                fake_set(f, bad_answers[b], 1);
                r = do_op(ctx, op, op == DO_ADD ? id : known, sizeof(id));
                CHECKF(r == failure_value(op), "flags %u, %s: %s returned %d", flags[i],
                       behaviour_name(bad_answers[b]), op_names[op], r);
                /* The next operation works, on a fresh connection. */
                r = do_op(ctx, DO_HAVE, known, sizeof(known));
                CHECKF(r == 1, "flags %u: after %s on %s, the next has returned %d", flags[i],
                       behaviour_name(bad_answers[b]), op_names[op], r);
                if (flags[i] & P)
                    CHECKF(fake_accepts(f) == accepts + 1, "flags %u: after %s on %s, %lu new connections, not "
                           "one", flags[i], behaviour_name(bad_answers[b]), op_names[op],
                           fake_accepts(f) - accepts);
            }
        }
        free_ctx_now(ctx);
    }
    FAKE_CLEAN(f);
}

static void test_answers_accepted(void)
{
    struct fake *f = fake_start();
    DC_CTX *ctx = MUST_CTX(f->address, P);
    unsigned char id[32], data[300], buf[MESSAGE_MAX + 16];
    unsigned int used = 0;
    unsigned long accepts;
    make_id(id, sizeof(id));
    make_data(data, sizeof(data), id, sizeof(id));
    CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 600000), 1);

    /* Any patch level of version 0x0011. */
    fake_set(f, B_PATCH_LEVEL, 2);
    CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), 1);
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
    CHECK(used == sizeof(data) && memcmp(buf, data, sizeof(data)) == 0);

    /* An answer trickled a byte at a time. */
    fake_set(f, B_TRICKLE, 2);
    CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), 1);
    used = 0;
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
    CHECK(used == sizeof(data) && memcmp(buf, data, sizeof(data)) == 0);

    /* The largest legal answer: 16 full frames. */
    fake_set(f, B_BIG_ANSWER, 1);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
    CHECK_EQ(used, MESSAGE_MAX);
    for (size_t i = 0; i < MESSAGE_MAX; i++)
        CHECKF(buf[i] == (unsigned char)(i * 7 + 3), "byte %zu of a 32768-byte answer differs", i);
    CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), NULL, 0, &used), 1);
    CHECK_EQ(used, MESSAGE_MAX);
    EXPECT_ACCEPTS(f, 1);

    /* Bytes nobody asked for after an answer: the answer's framing cannot be trusted (a length or a complete
     * flag may have cut it short), so the call fails and the connection goes; the next call works. */
    fake_set(f, B_EXTRA_AFTER, 1);
    CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), -1);
    CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), 1);
    CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 1);
    CHECK(used == sizeof(data) && memcmp(buf, data, sizeof(data)) == 0);
    EXPECT_ACCEPTS(f, 2);

    /* A late answer (after the time limit) is never read as the answer to a later request. */
    set_env("DISTCACHE_TIMEOUT_MS", "200");
    {
        DC_CTX *quick = MUST_CTX(f->address, P);
        unsigned char absent[32];
        make_id(absent, sizeof(absent));
        EXPECT_ACCEPTS(f, 3);   /* quick's first connection, made by DC_CTX_new: the fake accepts it in its own time */
        accepts = fake_accepts(f);
        fake_set_delay(f, 500);
        fake_set(f, B_DELAY, 1);
        CHECK_EQ(DC_CTX_has_session(quick, id, sizeof(id)), -1);
        sleep_ms(400);   /* the late "yes" has arrived by now */
        CHECK_EQ(DC_CTX_has_session(quick, absent, sizeof(absent)), 0);
        CHECK_EQ(DC_CTX_has_session(quick, id, sizeof(id)), 1);
        CHECK_EQ(fake_accepts(f), accepts + 1);
    }
    FAKE_CLEAN(f);
}

/* ==== Tests: uids ==== */

static void test_uids(void)
{
    struct fake *f = fake_start();
    DC_CTX *a = MUST_CTX(f->address, 0), *b = MUST_CTX(f->address, P), *c = MUST_CTX(f->address, P | LATE);
    DC_CTX *all[3];
    unsigned char id[32], buf[64], data[10] = { 1 };
    unsigned int used;
    size_t first = fake_record_count(f), count;
    int first_test = first_test_in_process;
    all[0] = a;
    all[1] = b;
    all[2] = c;
    make_id(id, sizeof(id));
    CHECK_EQ(do_op(a, DO_ADD, id, sizeof(id)), 1);
    for (int i = 0; i < 24; i++) {
        DC_CTX *ctx = all[i % 3];
        int op = (i / 3) % 4;
        if (op == DO_ADD || op == DO_REMOVE)
            op = DO_GET;
        CHECK(do_op(ctx, op, id, sizeof(id)) == 1);
        /* Neither a reget nor a refused call is a request. */
        CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), op == DO_GET);
        CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), ULONG_MAX), 0);
    }
    CHECK_EQ(do_op(c, DO_REMOVE, id, sizeof(id)), 1);
    count = fake_record_count(f) - first;
    CHECK_EQ(count, 26);
    for (size_t i = 1; i < count; i++) {
        uint32_t previous = fake_record(f, first + i - 1).uid, uid = fake_record(f, first + i).uid;
        CHECKF(uid == previous + 1, "request %zu had uid %u after %u", i, uid, previous);
    }
    /* 1.5.1's counter starts at 1: visible when this is the first test in the process. */
    if (first_test)
        CHECK_EQ(fake_record(f, first).uid, 1);
    FAKE_CLEAN(f);
}

struct uid_worker {
    DC_CTX *ctx;
    int rounds;
};

static void *uid_worker_main(void *p)
{
    struct uid_worker *w = p;
    for (int i = 0; i < w->rounds; i++)
        small_round(w->ctx, 20, "uid thread", i);
    return NULL;
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void test_uids_threads(void)
{
    struct fake *f = fake_start();
    DC_CTX *plain = MUST_CTX(f->address, 0), *kept = MUST_CTX(f->address, P);
    struct uid_worker *workers = test_alloc(8 * sizeof(*workers));
    size_t first = fake_record_count(f), count;
    uint32_t *uids;
    int rounds = under_valgrind ? 10 : 40;
    for (int i = 0; i < 8; i++) {
        workers[i].ctx = i % 2 ? kept : plain;
        workers[i].rounds = rounds;
    }
    run_threads(8, uid_worker_main, workers, sizeof(workers[0]));
    count = fake_record_count(f) - first;
    CHECK(count >= (size_t)8 * (size_t)rounds * 4);
    uids = test_alloc(count * sizeof(*uids));
    for (size_t i = 0; i < count; i++)
        uids[i] = fake_record(f, first + i).uid;
    qsort(uids, count, sizeof(*uids), compare_u32);
    for (size_t i = 1; i < count; i++)
        CHECKF(uids[i] == uids[i - 1] + 1, "uids from 8 threads: %u follows %u (each must be used once)",
               uids[i], uids[i - 1]);
    FAKE_CLEAN(f);
}

/* ==== Tests: connections ==== */

static void test_connections_per_operation(void)
{
    struct fake *f = fake_start();
    DC_CTX *ctx = MUST_CTX(f->address, 0);
    unsigned char id[32];
    size_t first = fake_record_count(f);
    make_id(id, sizeof(id));
    EXPECT_ACCEPTS(f, 0);
    for (int i = 0; i < 10; i++) {
        static const int sequence[] = { DO_ADD, DO_GET, DO_HAVE, DO_REMOVE, DO_HAVE };
        static const int expected[] = { 1, 1, 1, 1, 0 };
        CHECK_EQ(do_op(ctx, sequence[i % 5], id, sizeof(id)), expected[i % 5]);
    }
    EXPECT_ACCEPTS(f, 10);
    for (size_t i = 1; i < 10; i++)
        CHECK(fake_record(f, first + i).conn != fake_record(f, first + i - 1).conn);
    /* Each connection is closed after its operation. */
    {
        int open = fake_wait_open_at_most(f, 0);
        CHECKF(open == 0, "%d connections stayed open after operations with flags 0", open);
    }
    FAKE_CLEAN(f);
}

static void test_connections_persistent(void)
{
    struct fake *f = fake_start();
    static const unsigned int flags[] = { P, P | PIDCHECK, P | RETRY };
    unsigned long expected = 0;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        DC_CTX *ctx = MUST_CTX(f->address, flags[i]);
        size_t first;
        EXPECT_ACCEPTS(f, ++expected);
        first = fake_record_count(f);
        for (int r = 0; r < 10; r++)
            small_round(ctx, 100, "persistent", r);
        EXPECT_ACCEPTS(f, expected);
        for (size_t k = first + 1; k < fake_record_count(f); k++)
            CHECK(fake_record(f, k).conn == fake_record(f, first).conn);
        free_ctx_now(ctx);
    }
    FAKE_CLEAN(f);
}

static void test_connections_late(void)
{
    struct fake *f = fake_start();
    DC_CTX *ctx = MUST_CTX(f->address, P | LATE);
    unsigned char id[32];
    make_id(id, sizeof(id));
    EXPECT_ACCEPTS(f, 0);
    CHECK_EQ(do_op(ctx, DO_HAVE, id, sizeof(id)), 0);
    EXPECT_ACCEPTS(f, 1);
    for (int r = 0; r < 10; r++)
        small_round(ctx, 100, "late", r);
    EXPECT_ACCEPTS(f, 1);
    FAKE_CLEAN(f);
}

/* Many contexts made and freed: every connection is closed, no descriptor is left behind. */
static void test_contexts_free_everything(void)
{
    struct fake *f = fake_start();
    int fds = count_fds();
    for (int i = 0; i < 100; i++) {
        DC_CTX *ctx = DC_CTX_new(f->address, i % 2 ? P : (P | LATE));
        unsigned char id[32];
        CHECK(ctx != NULL);
        make_id(id, sizeof(id));
        if (i % 3 == 0 && DC_CTX_has_session(ctx, id, sizeof(id)) != 0) {
            DC_CTX_free(ctx);
            FAIL("has on a fresh id");
        }
        DC_CTX_free(ctx);
    }
    {
        /* The fake server's ends (in this process too) close once it has seen the library's ends close. */
        int open = fake_wait_open_at_most(f, 0);
        CHECKF(open == 0, "%d connections stayed open after DC_CTX_free", open);
    }
    CHECK_EQ(count_fds(), fds);
    FAKE_CLEAN(f);
}

static void test_retry(void)
{
    struct fake *f = fake_start();
    static const unsigned int flags[] = { P | RETRY, P | RETRY | LATE, P | PIDCHECK | RETRY | LATE };
    unsigned long expected = 0;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        DC_CTX *ctx = MUST_CTX(f->address, flags[i]);
        unsigned char id[32], data[200], buf[256];
        unsigned int used = 0;
        make_id(id, sizeof(id));
        make_data(data, sizeof(data), id, sizeof(id));
        if (flags[i] & LATE)
            CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), 0);
        EXPECT_ACCEPTS(f, ++expected);
        for (int k = 0; k < 4; k++) {
            static const int order[] = { DO_ADD, DO_GET, DO_HAVE, DO_REMOVE };
            int op = order[k];
            size_t before = fake_record_count(f);
            int r;
            struct record first, second;
            fake_set(f, B_CLOSE_BEFORE, 1);
            switch (op) {
            case DO_ADD:
                r = DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 600000);
                break;
            case DO_GET:
                r = DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used);
                CHECK(r != 1 || (used == sizeof(data) && memcmp(buf, data, sizeof(data)) == 0));
                break;
            case DO_HAVE:
                r = DC_CTX_has_session(ctx, id, sizeof(id));
                break;
            default:
                r = DC_CTX_remove_session(ctx, id, sizeof(id));
                break;
            }
            CHECKF(r == 1, "flags %u: %s whose connection closed before the answer returned %d (RETRY resends "
                   "it once)", flags[i], op_names[op], r);
            CHECK_EQ(fake_record_count(f), before + 2);
            first = fake_record(f, before);
            second = fake_record(f, before + 1);
            CHECK(first.op == second.op && first.len == second.len
                  && memcmp(first.payload, second.payload, first.len) == 0);
            CHECK(first.conn != second.conn);
            EXPECT_ACCEPTS(f, ++expected);
        }
        /* Only once: a second failure fails the operation. */
        fake_set(f, B_CLOSE_BEFORE, 2);
        {
            size_t before = fake_record_count(f);
            CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), -1);
            CHECK_EQ(fake_record_count(f), before + 2);
        }
        expected += 1;   /* the resend's connection */
        CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), 0);
        EXPECT_ACCEPTS(f, ++expected);
        /* A broken answer is not a network failure: no resend. */
        fake_set(f, B_WRONG_UID, 1);
        {
            size_t before = fake_record_count(f);
            CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), -1);
            CHECK_EQ(fake_record_count(f), before + 1);
        }
        EXPECT_ACCEPTS(f, expected);
        free_ctx_now(ctx);
    }
    FAKE_CLEAN(f);
}

static void test_no_retry(void)
{
    struct fake *f = fake_start();
    static const unsigned int flags[] = { 0, P, P | LATE, P | PIDCHECK };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        DC_CTX *ctx = MUST_CTX(f->address, flags[i]);
        unsigned char id[32];
        make_id(id, sizeof(id));
        CHECK_EQ(do_op(ctx, DO_ADD, id, sizeof(id)), 1);
        for (int op = 0; op < 4; op++) {
            size_t before = fake_record_count(f);
            fake_set(f, B_CLOSE_BEFORE, 1);
            CHECKF(do_op(ctx, op, id, sizeof(id)) == failure_value(op), "flags %u: %s succeeded without RETRY",
                   flags[i], op_names[op]);
            CHECK_EQ(fake_record_count(f), before + 1);
            CHECK_EQ(do_op(ctx, DO_HAVE, id, sizeof(id)), 1);
        }
        free_ctx_now(ctx);
    }
    FAKE_CLEAN(f);
}

static void test_stale_idle_connection(void)
{
    struct fake *f = fake_start();
    static const unsigned int flags[] = { P, P | LATE, P | PIDCHECK };
    unsigned long expected = 0;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        DC_CTX *ctx = MUST_CTX(f->address, flags[i]);
        unsigned char id[32];
        make_id(id, sizeof(id));
        CHECK_EQ(do_op(ctx, DO_ADD, id, sizeof(id)), 1);
        EXPECT_ACCEPTS(f, ++expected);
        for (int k = 0; k < 5; k++) {
            static const int order[] = { DO_HAVE, DO_GET, DO_REMOVE, DO_ADD, DO_HAVE };
            int op = order[k];
            /* The server closes the idle connection (a restart, an idle timeout): the next operation notices
             * before sending and uses a new one, without RETRY and without failing. */
            fake_close_idle(f);
            CHECKF(do_op(ctx, op, id, sizeof(id)) == 1, "flags %u: %s on a connection the server had closed failed",
                   flags[i], op_names[op]);
            EXPECT_ACCEPTS(f, ++expected);
        }
        /* The server answers, then closes. */
        fake_set(f, B_CLOSE_AFTER, 1);
        CHECK_EQ(do_op(ctx, DO_HAVE, id, sizeof(id)), 1);
        sleep_ms(20);
        CHECK_EQ(do_op(ctx, DO_HAVE, id, sizeof(id)), 1);
        EXPECT_ACCEPTS(f, ++expected);
        CHECK_EQ(do_op(ctx, DO_REMOVE, id, sizeof(id)), 1);
        free_ctx_now(ctx);
    }
    FAKE_CLEAN(f);
}

/* ==== Tests: what a proxy without a server answers ==== */

static void test_disconnected(void)
{
    struct fake *f = fake_start();
    for (int persistent = 0; persistent < 2; persistent++) {
        DC_CTX *ctx = MUST_CTX(f->address, persistent ? P : 0);
        unsigned char id[32], buf[64];
        unsigned int used;
        make_id(id, sizeof(id));
        fake_set(f, B_DISCONNECTED, -1);
        CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), -1);
        CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);
        CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);
        CHECK_EQ(do_op(ctx, DO_ADD, id, sizeof(id)), 0);
        CHECK_EQ(DC_CTX_remove_session(ctx, id, sizeof(id)), 0);
        fake_set(f, B_NORMAL, 0);
        small_round(ctx, 64, "after DISCONNECTED", 0);
        free_ctx_now(ctx);
    }
    FAKE_CLEAN(f);
}

static void test_empty_answer(void)
{
    struct fake *f = fake_start();
    for (int persistent = 0; persistent < 2; persistent++) {
        DC_CTX *ctx = MUST_CTX(f->address, persistent ? P : 0);
        unsigned char id[32], buf[64];
        unsigned int used;
        make_id(id, sizeof(id));
        fake_set(f, B_EMPTY, -1);
        /* 1.5.1's dc_client without its server: the request failed, whatever the answer to it would be. */
        CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), -1);
        CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);
        CHECK_EQ(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);
        CHECK_EQ(do_op(ctx, DO_ADD, id, sizeof(id)), 0);
        CHECK_EQ(DC_CTX_remove_session(ctx, id, sizeof(id)), 0);
        fake_set(f, B_NORMAL, 0);
        small_round(ctx, 64, "after an empty answer", 0);
        free_ctx_now(ctx);
    }
    FAKE_CLEAN(f);
}

/* ==== Tests: fork ==== */

static int fork_rounds(void)
{
    return under_valgrind ? 100 : 200;
}

static void fork_against(const char *target, unsigned int flags)
{
    DC_CTX *ctx = MUST_CTX(target, flags);
    int rounds = fork_rounds(), status;
    char who[96];
    pid_t pid;
    small_round(ctx, 300, "parent before fork", 0);
    pid = fork_child();
    if (pid == 0) {
        snprintf(who, sizeof(who), "child, %s, flags %u", target, flags);
        for (int r = 0; r < rounds; r++)
            small_round(ctx, 100 + (unsigned int)(r * 37) % 3000, who, r);
        _exit(0);
    }
    snprintf(who, sizeof(who), "parent, %s, flags %u", target, flags);
    for (int r = 0; r < rounds; r++)
        small_round(ctx, 100 + (unsigned int)(r * 53) % 3000, who, r);
    status = wait_child(pid, 120000);
    CHECKF(status == 0, "%s, flags %u: the child exited with %d (see its message on standard error)", target, flags,
           status);
    small_round(ctx, 300, "parent after the child", 0);
    free_ctx_now(ctx);
}

static void test_fork_server(void)
{
    const char *target = need_env("DISTCACHE_TEST_SERVER");
    fork_against(target, 0);
    fork_against(target, P);
    fork_against(target, P | PIDCHECK | RETRY);
}

static void test_fork_proxy(void)
{
    const char *target = need_env("DISTCACHE_TEST_PROXY");
    fork_against(target, 0);
    fork_against(target, P);
    fork_against(target, P | LATE);
}


struct parked_worker {
    DC_CTX *ctx;
    int *release;
    int *ready;
};

static void *parked_worker_main(void *p)
{
    struct parked_worker *w = p;
    unsigned char id[32];
    make_id(id, sizeof(id));
    CHECK_EQ(DC_CTX_has_session(w->ctx, id, sizeof(id)), 0);
    __atomic_add_fetch(w->ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(w->release, __ATOMIC_SEQ_CST))
        sleep_ms(2);
    return NULL;
}

/* fork() while other threads that have used the library are alive: those threads do not exist in the child, so
 * their per-thread working memory (about 96 KB each) can only be freed by the library's fork handler. Under
 * valgrind the child's leak check shows it as definitely lost when it is not (the child then exits with 99). */
static void test_fork_frees_other_threads_memory(void)
{
    struct fake *f = fake_start();
    DC_CTX *ctx = MUST_CTX(f->address, P);
    struct parked_worker *workers = test_alloc(4 * sizeof(*workers));
    static int release, ready;
    struct thread_group *g;
    int64_t deadline = now_ms() + 10000;
    pid_t pid;
    int status;
    release = 0;
    ready = 0;
    for (int i = 0; i < 4; i++) {
        workers[i].ctx = ctx;
        workers[i].release = &release;
        workers[i].ready = &ready;
    }
    g = start_threads(4, parked_worker_main, workers, sizeof(*workers), &release);
    while (__atomic_load_n(&ready, __ATOMIC_SEQ_CST) < 4 && now_ms() < deadline)
        sleep_ms(2);
    CHECK_EQ(__atomic_load_n(&ready, __ATOMIC_SEQ_CST), 4);
    pid = fork_child();
    if (pid == 0) {
        small_round(ctx, 100, "child", 0);
        _exit(0);
    }
    status = wait_child(pid, 60000);
    stop_threads(g);
    CHECKF(status == 0, "the child exited with %d%s", status, status == 99 ? ": valgrind found errors in the child "
           "(see its report above: the working memory of the parent's other threads, definitely lost)" : "");
    FAKE_CLEAN(f);
}

/* Sockets of this process whose peer is the unix socket at path (a connection to that server). */
static int connections_to(const char *path)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        struct sockaddr_un peer;
        socklen_t length = sizeof(peer);
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d))
            continue;
        memset(&peer, 0, sizeof(peer));
        if (getpeername(fd, (struct sockaddr *)&peer, &length) == 0 && peer.sun_family == AF_UNIX
            && strcmp(peer.sun_path, path) == 0)
            n++;
    }
    closedir(d);
    return n;
}

struct get_loop_worker {
    DC_CTX *ctx;
    int *stop;
};

static void *get_loop_worker_main(void *p)
{
    struct get_loop_worker *w = p;
    unsigned char id[32], buf[64];
    unsigned int used;
    make_id(id, sizeof(id));
    while (!__atomic_load_n(w->stop, __ATOMIC_SEQ_CST))
        (void)DC_CTX_get_session(w->ctx, id, sizeof(id), buf, sizeof(buf), &used);
    return NULL;
}

/* Regression: fork() while other threads are between making a socket and listing it (or between unlisting and
 * closing it) gave the child a copy of a connection that its fork handler did not know of, so the server kept
 * that connection open for as long as the child lived. Every child counts its connections to the server at once:
 * there must be none. */
static void test_fork_never_copies_a_connection_in_flight(void)
{
    const char *target = need_env("DISTCACHE_TEST_SERVER");
    const char *path = strncmp(target, "UNIX:", 5) == 0 ? target + 5 : NULL;
    int forks = under_valgrind ? 40 : 300;
    static int stop;
    struct get_loop_worker *workers = test_alloc(4 * sizeof(*workers));
    CHECKF(path != NULL, "DISTCACHE_TEST_SERVER must be a UNIX: address for this test, not %s", target);
    for (unsigned int flags = 0; flags <= P; flags += P) {
        DC_CTX *ctx = MUST_CTX(target, flags);
        struct thread_group *g;
        int children_with_copies = 0;
        stop = 0;
        for (int i = 0; i < 4; i++) {
            workers[i].ctx = ctx;
            workers[i].stop = &stop;
        }
        g = start_threads(4, get_loop_worker_main, workers, sizeof(*workers), &stop);
        for (int i = 0; i < forks; i++) {
            pid_t pid = fork_child();
            if (pid == 0) {
                int n = connections_to(path);
                _exit(n > 0 ? 1 : n < 0 ? 2 : 0);
            }
            if (wait_child(pid, 30000) != 0)
                children_with_copies++;
            sleep_ms(1);
        }
        stop_threads(g);
        CHECKF(children_with_copies == 0, "flags %u: %d of %d children were born with a connection to the server",
               flags, children_with_copies, forks);
        free_ctx_now(ctx);
    }
}

struct cancelled_worker {
    DC_CTX *ctx;
    int *started;
    int result;
};

static void *cancelled_worker_main(void *p)
{
    struct cancelled_worker *w = p;
    unsigned char id[32];
    make_id(id, sizeof(id));
    __atomic_store_n(w->started, 1, __ATOMIC_SEQ_CST);
    w->result = DC_CTX_has_session(w->ctx, id, sizeof(id));
    for (;;)
        pause();   /* a cancellation point: the pending cancellation acts here */
    return NULL;
}

/* Regression: a thread cancelled while it waited on the network left its descriptor open and its connection
 * (on its dead stack) on the busy list, and the next fork()'s child looped for ever in the fork handler. Now a
 * call holds cancellation off until it returns. */
static void test_cancel_during_an_operation(void)
{
    struct fake *f = fake_start();
    static int started;
    set_env("DISTCACHE_TIMEOUT_MS", "300");
    fake_set(f, B_STALL, -1);
    for (unsigned int flags = 0; flags <= P; flags += P) {
        int fds = count_fds();   /* a timed-out kept connection is closed too: back to this */
        DC_CTX *ctx = MUST_CTX(f->address, flags);
        struct cancelled_worker w = { ctx, &started, 99 };
        pthread_t thread;
        pid_t pid;
        void *exit_value;
        started = 0;
        CHECK(pthread_create(&thread, NULL, cancelled_worker_main, &w) == 0);
        while (!__atomic_load_n(&started, __ATOMIC_SEQ_CST))
            sleep_ms(1);
        sleep_ms(50);   /* inside the call, waiting for an answer that never comes */
        CHECK(pthread_cancel(thread) == 0);
        CHECK(pthread_join(thread, &exit_value) == 0);
        CHECK(exit_value == PTHREAD_CANCELED);
        CHECKF(w.result == -1, "flags %u: the call returned %d, not -1 after its time limit", flags, w.result);
        {
            /* The fake server's end (in this process too) closes once it has seen the library's end close. */
            int open = fake_wait_open_at_most(f, 0);
            CHECKF(open == 0, "flags %u: %d connections stayed open after the cancelled call", flags, open);
        }
        CHECKF(count_fds() == fds, "flags %u: %d descriptors before, %d after the cancelled call", flags, fds,
               count_fds());
        pid = fork_child();
        if (pid == 0)
            _exit(0);
        CHECKF(wait_child(pid, 10000) == 0, "flags %u: the child of a fork after the cancellation failed", flags);
        free_ctx_now(ctx);
    }
    FAKE_CLEAN(f);
}

/* With a fake server: the child's operations come on a connection of its own, the parent's kept connection still
 * works afterwards. raw: fork by the system call, so that the library's fork handlers do not run. */
static void fork_fake(int raw)
{
    struct fake *f = fake_start();
    DC_CTX *ctx = MUST_CTX(f->address, P);
    unsigned char id[32];
    unsigned long parent_conn;
    size_t before;
    int status;
    pid_t pid;
    make_id(id, sizeof(id));
    CHECK_EQ(do_op(ctx, DO_ADD, id, sizeof(id)), 1);
    EXPECT_ACCEPTS(f, 1);
    parent_conn = fake_record(f, fake_record_count(f) - 1).conn;
    before = fake_record_count(f);
    if (raw) {
        fflush(stdout);
        fflush(stderr);
        pid = (pid_t)syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
        CHECKF(pid >= 0, "clone: %s", strerror(errno));
        if (pid == 0)
            became_child();
        else
            defer(reap_child, (void *)(intptr_t)pid);
    } else {
        pid = fork_child();
    }
    if (pid == 0) {
        for (int r = 0; r < 20; r++)
            small_round(ctx, 50, "child", r);
        CHECK_EQ(do_op(ctx, DO_HAVE, id, sizeof(id)), 1);
        _exit(0);
    }
    if (!raw) {
        for (int r = 0; r < 20; r++)
            small_round(ctx, 60, "parent", r);
    }
    status = wait_child(pid, 60000);
    CHECKF(status == 0, "the child exited with %d", status);
    CHECK(fake_accepts(f) >= 2);
    {
        unsigned long accepts = fake_accepts(f), child_conns = 0;
        size_t count = fake_record_count(f);
        for (size_t i = before; i < count; i++)
            if (fake_record(f, i).conn != parent_conn)
                child_conns++;
        CHECKF(child_conns >= 20 * 4, "only %lu of the child's requests came on a connection of its own",
               child_conns);
        CHECK_EQ(do_op(ctx, DO_HAVE, id, sizeof(id)), 1);
        CHECK_EQ(fake_accepts(f), accepts);
        CHECK_EQ(fake_record(f, fake_record_count(f) - 1).conn, parent_conn);
    }
    FAKE_CLEAN(f);
}

static void test_fork_fake(void)
{
    fork_fake(0);
}

static void test_fork_raw_clone(void)
{
    fork_fake(1);
}

/* ==== Tests: threads ==== */

struct round_worker {
    DC_CTX *ctx;
    int rounds;
    int index;
    char who[48];
};

static void *round_worker_main(void *p)
{
    struct round_worker *w = p;
    for (int r = 0; r < w->rounds; r++)
        small_round(w->ctx, 5 + (unsigned int)(r * 997 + w->index * 131) % 3000, w->who, r);
    return NULL;
}

static void threads_against(const char *variable, unsigned int flags)
{
    const char *target = need_env(variable);
    int fds = count_fds();
    DC_CTX *ctx;
    struct round_worker *workers = test_alloc(64 * sizeof(*workers));
    if (under_valgrind)
        set_env("DISTCACHE_TIMEOUT_MS", "10000");   /* valgrind runs one thread at a time */
    ctx = MUST_CTX(target, flags);
    for (int i = 0; i < 64; i++) {
        workers[i].ctx = ctx;
        workers[i].rounds = under_valgrind ? 20 : 100;
        workers[i].index = i;
        snprintf(workers[i].who, sizeof(workers[i].who), "thread %d", i);
    }
    run_threads(64, round_worker_main, workers, sizeof(*workers));
    free_ctx_now(ctx);
    CHECKF(count_fds() == fds, "%d descriptors open after DC_CTX_free, %d before", count_fds(), fds);
}

static void test_threads_server_flags0(void)
{
    threads_against("DISTCACHE_TEST_SERVER", 0);
}

static void test_threads_server_persistent(void)
{
    threads_against("DISTCACHE_TEST_SERVER", P);
}

static void test_threads_proxy_flags0(void)
{
    threads_against("DISTCACHE_TEST_PROXY", 0);
}

static void test_threads_proxy_persistent(void)
{
    threads_against("DISTCACHE_TEST_PROXY", P);
}


/* ==== Tests: more connections, fork and threads ==== */

static void test_retry_within_limit(void)
{
    struct fake *f = fake_start();
    DC_CTX *ctx;
    set_env("DISTCACHE_TIMEOUT_MS", "500");
    ctx = MUST_CTX(f->address, P | RETRY);
    EXPECT_ACCEPTS(f, 1);
    /* The first attempt's connection closes, the resend stalls: both within the one time limit (not two). */
    fake_set_then(f, B_CLOSE_BEFORE, 1, B_STALL);
    expect_bounded(ctx, DO_HAVE, 450, 950, "a resend that stalls");
    fake_set_then(f, B_CLOSE_BEFORE, 1, B_STALL);
    expect_bounded(ctx, DO_GET, 450, 950, "a resend that stalls");
    fake_set(f, B_NORMAL, 0);
    small_round(ctx, 100, "after the stalled resend", 0);
    FAKE_CLEAN(f);
}

struct pool_worker {
    DC_CTX *ctx;
    int rounds;
    char who[32];
};

static void *pool_worker_main(void *p)
{
    struct pool_worker *w = p;
    for (int r = 0; r < w->rounds; r++)
        small_round(w->ctx, 40, w->who, r);
    return NULL;
}

/* PERSISTENT: one connection per thread inside the context at once, and no more than 64 kept. */
static void test_pool_bounded(void)
{
    struct fake *f = fake_start();
    struct pool_worker *workers = test_alloc(80 * sizeof(*workers));
    DC_CTX *ctx = MUST_CTX(f->address, P);
    unsigned long accepts;
    int open;
    EXPECT_ACCEPTS(f, 1);
    for (int i = 0; i < 80; i++) {
        workers[i].ctx = ctx;
        workers[i].rounds = 30;
        snprintf(workers[i].who, sizeof(workers[i].who), "pool thread %d", i);
    }
    run_threads(8, pool_worker_main, workers, sizeof(*workers));
    accepts = fake_accepts(f);
    CHECKF(accepts <= 8, "8 threads made %lu connections", accepts);
    free_ctx_now(ctx);
    CHECKF(fake_wait_open_at_most(f, 0) == 0, "connections left open after DC_CTX_free");

    /* 80 threads at once: no answer leaves the fake until 80 connections are open, so that they overlap. The first
     * thread waits for the last to start, which on a loaded machine under valgrind takes seconds. */
    set_env("DISTCACHE_TIMEOUT_MS", "30000");
    ctx = MUST_CTX(f->address, P);
    for (int i = 0; i < 80; i++) {
        workers[i].ctx = ctx;
        workers[i].rounds = 2;
    }
    accepts = fake_accepts(f);
    fake_set_gate(f, 80, 25000);
    run_threads(80, pool_worker_main, workers, sizeof(*workers));
    CHECKF(fake_accepts(f) - accepts <= 80, "80 threads made %lu connections", fake_accepts(f) - accepts);
    CHECKF(fake_accepts(f) - accepts > 64, "80 overlapping threads made only %lu connections: the test did not "
           "overlap them", fake_accepts(f) - accepts);
    open = fake_wait_open_at_most(f, 64);
    CHECKF(open <= 64, "%d connections kept after 80 threads, more than the pool's 64", open);
    free_ctx_now(ctx);
    CHECKF(fake_wait_open_at_most(f, 0) == 0, "connections left open after DC_CTX_free");
    FAKE_CLEAN(f);
}

struct busy_worker {
    DC_CTX *ctx;
    int *stop;
    int rounds;
    char who[32];
};

static void *busy_worker_main(void *p)
{
    struct busy_worker *w = p;
    while (!__atomic_load_n(w->stop, __ATOMIC_SEQ_CST)) {
        small_round(w->ctx, 200 + (unsigned int)(w->rounds * 13) % 2500, w->who, w->rounds);
        w->rounds++;
    }
    return NULL;
}

/* fork() while other threads are inside the contexts (their connections busy): the children get connections of
 * their own, the parent's threads carry on undisturbed. */
static void test_fork_while_busy(void)
{
    const char *target = need_env("DISTCACHE_TEST_PROXY");
    static int stop;
    DC_CTX *kept = MUST_CTX(target, P), *plain = MUST_CTX(target, 0);
    /* Thread arguments outlive this frame when a check fails (the threads are joined afterwards). */
    struct busy_worker *workers = test_alloc(4 * sizeof(*workers));
    struct thread_group *g;
    int forks = under_valgrind ? 6 : 20;
    stop = 0;
    for (int i = 0; i < 4; i++) {
        workers[i].ctx = i % 2 ? kept : plain;
        workers[i].stop = &stop;
        workers[i].rounds = 0;
        snprintf(workers[i].who, sizeof(workers[i].who), "parent thread %d", i);
    }
    g = start_threads(4, busy_worker_main, workers, sizeof(workers[0]), &stop);
    for (int i = 0; i < forks; i++) {
        pid_t pid;
        int status;
        sleep_ms(5 + i % 7);
        pid = fork_child();
        if (pid == 0) {
            for (int r = 0; r < 10; r++) {
                small_round(kept, 300, "child, PERSISTENT", r);
                small_round(plain, 300, "child, flags 0", r);
            }
            _exit(0);
        }
        status = wait_child(pid, 60000);
        CHECKF(status == 0, "fork %d: the child exited with %d%s", i, status, status == 99 ? " (valgrind found "
               "errors in the child, see its report above; fork_frees_other_threads_memory shows one cause)" : "");
    }
    stop_threads(g);
    for (int i = 0; i < 4; i++)
        CHECKF(workers[i].rounds > 0, "parent thread %d did no round", i);
}

/* What Apache does: DC_CTX_new(target, 0) in the parent, then children that each use the context from many
 * threads at once. */
static void test_apache_pattern(void)
{
    const char *target = need_env("DISTCACHE_TEST_PROXY");
    static const unsigned int flags[] = { 0, P };
    for (size_t k = 0; k < 2; k++) {
        DC_CTX *ctx = MUST_CTX(target, flags[k]);
        pid_t pids[3];
        small_round(ctx, 300, "parent", 0);
        for (int c = 0; c < 3; c++) {
            pids[c] = fork_child();
            if (pids[c] == 0) {
                struct round_worker *workers = xmalloc(16 * sizeof(*workers));
                for (int i = 0; i < 16; i++) {
                    workers[i].ctx = ctx;
                    workers[i].rounds = under_valgrind ? 10 : 50;
                    workers[i].index = i;
                    snprintf(workers[i].who, sizeof(workers[i].who), "child %d thread %d", c, i);
                }
                run_threads(16, round_worker_main, workers, sizeof(*workers));
                free(workers);
                _exit(0);
            }
        }
        for (int c = 0; c < 3; c++) {
            int status = wait_child(pids[c], 120000);
            CHECKF(status == 0, "flags %u: child %d exited with %d", flags[k], c, status);
        }
        small_round(ctx, 300, "parent after the children", 1);
        free_ctx_now(ctx);
    }
}


/* A peer that accepts and closes at once: sending to it must never raise SIGPIPE (which would kill the web
 * server), even for the largest request. */
static void test_no_sigpipe(void)
{
    static unsigned char data[MESSAGE_MAX];
    struct fake *f = fake_start();
    static const unsigned int flags[] = { 0, P | LATE, P | LATE | RETRY };
    pthread_mutex_lock(&f->lock);
    f->close_on_accept = 1;
    pthread_mutex_unlock(&f->lock);
    memset(data, 0x61, sizeof(data));
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        DC_CTX *ctx = MUST_CTX(f->address, flags[i]);
        for (int r = 0; r < 20; r++) {
            unsigned char id[32];
            make_id(id, sizeof(id));
            CHECK_EQ(DC_CTX_add_session(ctx, id, sizeof(id), data, MESSAGE_MAX - 8 - 32, 600000), 0);
            CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), -1);
            if (r % 5 == 0)
                sleep_ms(2);   /* let the server close first, sometimes */
        }
        free_ctx_now(ctx);
    }
    pthread_mutex_lock(&f->lock);
    f->close_on_accept = 0;
    pthread_mutex_unlock(&f->lock);
    {
        DC_CTX *ctx = MUST_CTX(f->address, P);
        small_round(ctx, MESSAGE_MAX - 8 - 32, "after the closing server", 0);
    }
    FAKE_CLEAN(f);
}

static void on_usr1(int signal_number)
{
    (void)signal_number;
}

struct pester {
    pthread_t target;
    int *stop;
    int sent;
};

static void *pester_main(void *p)
{
    struct pester *w = p;
    while (!__atomic_load_n(w->stop, __ATOMIC_SEQ_CST)) {
        pthread_kill(w->target, SIGUSR1);
        w->sent++;
        sleep_ms(2);
    }
    return NULL;
}

static void restore_usr1(void *p)
{
    sigaction(SIGUSR1, p, NULL);
    free(p);
}

/* Signals (without SA_RESTART) arriving while an operation waits: the operation carries on, and its time limit
 * still holds. */
static void test_signals_interrupt(void)
{
    struct fake *f = fake_start();
    struct sigaction action, *old = xmalloc(sizeof(*old));
    static int stop;
    struct pester *pester = test_alloc(sizeof(*pester));
    struct thread_group *g;
    DC_CTX *ctx, *plain;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_usr1;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    sigaction(SIGUSR1, &action, old);
    defer(restore_usr1, old);
    set_env("DISTCACHE_TIMEOUT_MS", "2000");
    ctx = MUST_CTX(f->address, P);
    plain = MUST_CTX(f->address, 0);
    fake_set_delay(f, 60);
    fake_set(f, B_DELAY, -1);
    stop = 0;
    pester->target = pthread_self();
    pester->stop = &stop;
    pester->sent = 0;
    g = start_threads(1, pester_main, pester, sizeof(*pester), &stop);
    for (int r = 0; r < 3; r++) {
        small_round(ctx, 3000, "interrupted, PERSISTENT", r);
        small_round(plain, 3000, "interrupted, flags 0", r);
    }
    fake_set(f, B_STALL, -1);
    expect_bounded(ctx, DO_HAVE, 1900, 4000, "a stall under signals, DISTCACHE_TIMEOUT_MS=2000");
    stop_threads(g);
    CHECKF(pester->sent > 100, "only %d signals were sent", pester->sent);
    fake_set(f, B_NORMAL, 0);
    FAKE_CLEAN(f);
}


/* Every socket descriptor of this process (but 0-2) is close-on-exec. */
static void check_sockets_cloexec(const char *when)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int sockets = 0, bad = -1;
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || fd < 3 || fd >= 1024 || fd == dirfd(d))
            continue;
        if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            continue;
        sockets++;
        if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC))
            bad = fd;
    }
    closedir(d);
    CHECKF(bad < 0, "%s: socket descriptor %d is not close-on-exec (a CGI exec'd by Apache would inherit it)",
           when, bad);
    CHECKF(sockets > 0, "%s: no socket descriptors found", when);
}

struct stalled_op {
    DC_CTX *ctx;
    int result;
};

static void *stalled_op_main(void *p)
{
    struct stalled_op *w = p;
    unsigned char id[32];
    make_id(id, sizeof(id));
    w->result = DC_CTX_has_session(w->ctx, id, sizeof(id));
    return NULL;
}

/* The library's connections, kept or in use, never leak into a program that the process execs. */
static void test_sockets_close_on_exec(void)
{
    struct fake *f = fake_start(), *tcp = fake_start_any(NULL, 1);
    DC_CTX *kept = MUST_CTX(f->address, P), *kept_tcp = MUST_CTX(tcp->address, P), *plain;
    struct stalled_op *op = test_alloc(sizeof(*op));
    struct thread_group *g;
    small_round(kept, 100, "unix", 0);
    small_round(kept_tcp, 100, "tcp", 0);
    check_sockets_cloexec("kept connections");
    set_env("DISTCACHE_TIMEOUT_MS", "3000");
    plain = MUST_CTX(f->address, 0);
    op->ctx = plain;
    op->result = -99;
    fake_set(f, B_STALL, 1);
    g = start_threads(1, stalled_op_main, op, sizeof(*op), NULL);
    sleep_ms(under_valgrind ? 500 : 200);
    check_sockets_cloexec("a connection waiting for its answer");
    stop_threads(g);
    CHECK_EQ(op->result, -1);
    FAKE_CLEAN(f);
    FAKE_CLEAN(tcp);
}

struct fd_block {
    int *fds;
    int count;
};

static void close_fd_block(void *p)
{
    struct fd_block *b = p;
    for (int i = 0; i < b->count; i++)
        close(b->fds[i]);
    free(b->fds);
    free(b);
}

static void restore_nofile(void *p)
{
    setrlimit(RLIMIT_NOFILE, p);
    free(p);
}

/* Descriptor numbers above 1024 (FD_SETSIZE) work: the library waits with poll(), not select(). */
static void test_high_fd_numbers(void)
{
    struct fake *f = fake_start();
    struct rlimit *old = xmalloc(sizeof(*old)), raised;
    struct fd_block *block;
    int devnull;
    DC_CTX *kept, *plain;
    CHECK(getrlimit(RLIMIT_NOFILE, old) == 0);
    defer(restore_nofile, old);
    if (old->rlim_cur < 1400) {
        raised = *old;
        raised.rlim_cur = old->rlim_max == RLIM_INFINITY || old->rlim_max >= 2048 ? 2048 : old->rlim_max;
        if (raised.rlim_cur < 1400 || setrlimit(RLIMIT_NOFILE, &raised) != 0) {
            fprintf(stderr, "high_fd_numbers: cannot raise RLIMIT_NOFILE to 1400; not tested\n");
            return;
        }
    }
    block = xmalloc(sizeof(*block));
    block->fds = xmalloc(1200 * sizeof(int));
    block->count = 0;
    defer(close_fd_block, block);
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(devnull >= 0);
    block->fds[block->count++] = devnull;
    while (block->count < 1200) {
        int fd = fcntl(devnull, F_DUPFD_CLOEXEC, 0);
        CHECKF(fd >= 0, "dup: %s", strerror(errno));
        block->fds[block->count++] = fd;
        if (fd >= 1100)
            break;
    }
    CHECKF(block->fds[block->count - 1] >= 1100, "could not fill descriptors up to 1100");
    kept = MUST_CTX(f->address, P);
    plain = MUST_CTX(f->address, 0);
    for (int r = 0; r < 5; r++) {
        small_round(kept, 2500, "fd over 1100, PERSISTENT", r);
        small_round(plain, 2500, "fd over 1100, flags 0", r);
    }
    set_env("DISTCACHE_TIMEOUT_MS", "300");
    {
        DC_CTX *quick = MUST_CTX(f->address, 0);
        fake_set(f, B_STALL, 1);
        expect_bounded(quick, DO_HAVE, 250, 2000, "a stall on a descriptor over 1100");
    }
    FAKE_CLEAN(f);
}

/* dc_client without its dc_server answers at once, and the library reports failures. */
static void test_proxy_without_server(void)
{
    const char *target = need_env("DISTCACHE_TEST_PROXY_DOWN");
    for (int persistent = 0; persistent < 2; persistent++) {
        DC_CTX *ctx = MUST_CTX(target, persistent ? P : 0);
        unsigned char id[32], buf[64];
        unsigned int used;
        int64_t started = now_ms();
        make_id(id, sizeof(id));
        CHECK_EQ(DC_CTX_has_session(ctx, id, sizeof(id)), -1);
        CHECK_EQ(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used), 0);
        CHECK_EQ(do_op(ctx, DO_ADD, id, sizeof(id)), 0);
        CHECK_EQ(DC_CTX_remove_session(ctx, id, sizeof(id)), 0);
        CHECKF(now_ms() - started < 900, "four operations took %lld ms", (long long)(now_ms() - started));
        free_ctx_now(ctx);
    }
}

/* ==== The soak test ==== */

struct soak_worker {
    DC_CTX *ctx;
    long rounds;
    int index;
};

static void *soak_worker_main(void *p)
{
    struct soak_worker *w = p;
    char who[32];
    snprintf(who, sizeof(who), "soak thread %d", w->index);
    for (long r = 0; r < w->rounds; r++)
        small_round(w->ctx, 100 + (unsigned int)((r * 7919 + w->index * 31) % 1900), who, (int)(r % 1000) + 1);
    return NULL;
}

static void soak_phase(DC_CTX *ctx, long ops, int threads)
{
    /* On the heap and not freed when a check fails: the threads may still be using it until they are joined. */
    struct soak_worker *workers = xmalloc((size_t)threads * sizeof(*workers));
    for (int i = 0; i < threads; i++) {
        workers[i].ctx = ctx;
        workers[i].rounds = ops / 4 / threads;
        workers[i].index = i;
    }
    run_threads(threads, soak_worker_main, workers, sizeof(workers[0]));
    free(workers);
}

static void test_soak(void)
{
    const char *target = need_env("DISTCACHE_TEST_PROXY");
    const char *ops_text = getenv("DISTCACHE_TEST_SOAK_OPS");
    long ops = ops_text != NULL && *ops_text != '\0' ? atol(ops_text) : 200000;
    int fds = count_fds();
    long rss_warm, rss_end;
    int64_t started;
    DC_CTX *ctx;
    if (ops < 8000)
        ops = 8000;
    ctx = MUST_CTX(target, P);
    /* Warm-up: the threads' buffers, the kept connections, the allocator's arenas. */
    soak_phase(ctx, ops / 10, 8);
    rss_warm = rss_kb();
    started = now_ms();
    soak_phase(ctx, ops, 8);
    rss_end = rss_kb();
    fprintf(stderr, "soak: %ld operations through %s on 8 threads in %lld ms; RSS %ld kB after warm-up, %ld kB "
            "after\n", ops, target, (long long)(now_ms() - started), rss_warm, rss_end);
    CHECKF(rss_end - rss_warm <= 2048, "RSS grew by %ld kB over %ld operations", rss_end - rss_warm, ops);
    free_ctx_now(ctx);
    CHECKF(count_fds() == fds, "%d descriptors open after DC_CTX_free, %d before", count_fds(), fds);

    /* A connection per operation: every one closed. */
    ctx = MUST_CTX(target, 0);
    soak_phase(ctx, ops / 10, 8);
    free_ctx_now(ctx);
    CHECKF(count_fds() == fds, "%d descriptors open after flags-0 operations, %d before", count_fds(), fds);

    /* Threads that come and go (each leaves ~96 KB of working memory to its thread-exit destructor). */
    ctx = MUST_CTX(target, P);
    for (int i = 0; i < 100; i++)
        soak_phase(ctx, 4, 1);
    rss_warm = rss_kb();
    for (int i = 0; i < 1000; i++)
        soak_phase(ctx, 4, 1);
    rss_end = rss_kb();
    fprintf(stderr, "soak: 1000 threads one after another: RSS %ld kB before, %ld kB after\n", rss_warm, rss_end);
    CHECKF(rss_end - rss_warm <= 2048, "RSS grew by %ld kB over 1000 threads", rss_end - rss_warm);
    free_ctx_now(ctx);
    CHECKF(count_fds() == fds, "%d descriptors open after the thread churn, %d before", count_fds(), fds);
}

/* ==== The registry and the runner ==== */

struct test {
    const char *name;
    void (*fn)(void);
};

static const struct test tests[] = {
    { "constants", test_constants },
    { "new_null_target", test_new_null_target },
    { "new_malformed_targets", test_new_malformed_targets },
    { "new_missing_socket", test_new_missing_socket },
    { "late_connect_after_server_appears", test_late_connect_after_server_appears },
    { "new_no_network", test_new_no_network },
    { "ip_targets", test_ip_targets },
    { "server_functions", test_server_functions },
    { "proxy_functions", test_proxy_functions },
    { "server_refusals", test_server_refusals },
    { "get_buffer_rules", test_get_buffer_rules },
    { "reget_rules", test_reget_rules },
    { "short_session_is_miss", test_short_session_is_miss },
    { "bad_arguments", test_bad_arguments },
    { "timeout_refused", test_timeout_refused },
    { "lifetime_floor", test_lifetime_floor },
    { "lifetime_floor_invalid", test_lifetime_floor_invalid },
    { "lifetime_real_server", test_lifetime_real_server },
    { "bound_stall", test_bound_stall },
    { "bound_stall_mid_answer", test_bound_stall_mid_answer },
    { "bound_invalid_env", test_bound_invalid_env },
    { "connect_bound", test_connect_bound },
    { "answer_checks", test_answer_checks },
    { "answers_accepted", test_answers_accepted },
    { "uids", test_uids },
    { "uids_threads", test_uids_threads },
    { "connections_per_operation", test_connections_per_operation },
    { "connections_persistent", test_connections_persistent },
    { "connections_late", test_connections_late },
    { "contexts_free_everything", test_contexts_free_everything },
    { "retry", test_retry },
    { "no_retry", test_no_retry },
    { "stale_idle_connection", test_stale_idle_connection },
    { "disconnected", test_disconnected },
    { "empty_answer", test_empty_answer },
    { "fork_server", test_fork_server },
    { "fork_never_copies_a_connection_in_flight", test_fork_never_copies_a_connection_in_flight },
    { "cancel_during_an_operation", test_cancel_during_an_operation },
    { "fork_proxy", test_fork_proxy },
    { "fork_fake", test_fork_fake },
    { "fork_raw_clone", test_fork_raw_clone },
    { "fork_frees_other_threads_memory", test_fork_frees_other_threads_memory },
    { "threads_server_flags0", test_threads_server_flags0 },
    { "threads_server_persistent", test_threads_server_persistent },
    { "threads_proxy_flags0", test_threads_proxy_flags0 },
    { "threads_proxy_persistent", test_threads_proxy_persistent },
    { "retry_within_limit", test_retry_within_limit },
    { "pool_bounded", test_pool_bounded },
    { "fork_while_busy", test_fork_while_busy },
    { "apache_pattern", test_apache_pattern },
    { "proxy_without_server", test_proxy_without_server },
    { "no_sigpipe", test_no_sigpipe },
    { "signals_interrupt", test_signals_interrupt },
    { "sockets_close_on_exec", test_sockets_close_on_exec },
    { "high_fd_numbers", test_high_fd_numbers },
    { "soak", test_soak },
};
#define TEST_COUNT (sizeof(tests) / sizeof(tests[0]))

static int time_limit_s;

static void on_alarm(int signal_number)
{
    char line[300];
    int n = snprintf(line, sizeof(line), "not ok - %s: did not finish within %d s (signal %d)\n%d passed, %d failed\n",
                     current_test, time_limit_s, signal_number, passed_count, failed_count + 1);
    if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
    }
    _exit(1);
}

static void run_test(const struct test *t)
{
    test_failed = 0;
    failure[0] = '\0';
    current_test = t->name;
    alarm((unsigned int)time_limit_s);
    if (setjmp(test_jmp) == 0)
        t->fn();
    run_cleanups();
    alarm(0);
    if (test_failed) {
        failed_count++;
        printf("not ok - %s: %s\n", t->name, failure);
    } else {
        passed_count++;
        printf("ok - %s\n", t->name);
    }
    fflush(stdout);
    first_test_in_process = 0;
}

/* ==== The bench ==== */

struct bench_worker {
    DC_CTX *ctx;
    int64_t until;
    unsigned long long adds, gets, failures;
};

static void *bench_worker_main(void *p)
{
    struct bench_worker *w = p;
    unsigned char id[32], data[256], buf[512];
    unsigned int used;
    memset(data, 0x42, sizeof(data));
    while (now_ms() < w->until) {
        for (int i = 0; i < 64; i++) {
            make_id(id, sizeof(id));
            memcpy(data, id, sizeof(id));
            if (DC_CTX_add_session(w->ctx, id, sizeof(id), data, sizeof(data), 300000) != 1)
                w->failures++;
            if (DC_CTX_get_session(w->ctx, id, sizeof(id), buf, sizeof(buf), &used) != 1 || used != sizeof(data))
                w->failures++;
            w->adds++;
            w->gets++;
        }
    }
    return NULL;
}

/* --bench TARGET THREADS SECONDS FLAGS: one context (as Apache makes one, before forking), THREADS threads each
 * storing a fresh session (32-byte id, 256-byte session, as a full TLS handshake does) and fetching it straight
 * back (as a resumption does), for SECONDS seconds. Prints operations per second, adds and gets counted alike.
 * FLAGS is a number (0, 1 = PERSISTENT, ...) or letters: P (PERSISTENT), C (PIDCHECK), R (RETRY), L (LATE). */
static int bench(int argc, char **argv)
{
    const char *target;
    int threads, seconds;
    unsigned int flags = 0;
    DC_CTX *ctx;
    struct bench_worker *workers;
    pthread_t *ids;
    unsigned long long adds = 0, gets = 0, failures = 0;
    int64_t started, took;
    if (argc != 6) {
        fprintf(stderr, "usage: %s --bench TARGET THREADS SECONDS FLAGS\n", argv[0]);
        return 2;
    }
    target = argv[2];
    threads = atoi(argv[3]);
    seconds = atoi(argv[4]);
    if (argv[5][0] >= '0' && argv[5][0] <= '9') {
        flags = (unsigned int)strtoul(argv[5], NULL, 0);
    } else {
        for (const char *c = argv[5]; *c != '\0'; c++) {
            switch (*c) {
            case 'P': flags |= P; break;
            case 'C': flags |= PIDCHECK; break;
            case 'R': flags |= RETRY; break;
            case 'L': flags |= LATE; break;
            case '|': break;
            default:
                fprintf(stderr, "FLAGS: a number or the letters P, C, R, L\n");
                return 2;
            }
        }
    }
    if (threads < 1 || threads > 4096 || seconds < 1) {
        fprintf(stderr, "THREADS must be 1 to 4096 and SECONDS at least 1\n");
        return 2;
    }
    ctx = DC_CTX_new(target, flags);
    if (ctx == NULL) {
        fprintf(stderr, "DC_CTX_new(\"%s\", %u) failed\n", target, flags);
        return 1;
    }
    workers = calloc((size_t)threads, sizeof(*workers));
    ids = calloc((size_t)threads, sizeof(*ids));
    if (workers == NULL || ids == NULL)
        return 1;
    started = now_ms();
    for (int i = 0; i < threads; i++) {
        workers[i].ctx = ctx;
        workers[i].until = started + (int64_t)seconds * 1000;
        if (pthread_create(&ids[i], NULL, bench_worker_main, &workers[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        adds += workers[i].adds;
        gets += workers[i].gets;
        failures += workers[i].failures;
    }
    took = now_ms() - started;
    printf("bench target=%s threads=%d flags=%u seconds=%.1f: %llu operations (%llu add + %llu get), %.0f ops/s, "
           "%llu failed\n", target, threads, flags, (double)took / 1000.0, adds + gets, adds, gets,
           (double)(adds + gets) * 1000.0 / (double)(took > 0 ? took : 1), failures);
    DC_CTX_free(ctx);
    free(workers);
    free(ids);
    return failures == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *text;
    main_thread = pthread_self();
    seed_ids();
    text = getenv("DISTCACHE_TEST_UNDER_VALGRIND");
    under_valgrind = text != NULL && strcmp(text, "1") == 0;
    text = getenv("DISTCACHE_TEST_TIME_LIMIT_S");
    time_limit_s = text != NULL && atoi(text) > 0 ? atoi(text) : under_valgrind ? 240 : 60;

    if (argc >= 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < TEST_COUNT; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--bench") == 0)
        return bench(argc, argv);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: %s [--list | NAME... | --bench TARGET THREADS SECONDS FLAGS]\n", argv[0]);
        return 0;
    }
    signal(SIGALRM, on_alarm);
    if (argc == 1) {
        for (size_t i = 0; i < TEST_COUNT; i++)
            run_test(&tests[i]);
    } else {
        for (int a = 1; a < argc; a++) {
            size_t i;
            for (i = 0; i < TEST_COUNT; i++)
                if (strcmp(argv[a], tests[i].name) == 0)
                    break;
            if (i == TEST_COUNT) {
                printf("not ok - %s: no such test (see --list)\n", argv[a]);
                failed_count++;
                continue;
            }
            run_test(&tests[i]);
        }
    }
    printf("%d passed, %d failed\n", passed_count, failed_count);
    fflush(stdout);
    return failed_count == 0 ? 0 : 1;
}
