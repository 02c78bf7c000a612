/* SPDX-License-Identifier: MIT */
/*
 * mod_socache_distcache: an Apache httpd 2.4 small-object-cache ("socache") provider that keeps TLS sessions
 * in a distcache server, through libdistcache (distcache for .NET's C client library).
 *
 * It replaces Apache's own mod_socache_dc. It registers the same provider name, "dc", so an existing
 *
 *     SSLSessionCache dc:UNIX:/var/run/dc_client.sock
 *
 * keeps working unchanged once this module is loaded instead of that one:
 *
 *     LoadModule socache_distcache_module modules/mod_socache_distcache.so
 *
 * Load ONLY ONE of the two. Both register the provider "dc"; whichever registers last silently wins, so with
 * both loaded the configuration would depend on the order of the LoadModule lines. This module checks at
 * post-config (and under "apachectl -t") and logs an error naming the problem when it finds Apache's module too.
 *
 * Why replace mod_socache_dc at all: it hands DC_CTX_add_session() the session's remaining lifetime converted
 * with apr_time_msec(), which is only the millisecond component (0..999) of a time, not the whole lifetime in
 * milliseconds (apr_time_as_msec()). Every session therefore lived for less than a second in the shared cache
 * (and, with distcache 1.5.1's library, any value of 500 ms or less aborted the Apache child). This module
 * converts the lifetime correctly, clamps it to the protocol's range, counts what it does for mod_status, and
 * limits how often a failing cache can fill the error log.
 *
 * Lifetimes: libdistcache lifts lifetimes shorter than DISTCACHE_MIN_SESSION_TIMEOUT_MS to that floor, a
 * workaround that keeps Apache's mod_socache_dc useful. This module passes real lifetimes, so it creates its
 * context with DC_CTX_FLAG_EXACT_LIFETIMES and the floor does not apply to it.
 *
 * Build (apache2-dev / httpd-devel provide apxs):
 *
 *     apxs -c -I PREFIX/include -L PREFIX/lib -Wl,-Wl,-rpath,PREFIX/lib -ldistcache -lnal mod_socache_distcache.c
 *     apxs -i -n socache_distcache mod_socache_distcache.la      (or copy .libs/mod_socache_distcache.so)
 *
 * (The doubled -Wl,-Wl, is needed: apxs hands one level to libtool, which drops a bare "-rpath,DIR".)
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "ap_provider.h"
#include "ap_socache.h"
#include "mod_status.h"

#include "apr_atomic.h"
#include "apr_strings.h"
#include "apr_time.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <distcache/dc_client.h>

/* The header must be the 1.5.1-compatible API this module is written against. */
#if !defined(DISTCACHE_CLIENT_API) || DISTCACHE_CLIENT_API != 0x0001
#error "distcache/dc_client.h does not provide DISTCACHE_CLIENT_API 0x0001"
#endif

/* Tie our log lines to this module, so "LogLevel socache_distcache:debug" works and lines are tagged. */
APLOG_USE_MODULE(socache_distcache);

/* The provider name mod_ssl looks up for "SSLSessionCache dc:...": Apache's mod_socache_dc's name, on purpose. */
#define DCM_PROVIDER_NAME "dc"

/* What Apache calls its module's source file; ap_find_linked_module() finds loaded modules by that name. */
#define DCM_APACHE_MODULE_FILE "mod_socache_dc.c"

/* Protocol limits (PROTOCOL.md section 2). Checking them here costs nothing and turns a bare "store failed"
 * into a message that says which limit a consumer (mod_cache_socache, mod_authn_socache, ...) ran into. */
#define DCM_MAX_TIMEOUT_MS 604800000UL /* ADD refuses lifetimes above 7 days */
#define DCM_MAX_ID_LEN     64u         /* ADD refuses ids longer than this */
#define DCM_MAX_PAYLOAD    32768u      /* one message's payload; ADD spends 8 bytes on timeout and id length */
#define DCM_ADD_PREFIX     8u

/* A failing cache (proxy down, socket path wrong) fails every handshake's store: log the first failure at
 * error level, then at most one such line per this many seconds per process; the rest go to debug level. */
#define DCM_FAILURE_LOG_INTERVAL_SEC 10u

struct ap_socache_instance_t {
    /* The target address as configured ("UNIX:/path", "IP:host:port", "IPv6:[addr]:port"). */
    const char *target;
    /* The library context; created in init (parent, post-config), or later by the first operation that finds it
     * missing (when init could not: a host name that did not resolve); freed in destroy or by init_pool's
     * cleanup. Set with a compare-and-swap, since worker threads may race to create it. */
    void *volatile dc;
    /* apr_time_sec() before which no operation tries DC_CTX_new again after a failure. */
    apr_uint32_t retry_after;
    /* The pool init registered our cleanup on; NULL once that cleanup has run (so destroy never touches a
     * pool that may be gone). */
    apr_pool_t *init_pool;

    /* Counters for mod_status. Each child process gets its own copy at fork, so these count one process
     * since it started; worker threads update them concurrently, hence apr_atomic. They wrap at 2^32. */
    apr_uint32_t stores;       /* sessions the cache accepted */
    apr_uint32_t expired;      /* store calls not sent: the lifetime had run out (or nearly) */
    apr_uint32_t retrieves;    /* retrieve calls */
    apr_uint32_t hits;         /* retrieves that returned a session */
    apr_uint32_t misses;       /* retrieves that found nothing (the library cannot tell a miss from no answer) */
    apr_uint32_t removes;      /* remove calls */
    apr_uint32_t removed;      /* removes the cache confirmed */
    apr_uint32_t failures;     /* stores refused or unanswered, ids out of range, sessions too big for the buffer */
    apr_uint32_t failure_logged_at; /* apr_time_sec() of the last failure logged at error level; 0: never */
};

/* ---------------------------------------------------------------------------------------------------------- */
/* Logging a failure without flooding the log.                                                                 */

/* True for the one caller per interval that should log at error level. A compare-and-swap on the timestamp
 * elects that caller without a lock, so concurrent worker threads cannot both win. */
static int dcm_failure_log_due(ap_socache_instance_t *ctx)
{
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(apr_time_now());
    apr_uint32_t last = apr_atomic_read32(&ctx->failure_logged_at);

    /* Unsigned difference: a clock that stepped backwards gives a huge value and simply allows a line. */
    if (last != 0 && now - last < DCM_FAILURE_LOG_INTERVAL_SEC) {
        return 0;
    }
    return apr_atomic_cas32(&ctx->failure_logged_at, now, last) == last;
}

#if defined(__GNUC__)
static void dcm_log_failure(ap_socache_instance_t *ctx, server_rec *s, apr_pool_t *pool, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#endif

/* Counts a failure and logs it: at error level when due (with the process's running count, and a note that the
 * next ones are quieter), otherwise at debug level. */
static void dcm_log_failure(ap_socache_instance_t *ctx, server_rec *s, apr_pool_t *pool, const char *fmt, ...)
{
    apr_uint32_t count = apr_atomic_inc32(&ctx->failures) + 1; /* inc32 returns the old value */
    int level = dcm_failure_log_due(ctx) ? APLOG_ERR : APLOG_DEBUG;
    const char *message;
    va_list ap;

    /* Formatting costs a little memory and time; skip it when the line would be dropped anyway. */
    if (!APLOG_IS_LEVEL(s, level)) {
        return;
    }
    va_start(ap, fmt);
    message = apr_pvsprintf(pool, fmt, ap);
    va_end(ap);

    if (level == APLOG_ERR) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "distcache %s: %s (failures in this process so far: %u; further ones within %u s are "
                     "logged at debug level)", ctx->target, message, (unsigned)count,
                     (unsigned)DCM_FAILURE_LOG_INTERVAL_SEC);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "distcache %s: %s", ctx->target, message);
    }
}

/* ---------------------------------------------------------------------------------------------------------- */
/* The provider.                                                                                               */

/* True when text starts with prefix followed by ':' (ASCII case-insensitive, as libnal reads prefixes). */
static int dcm_has_prefix(const char *text, const char *prefix)
{
    apr_size_t n = strlen(prefix);
    return strncasecmp(text, prefix, n) == 0 && text[n] == ':' && text[n + 1] != '\0';
}

/* True when text is a TCP port: 1 to 65535, digits only. */
static int dcm_is_port(const char *text)
{
    long port = 0;
    if (*text == '\0')
        return 0;
    for (; *text != '\0'; text++) {
        if (*text < '0' || *text > '9' || (port = port * 10 + (*text - '0')) > 65535)
            return 0;
    }
    return port > 0;
}

/* Why arg is not an address the library can connect to, or NULL. The same rules as the library's parser, so
 * that "apachectl -t" reports a mistake instead of a server that fails to start. */
static const char *dcm_address_problem(const char *arg)
{
    const char *rest, *colon;
    if (dcm_has_prefix(arg, "UNIX"))
        return NULL;
    if (dcm_has_prefix(arg, "IPv6")) {
        rest = arg + 5;
        colon = strstr(rest, "]:");
        return rest[0] == '[' && colon != NULL && colon > rest + 1 && dcm_is_port(colon + 2)
            ? NULL : "an IPv6 address is written IPv6:[address]:port";
    }
    if (dcm_has_prefix(arg, "IPv4") || dcm_has_prefix(arg, "IP")) {
        rest = strchr(arg, ':') + 1;
        colon = strrchr(rest, ':');
        if (colon == NULL || colon == rest)
            return "IP:port names every interface of a server that listens; a client needs IP:host:port";
        return dcm_is_port(colon + 1) ? NULL : "the port is not a number from 1 to 65535";
    }
    return "expected UNIX:/path/to/socket, IP:host:port or IPv6:[address]:port";
}

/* Called while the configuration is read ("SSLSessionCache dc:ARG"; mod_ssl strips "dc:" and passes NULL when
 * there was no colon). Only the form is checked here: resolving host names and the like is the library's job
 * in init, and the cache need not be running while the configuration is read or tested. */
static const char *dcm_create(ap_socache_instance_t **instance, const char *arg, apr_pool_t *tmp, apr_pool_t *p)
{
    ap_socache_instance_t *ctx;

    (void)tmp;
    if (arg == NULL || *arg == '\0') {
        return "the distcache provider needs the address of a distcache proxy or server, as in "
               "\"dc:UNIX:/var/run/dc_client.sock\" or \"dc:IP:cache.example.com:9001\"";
    }
    if (dcm_address_problem(arg) != NULL) {
        return apr_psprintf(p, "'%s' after \"dc:\" is not a distcache address to connect to: %s", arg,
                            dcm_address_problem(arg));
    }

    /* pcalloc: every counter starts at zero. The instance lives as long as the configuration (pool p). */
    ctx = apr_pcalloc(p, sizeof *ctx);
    ctx->target = apr_pstrdup(p, arg);
    *instance = ctx;
    return NULL;
}

/* Kept connections (one per busy worker thread, up to 64, opened by the first operation of each child, never by
 * the parent; a child never shares its parent's), resent once after a connection that dropped, and real
 * lifetimes (no floor). A connection per operation would cost a TCP target a TIME_WAIT socket each, running out
 * of ports at a few hundred operations a second, and cost dc_client an accept and a close each. */
#define DCM_FLAGS (DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE | DC_CTX_FLAG_PERSISTENT_RETRY \
                   | DC_CTX_FLAG_EXACT_LIFETIMES)

/* How long after a failed DC_CTX_new the operations wait before they try again. */
#define DCM_RETRY_SECONDS 5

/* The library context, made now if init could not make it and no attempt failed in the last few seconds. */
static DC_CTX *dcm_context(ap_socache_instance_t *ctx)
{
    DC_CTX *dc = ctx->dc, *made;
    apr_uint32_t now, after;
    if (dc != NULL)
        return dc;
    now = (apr_uint32_t)apr_time_sec(apr_time_now());
    after = apr_atomic_read32(&ctx->retry_after);
    if (now < after || apr_atomic_cas32(&ctx->retry_after, now + DCM_RETRY_SECONDS, after) != after)
        return NULL;   /* too soon, or another thread is trying */
    made = DC_CTX_new(ctx->target, DCM_FLAGS);
    if (made != NULL && apr_atomic_casptr((volatile void **)&ctx->dc, made, NULL) != NULL)
        DC_CTX_free(made);   /* cannot happen while one thread tries at a time; kept for safety */
    return ctx->dc;
}

/* Frees the library context. Runs from destroy or, if a consumer never calls destroy, when init's pool goes;
 * both can happen, so it must be safe to run twice. */
static apr_status_t dcm_cleanup(void *data)
{
    ap_socache_instance_t *ctx = data;

    if (ctx->dc != NULL) {
        DC_CTX_free(ctx->dc);
        ctx->dc = NULL;
    }
    ctx->init_pool = NULL;
    return APR_SUCCESS;
}

/* Called by the consumer in its post-config, in the parent process, before the children are forked. */
static apr_status_t dcm_init(ap_socache_instance_t *ctx, const char *cname, const struct ap_socache_hints *hints,
                             server_rec *s, apr_pool_t *pool)
{
    (void)hints; /* sizes and expiry intervals are the server's business, not ours */

    if (ctx->dc != NULL) {
        return APR_SUCCESS; /* initialised already: keep the one context */
    }

    ctx->dc = DC_CTX_new(ctx->target, DCM_FLAGS);
    if (ctx->dc == NULL) {
        /* The form was checked in create, so the host name did not resolve (or memory ran out). Failing init
         * would make mod_ssl stop the server, a graceful reload included, over a DNS hiccup: carry on without
         * the shared cache, and let the operations try again. */
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "distcache: cannot use '%s' for %s yet (does its host name resolve?): sessions are not "
                     "shared until it can be; the operations try again every %d s", ctx->target,
                     cname ? cname : "the cache", DCM_RETRY_SECONDS);
    }

    /* Free the context with the configuration even if the consumer forgets destroy. A child about to exec
     * needs nothing: the library's sockets are close-on-exec. */
    ctx->init_pool = pool;
    apr_pool_cleanup_register(pool, ctx, dcm_cleanup, apr_pool_cleanup_null);

    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "distcache: %s uses the session cache at %s (connections kept per worker thread)",
                 cname ? cname : "a consumer", ctx->target);
    return APR_SUCCESS;
}

/* Called by the consumer when the configuration goes (restart, shutdown); nothing else uses ctx by then. */
static void dcm_destroy(ap_socache_instance_t *ctx, server_rec *s)
{
    (void)s;
    if (ctx == NULL) {
        return;
    }
    /* If our cleanup is still registered, the pool is alive: unregister it so it cannot run a second time
     * on an instance that may be gone by then. */
    if (ctx->init_pool != NULL) {
        apr_pool_cleanup_kill(ctx->init_pool, ctx, dcm_cleanup);
    }
    dcm_cleanup(ctx);
}

/* expiry is an absolute time; the protocol wants the remaining lifetime in milliseconds. */
static apr_status_t dcm_store(ap_socache_instance_t *ctx, server_rec *s, const unsigned char *id,
                              unsigned int idlen, apr_time_t expiry, unsigned char *data, unsigned int datalen,
                              apr_pool_t *pool)
{
    apr_interval_time_t remaining = expiry - apr_time_now();
    /* apr_time_as_msec() is the whole interval in milliseconds. (apr_time_msec() would be only its 0..999
     * millisecond component: the mod_socache_dc bug this module exists to fix.) */
    apr_int64_t lifetime_ms = apr_time_as_msec(remaining);
    unsigned long timeout_ms;
    DC_CTX *dc;

    if ((dc = dcm_context(ctx)) == NULL) {
        dcm_log_failure(ctx, s, pool, "no session stored: the cache address cannot be used (see the warning at start)");
        return APR_EGENERAL;
    }

    /* Nothing worth sharing: already expired, or DC_MIN_TIMEOUT (500 ms) or less, which 1.5.1's library
     * refused and ours would lift to its floor. Only a session at the very end of its life gets here now that
     * the lifetime is computed right, and no other server could resume it in time. APR_EINVAL: mod_ssl and
     * the other consumers treat any non-success as "not stored" and carry on. Not a failure of the cache, so
     * not counted or logged as one. */
    if (lifetime_ms <= DC_MIN_TIMEOUT) {
        apr_atomic_inc32(&ctx->expired);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                     "distcache %s: not storing a session with %" APR_INT64_T_FMT " ms left to live",
                     ctx->target, lifetime_ms);
        return APR_EINVAL;
    }
    /* The server refuses anything longer than 7 days outright; a shorter stay beats none. */
    timeout_ms = lifetime_ms > (apr_int64_t)DCM_MAX_TIMEOUT_MS ? DCM_MAX_TIMEOUT_MS : (unsigned long)lifetime_ms;

    if (idlen == 0 || idlen > DCM_MAX_ID_LEN) {
        dcm_log_failure(ctx, s, pool, "cannot store an id of %u bytes (distcache takes 1 to %u)",
                        idlen, DCM_MAX_ID_LEN);
        return APR_EINVAL;
    }
    if (datalen == 0 || datalen > DCM_MAX_PAYLOAD - DCM_ADD_PREFIX - idlen) {
        dcm_log_failure(ctx, s, pool, "cannot store %u bytes under a %u-byte id (distcache takes 1 to %u)",
                        datalen, idlen, DCM_MAX_PAYLOAD - DCM_ADD_PREFIX - idlen);
        return APR_EINVAL;
    }

    if (!DC_CTX_add_session(dc, id, idlen, data, datalen, timeout_ms)) {
        /* The library's 0 covers "the id is already stored", "no answer in time" and "no proxy": it cannot
         * say which, so neither can we. */
        dcm_log_failure(ctx, s, pool, "storing a session (%u-byte id, %u bytes, %lu ms) failed: the cache "
                        "could not be reached, did not answer in time, or already holds this id",
                        idlen, datalen, timeout_ms);
        return APR_EGENERAL;
    }
    apr_atomic_inc32(&ctx->stores);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "distcache %s: stored a session (%u-byte id, %u bytes, %lu ms)",
                 ctx->target, idlen, datalen, timeout_ms);
    return APR_SUCCESS;
}

/* Fetches into the caller's buffer; *datalen is its size on entry and the session's length on success. */
static apr_status_t dcm_retrieve(ap_socache_instance_t *ctx, server_rec *s, const unsigned char *id,
                                 unsigned int idlen, unsigned char *data, unsigned int *datalen, apr_pool_t *pool)
{
    unsigned int used = 0;
    DC_CTX *dc;

    apr_atomic_inc32(&ctx->retrieves);
    if ((dc = dcm_context(ctx)) == NULL) {
        dcm_log_failure(ctx, s, pool, "no session retrieved: the cache address cannot be used (see the warning at start)");
        return APR_EGENERAL;
    }
    /* The cache can hold no such id: do not ask it. */
    if (idlen == 0 || idlen > DCM_MAX_ID_LEN) {
        apr_atomic_inc32(&ctx->misses);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "distcache %s: no session can have a %u-byte id",
                     ctx->target, idlen);
        return APR_NOTFOUND;
    }

    if (!DC_CTX_get_session(dc, id, idlen, data, *datalen, &used)) {
        apr_atomic_inc32(&ctx->misses);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "distcache %s: session not found (%u-byte id)",
                     ctx->target, idlen);
        return APR_NOTFOUND;
    }
    /* On a hit the library reports the session's full length even when it copied only part of it: a
     * truncated session is useless, so this is a failure (APR_ENOSPC, as Apache's providers report it). */
    if (used > *datalen) {
        dcm_log_failure(ctx, s, pool, "a session of %u bytes does not fit the caller's %u-byte buffer",
                        used, *datalen);
        return APR_ENOSPC;
    }
    *datalen = used;
    apr_atomic_inc32(&ctx->hits);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "distcache %s: session found (%u-byte id, %u bytes)",
                 ctx->target, idlen, used);
    return APR_SUCCESS;
}

static apr_status_t dcm_remove(ap_socache_instance_t *ctx, server_rec *s, const unsigned char *id,
                               unsigned int idlen, apr_pool_t *pool)
{
    DC_CTX *dc;

    apr_atomic_inc32(&ctx->removes);
    if ((dc = dcm_context(ctx)) == NULL) {
        dcm_log_failure(ctx, s, pool, "no session removed: the cache address cannot be used (see the warning at start)");
        return APR_EGENERAL;
    }
    if (idlen == 0 || idlen > DCM_MAX_ID_LEN) {
        return APR_NOTFOUND;
    }
    /* OpenSSL removes sessions it will not resume (and TLS 1.3 stateful tickets on use), often ones that
     * are already gone: a 0 here is ordinary, hence debug level. Callers ignore the result. */
    if (!DC_CTX_remove_session(dc, id, idlen)) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "distcache %s: nothing removed (%u-byte id)",
                     ctx->target, idlen);
        return APR_NOTFOUND;
    }
    apr_atomic_inc32(&ctx->removed);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "distcache %s: session removed (%u-byte id)", ctx->target, idlen);
    return APR_SUCCESS;
}

/* mod_status (through mod_ssl's status hook). The counters are this child's: mod_status asks whichever child
 * serves the request, so the page says whose numbers they are. */
static void dcm_status(ap_socache_instance_t *ctx, request_rec *r, int flags)
{
    unsigned stores = apr_atomic_read32(&ctx->stores);
    unsigned expired = apr_atomic_read32(&ctx->expired);
    unsigned retrieves = apr_atomic_read32(&ctx->retrieves);
    unsigned hits = apr_atomic_read32(&ctx->hits);
    unsigned misses = apr_atomic_read32(&ctx->misses);
    unsigned removes = apr_atomic_read32(&ctx->removes);
    unsigned removed = apr_atomic_read32(&ctx->removed);
    unsigned failures = apr_atomic_read32(&ctx->failures);
    int pid = (int)getpid();

    if (flags & AP_STATUS_SHORT) {
        /* Machine-readable "?auto" form: one "Key: value" per line, in the style of the other providers. */
        ap_rprintf(r, "CacheType: DC\n"
                      "CacheTarget: %s\n"
                      "CacheProcess: %d\n"
                      "CacheStoreCount: %u\n"
                      "CacheStoreExpiredCount: %u\n"
                      "CacheRetrieveCount: %u\n"
                      "CacheRetrieveHitCount: %u\n"
                      "CacheRetrieveMissCount: %u\n"
                      "CacheRemoveCount: %u\n"
                      "CacheRemoveHitCount: %u\n"
                      "CacheFailureCount: %u\n",
                   ctx->target, pid, stores, expired, retrieves, hits, misses, removes, removed, failures);
        return;
    }
    /* The target comes from the configuration, but it is still text placed into HTML. */
    ap_rprintf(r, "cache type: <b>DC (distcache)</b>, target: <b>%s</b>, connections kept per worker thread<br>",
               ap_escape_html(r->pool, ctx->target));
    ap_rprintf(r, "counts in this child process (pid %d) since it started:<br>", pid);
    ap_rprintf(r, "sessions stored: <b>%u</b>, not stored as expired: <b>%u</b><br>", stores, expired);
    ap_rprintf(r, "retrieves: <b>%u</b> (<b>%u</b> hit, <b>%u</b> miss)<br>", retrieves, hits, misses);
    ap_rprintf(r, "removes: <b>%u</b> (<b>%u</b> removed)<br>", removes, removed);
    ap_rprintf(r, "failures: <b>%u</b><br>", failures);
}

/* The protocol has no way to list sessions. */
static apr_status_t dcm_iterate(ap_socache_instance_t *ctx, server_rec *s, void *userctx,
                                ap_socache_iterator_t *iterator, apr_pool_t *pool)
{
    (void)ctx;
    (void)s;
    (void)userctx;
    (void)iterator;
    (void)pool;
    return APR_ENOTIMPL;
}

static const ap_socache_provider_t dcm_provider = {
    "distcache",
    /* 0, not AP_SOCACHE_FLAG_NOTMPSAFE: see dcm_init; without DC_CTX_FLAG_PERSISTENT the library is safe from
     * every thread of every child at once, so serialising the whole server's session cache behind one mutex would only cost. */
    0,
    dcm_create,
    dcm_init,
    dcm_destroy,
    dcm_store,
    dcm_retrieve,
    dcm_remove,
    dcm_status,
    dcm_iterate
};

/* ---------------------------------------------------------------------------------------------------------- */
/* Spotting Apache's mod_socache_dc loaded next to us.                                                         */

static void dcm_check_provider_clash(server_rec *s)
{
    const ap_socache_provider_t *active =
        ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, DCM_PROVIDER_NAME, AP_SOCACHE_PROVIDER_VERSION);

    if (active != &dcm_provider) {
        /* Someone registered "dc" after us: "SSLSessionCache dc:..." is served by that module. */
        const char *who = ap_find_linked_module(DCM_APACHE_MODULE_FILE) != NULL
                              ? "Apache's mod_socache_dc" : "another module";
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "distcache: %s has taken over the socache provider name \"%s\", so "
                     "\"SSLSessionCache %s:...\" does NOT use mod_socache_distcache. mod_socache_distcache "
                     "replaces Apache's mod_socache_dc: load only one of them (remove \"LoadModule "
                     "socache_dc_module ...\", Debian: a2dismod socache_dc)",
                     who, DCM_PROVIDER_NAME, DCM_PROVIDER_NAME);
    }
    else if (ap_find_linked_module(DCM_APACHE_MODULE_FILE) != NULL) {
        /* We registered last, so we serve "dc"; the other module is loaded for nothing, and a reordering of
         * the LoadModule lines would silently switch back to it. */
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "distcache: Apache's mod_socache_dc is loaded as well as mod_socache_distcache, which "
                     "replaces it; both register \"%s\" and only the one loaded last is used (here "
                     "mod_socache_distcache). Load only one of them (remove \"LoadModule socache_dc_module "
                     "...\", Debian: a2dismod socache_dc)", DCM_PROVIDER_NAME);
    }
}

static int dcm_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    (void)pconf;
    (void)plog;
    (void)ptemp;
    /* Apache reads its configuration twice at startup; say it once, on the configuration that is kept. */
    if (ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        dcm_check_provider_clash(s);
    }
    return OK;
}

/* "apachectl -t" stops before post-config; report the clash there too. */
static void dcm_test_config(apr_pool_t *pconf, server_rec *s)
{
    (void)pconf;
    dcm_check_provider_clash(s);
}

static void dcm_register_hooks(apr_pool_t *p)
{
    ap_register_provider(p, AP_SOCACHE_PROVIDER_GROUP, DCM_PROVIDER_NAME, AP_SOCACHE_PROVIDER_VERSION,
                         &dcm_provider);
    /* REALLY_LAST: look at the provider table once every other module has had its say. */
    ap_hook_post_config(dcm_post_config, NULL, NULL, APR_HOOK_REALLY_LAST);
    ap_hook_test_config(dcm_test_config, NULL, NULL, APR_HOOK_REALLY_LAST);
}

module AP_MODULE_DECLARE_DATA socache_distcache_module = {
    STANDARD20_MODULE_STUFF,
    NULL, /* per-directory config creator */
    NULL, /* per-directory config merger */
    NULL, /* per-server config creator */
    NULL, /* per-server config merger */
    NULL, /* directives */
    dcm_register_hooks
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 70)
    , 0 /* module flags (httpd 2.4.30 and later have the field; older ones must not see it) */
#endif
};
