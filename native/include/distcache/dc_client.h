/* SPDX-License-Identifier: MIT */
/*
 * distcache for .NET: the C client API, compatible with distcache 1.5.1's <distcache/dc_client.h>.
 *
 * Programs built against 1.5.1 (Apache's mod_socache_dc, stunnel, ...) compile and link against this header and
 * libdistcache unchanged: the names, types, flags and constants are 1.5.1's. What differs in behaviour (never an
 * abort, a bounded wait, safe from many threads and across fork(), a floor for very short lifetimes) is listed in
 * docs/libdistcache.md and docs/migrating-from-1.5.1.md.
 */
#ifndef DISTCACHE_DC_CLIENT_H
#define DISTCACHE_DC_CLIENT_H

#ifdef __cplusplus
extern "C" {
#endif

/* The API version; Apache's configure and mod_socache_dc refuse any other value. */
#define DISTCACHE_CLIENT_API    0x0001
/* The binary-compatibility version of this implementation of the API. */
#define DISTCACHE_CLIENT_BINARY 0x0001

/* A context: a target address, its flags, and (with DC_CTX_FLAG_PERSISTENT) the connections it keeps. */
typedef struct st_DC_CTX DC_CTX;

/* Keep connections open between operations instead of one connection per operation. */
#define DC_CTX_FLAG_PERSISTENT          (unsigned int)0x0001
/* Reopen kept connections in a process other than the one that opened them. This library always does so,
 * with or without the flag: a forked child never shares its parent's connection. */
#define DC_CTX_FLAG_PERSISTENT_PIDCHECK (unsigned int)0x0002
/* After a network error on a kept connection, reconnect and send the request once more. */
#define DC_CTX_FLAG_PERSISTENT_RETRY    (unsigned int)0x0004
/* Connect on the first operation instead of in DC_CTX_new(). */
#define DC_CTX_FLAG_PERSISTENT_LATE     (unsigned int)0x0008

/* An extension of this library (1.5.1 has no such flag and ignores it): the caller passes real session lifetimes,
 * so DISTCACHE_MIN_SESSION_TIMEOUT_MS, the floor that makes up for mod_socache_dc's 0-999 ms lifetimes, does not
 * apply to this context. mod_socache_distcache sets it. */
#define DC_CTX_FLAG_EXACT_LIFETIMES     (unsigned int)0x0100

/* 1.5.1's smallest session lifetime, in milliseconds: DC_CTX_add_session() refuses lifetimes of this much or
 * less (returns 0), unless DISTCACHE_MIN_SESSION_TIMEOUT_MS raises them first (see docs/libdistcache.md). */
#define DC_MIN_TIMEOUT 500

/* Parses target ("UNIX:/path", "IP:host:port", "IPv6:[addr]:port") and returns a new context, or NULL when the
 * target is NULL, malformed or cannot be connected to, or memory runs out. With DC_CTX_FLAG_PERSISTENT and
 * without DC_CTX_FLAG_PERSISTENT_LATE it connects at once and returns NULL if it cannot. */
DC_CTX *DC_CTX_new(const char *target, unsigned int flags);

/* Closes the context's connections and frees it. NULL is ignored. No other thread may be using ctx. */
void DC_CTX_free(DC_CTX *ctx);

/* Stores a session under an id for timeout_msecs. 1 when the cache answered OK; 0 otherwise (bad arguments,
 * an id that is already stored, no answer within the time limit, ...). */
int DC_CTX_add_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                       const unsigned char *sess_data, unsigned int sess_len,
                       unsigned long timeout_msecs);

/* Removes the session stored under an id. 1 when the cache removed one; 0 otherwise. */
int DC_CTX_remove_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len);

/* Fetches the session stored under an id. 1 on a hit: *result_used is set to the session's full length, and
 * min(result_size, that length) bytes are copied to result_storage (which may be NULL to ask for the length
 * only). 0 on a miss or a failure. */
int DC_CTX_get_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                       unsigned char *result_storage, unsigned int result_size,
                       unsigned int *result_used);

/* After a DC_CTX_get_session() hit on the same id, on the same ctx, by the same thread, with no other operation
 * of that thread in between: hands the same session back again (into a larger buffer) without asking the cache.
 * Same results as DC_CTX_get_session(); 0 when there is nothing to hand back. */
int DC_CTX_reget_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                         unsigned char *result_storage, unsigned int result_size,
                         unsigned int *result_used);

/* Asks whether a session is stored under an id. 1 yes, 0 no (or an unusual answer), -1 when the request itself
 * failed (bad arguments, no connection, no answer within the time limit). */
int DC_CTX_has_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len);

#ifdef __cplusplus
}
#endif

#endif /* DISTCACHE_DC_CLIENT_H */
