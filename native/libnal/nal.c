/* SPDX-License-Identifier: MIT */
/*
 * libnal: distcache's address syntax and deadline-bounded socket I/O (see dcnal.h).
 */
#include "dcnal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int64_t dcnal_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* A port: 1 to 65535 in plain decimal digits, the whole of text. */
static int parse_port(const char *text, uint16_t *port)
{
    unsigned long value = 0;
    if (*text == '\0')
        return -1;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        value = value * 10 + (unsigned long)(*p - '0');
        if (value > 65535)
            return -1;
    }
    if (value == 0)
        return -1;
    *port = (uint16_t)value;
    return 0;
}

/* Splits "prefix:rest" where prefix is one of the libnal type names; returns rest, or NULL. */
static const char *after_prefix(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncasecmp(text, prefix, n) == 0 && text[n] == ':')
        return text + n + 1;
    return NULL;
}

/* Resolves host (a literal or a name) in one family into out. */
static int resolve(const char *host, int family, uint16_t port, dcnal_address *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    out->family = family;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->storage;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out->length = sizeof(*sin);
        if (inet_pton(AF_INET, host, &sin->sin_addr) == 1)
            return 0;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->storage;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        out->length = sizeof(*sin6);
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1)
            return 0;
    }
    /* A dotted address that inet_pton refused ("10.1", "1.2.3.999") is a mistake, not a host name. */
    if (family == AF_INET && strspn(host, "0123456789.") == strlen(host)) {
        *why = "the host is not a full dotted IPv4 address";
        return -1;
    }
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &found) != 0 || found == NULL) {
        *why = "the host name does not resolve";
        return -1;
    }
    memcpy(&out->storage, found->ai_addr, found->ai_addrlen);
    out->length = found->ai_addrlen;
    freeaddrinfo(found);
    if (family == AF_INET)
        ((struct sockaddr_in *)&out->storage)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&out->storage)->sin6_port = htons(port);
    return 0;
}

int dcnal_address_parse(const char *text, dcnal_address *out, const char **why)
{
    const char *rest;
    char host[256];
    uint16_t port;

    *why = NULL;
    if (text == NULL || *text == '\0') {
        *why = "no address given";
        return -1;
    }
    if ((rest = after_prefix(text, "UNIX")) != NULL) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&out->storage;
        size_t n = strlen(rest);
        if (n == 0) {
            *why = "UNIX: needs a socket path";
            return -1;
        }
        if (n >= sizeof(sun->sun_path)) {
            *why = "the unix socket path is longer than 107 bytes";
            return -1;
        }
        memset(out, 0, sizeof(*out));
        out->family = AF_UNIX;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, rest, n + 1);
        out->length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    if (after_prefix(text, "FD") != NULL) {
        *why = "FD:n names an open descriptor, which a client context cannot connect to";
        return -1;
    }
    if ((rest = after_prefix(text, "IPv6")) != NULL) {
        const char *close = strchr(rest, ']');
        size_t n;
        if (rest[0] != '[' || close == NULL) {
            *why = "IPv6 addresses to connect to are written IPv6:[address]:port";
            return -1;
        }
        n = (size_t)(close - rest - 1);
        if (n == 0 || n >= sizeof(host) || close[1] != ':') {
            *why = "IPv6 addresses to connect to are written IPv6:[address]:port";
            return -1;
        }
        memcpy(host, rest + 1, n);
        host[n] = '\0';
        if (parse_port(close + 2, &port) != 0) {
            *why = "the port is not a number from 1 to 65535";
            return -1;
        }
        return resolve(host, AF_INET6, port, out, why);
    }
    if ((rest = after_prefix(text, "IPv4")) != NULL || (rest = after_prefix(text, "IP")) != NULL) {
        const char *colon = strrchr(rest, ':');
        size_t n;
        if (colon == NULL || colon == rest) {
            /* "IP:port" (and 1.5.1's "IP::port") name every interface: listen only. */
            *why = "IP:port names all interfaces and can only be listened on; a client needs IP:host:port";
            return -1;
        }
        n = (size_t)(colon - rest);
        if (n >= sizeof(host)) {
            *why = "the host name is too long";
            return -1;
        }
        memcpy(host, rest, n);
        host[n] = '\0';
        if (parse_port(colon + 1, &port) != 0) {
            *why = "the port is not a number from 1 to 65535";
            return -1;
        }
        return resolve(host, AF_INET, port, out, why);
    }
    *why = "the address does not start with IP:, IPv4:, IPv6: or UNIX:";
    return -1;
}

/* Waits for events on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_for(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - dcnal_now_ms();
        struct pollfd p = { .fd = fd, .events = events, .revents = 0 };
        int n;
        if (left <= 0)
            return 0;
        n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

int dcnal_socket(const dcnal_address *address)
{
    int fd = socket(address->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && address->family != AF_UNIX) {
        /* Requests are single small writes that wait for their answer: Nagle would only add delay. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

int dcnal_connect(int fd, const dcnal_address *address, int64_t deadline_ms)
{
    for (;;) {
        if (connect(fd, (const struct sockaddr *)&address->storage, address->length) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && address->family == AF_UNIX) {
            /* A unix listener's backlog is full; poll() cannot wait for room, so try again shortly. */
            struct timespec pause = { 0, 1000000 };
            if (dcnal_now_ms() >= deadline_ms) {
                errno = ETIMEDOUT;
                return -1;
            }
            nanosleep(&pause, NULL);
            continue;
        }
        if (errno == EINPROGRESS) {
            int ready = wait_for(fd, POLLOUT, deadline_ms), error = 0;
            socklen_t length = sizeof(error);
            if (ready == 0) {
                errno = ETIMEDOUT;
                return -1;
            }
            if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0)
                return -1;
            if (error == 0)
                return 0;
            errno = error;
        }
        return -1;
    }
}

int dcnal_send_all(int fd, const void *buf, size_t length, int64_t deadline_ms)
{
    const unsigned char *p = buf;
    while (length > 0) {
        ssize_t n = send(fd, p, length, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            length -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int ready = wait_for(fd, POLLOUT, deadline_ms);
            if (ready == 0)
                errno = ETIMEDOUT;
            if (ready <= 0)
                return -1;
            continue;
        }
        return -1;
    }
    return 0;
}

ptrdiff_t dcnal_recv_some(int fd, void *buf, size_t capacity, int64_t deadline_ms)
{
    /* Wait first: the caller has just sent a request, so an answer is rarely there yet, and a receive that finds
     * nothing would only cost a system call. */
    int ready = wait_for(fd, POLLIN, deadline_ms);
    for (;;) {
        ssize_t n;
        if (ready == 0)
            errno = ETIMEDOUT;
        if (ready <= 0)
            return -1;
        n = recv(fd, buf, capacity, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        ready = wait_for(fd, POLLIN, deadline_ms);
    }
}

int dcnal_is_stale(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
    int n;
    do {
        n = poll(&p, 1, 0);
    } while (n < 0 && errno == EINTR);
    /* Between requests nothing may arrive: readable means closed, reset, or garbage. */
    return n != 0;
}
