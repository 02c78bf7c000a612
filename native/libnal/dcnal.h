/* SPDX-License-Identifier: MIT */
/*
 * libnal: addresses in distcache's text syntax, and blocking socket I/O bounded by a deadline.
 *
 * This is the layer under libdistcache, shipped as libnal.so because programs built against distcache 1.5.1 link
 * with "-ldistcache -lnal". Its functions are this project's own (dcnal_*): 1.5.1's NAL_* API served only 1.5.1's
 * own tools and is not provided. Nothing here allocates, keeps global state or touches signals, so it is safe from
 * any thread and after fork().
 */
#ifndef DISTCACHE_DCNAL_H
#define DISTCACHE_DCNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A connectable address: the socket family and the socket address, resolved once when parsed. */
typedef struct dcnal_address {
    int family; /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t length;
    struct sockaddr_storage storage;
} dcnal_address;

/* Parses a target in the libnal syntax that can be connected to: "IP:host:port" (or "IPv4:"), "IPv6:[addr]:port",
 * "UNIX:/path". Host names are resolved here, once. Returns 0, or -1 with *why set to a static explanation
 * (listen-only forms such as "IP:port" and "FD:n" are refused: a client needs somewhere to connect to). */
int dcnal_address_parse(const char *text, dcnal_address *out, const char **why);

/* Milliseconds on the monotonic clock, for deadlines. */
int64_t dcnal_now_ms(void);

/* Opens a non-blocking, close-on-exec stream socket for the address's family (TCP without Nagle's delay). The
 * descriptor, or -1 with errno set. Separate from connecting so that a caller can record the descriptor (for
 * its fork handler) before it waits for anything. */
int dcnal_socket(const dcnal_address *address);

/* Connects a socket from dcnal_socket to the address, waiting at most until the deadline. 0, or -1 with errno
 * set (ETIMEDOUT when the deadline passed); the descriptor stays open either way. */
int dcnal_connect(int fd, const dcnal_address *address, int64_t deadline_ms);

/* Sends all of buf, waiting for room at most until the deadline; never raises SIGPIPE. 0, or -1 with errno. */
int dcnal_send_all(int fd, const void *buf, size_t length, int64_t deadline_ms);

/* Receives what is available (at least one byte), waiting at most until the deadline. The byte count; 0 when the
 * peer closed; -1 with errno (ETIMEDOUT when the deadline passed). */
ptrdiff_t dcnal_recv_some(int fd, void *buf, size_t capacity, int64_t deadline_ms);

/* True when a kept connection is no longer usable: the peer closed or reset it, or sent bytes nobody asked for. */
int dcnal_is_stale(int fd);

#endif /* DISTCACHE_DCNAL_H */
