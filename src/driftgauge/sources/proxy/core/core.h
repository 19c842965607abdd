/* The core's settings, buffers and structures, shared by every part (one translation unit: _native.c
 * includes the parts in this order). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD (64 * 1024)
#define MAX_FIELDS 128
#define READ_SIZE (64 * 1024)
#define WRITE_HIGH (64 * 1024)  /* as asyncio's transports: pause the feeding side */
#define WRITE_LOW (16 * 1024)
#define PIPELINE_HIGH (64 * 1024)  /* pipelined bytes held while an exchange runs */
#define MAX_IDLE 64
#define LINGER_SECONDS 10.0
#define ROUTE_SLOTS 4096

enum { K_LISTEN, K_CLIENT, K_UPSTREAM, K_CONTROL, K_TIMER };

/* Counter slots, mirrored by native.py's COUNTERS. */
enum {
    C_OFFERED, C_SAMPLED, C_UNKNOWN_PATH, C_ANSWERED_EARLY, C_BODY_TOO_LARGE, C_QUEUE_FULL,
    C_CONNECT_REFUSED, C_CONNECT_TIMEOUT, C_TIMEOUT, C_UPSTREAM_RESET, C_BAD_RESPONSE,
    C_CLIENT_STALLED, C_HANDOFFS, C_ACCEPT_PAUSED, N_COUNTERS
};

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_add(Buf *b, const void *data, size_t n) {
    if (n == 0) return 0;
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}


static void buf_drop(Buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static void buf_free(Buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

#define BUF_KEPT (64 * 1024)

/* Empty `b` for the next exchange; the room a large body took is let go, not kept by a
 * keep-alive connection while it idles (a pool's connections would each hold a body's). */
static void buf_clear(Buf *b) {
    if (b->cap > BUF_KEPT) buf_free(b);
    else b->len = 0;
}

/* A socket of the loop: its descriptor, what it reads and what waits to be sent. */
typedef struct Sock {
    int kind;
    int fd;
    int closed;
    uint32_t mask;
    Buf in, out;
    size_t out_off;
} Sock;

struct Client;

typedef struct Upstream {
    Sock s;
    struct Client *client;
    int connecting, reused, received_any, usable;
    double connect_deadline;
    struct Upstream *next;  /* in the idle pool, or the list to free */
} Upstream;

enum { R_HEAD, R_LEN, R_CSIZE, R_CDATA, R_CEND, R_TRAILER, R_CLOSE };

typedef struct Client {
    Sock s;
    char peer[INET6_ADDRSTRLEN];
    struct Client *prev, *next;  /* every open client, for the sweep */
    struct Client *free_next;
    int requests;
    double since;        /* last byte read or written (the sweep's clocks) */
    double head_since;   /* first byte of a head not yet complete (0: none) */
    double write_paused_at;
    int up_full;         /* its upstream's buffer is full: the request body is not read */
    int in_process;      /* client_process runs: an exchange answered at once goes on in it */
    int closing, lingering, eof, handoff_wanted;
    int last;            /* the exchange's request said Connection: close: no request after it */
    double linger_until;
    long long discard;   /* body bytes of an exchange answered early, still to read and drop */
    /* the exchange in progress */
    int ex, req_done, head_sent, finished, monitor, generated, is_head, retried;
    long long req_remaining, request_bytes, response_bytes;
    double started, sent, deadline;
    Upstream *up;
    Buf replay;          /* what went upstream, to send again on a stale pooled connection */
    Buf path, request_id, req_fields, resp_fields, cap_req, cap_resp;
    int cap_resp_on, cap_req_on;
    int rstate, status, resp_reusable;
    long long rremaining;
} Client;

typedef struct Record {
    struct Record *next;
    double ts;
    Buf request, response, path, request_id, req_fields, resp_fields;
    int has_id;
    size_t size;
} Record;

typedef struct Done {
    int status;
    double started, sent, finished;
    long long request_bytes, response_bytes;
} Done;

typedef struct Handoff {
    struct Handoff *next;
    int fd;
    Buf data;
} Handoff;

typedef struct {
    char *path;
    size_t len;
    int match;
} RouteSlot;

typedef struct {
    PyObject_HEAD
    /* settings */
    int listen_fd;
    struct sockaddr_storage up_addr, next_up_addr;  /* next: from Core.set_upstream, under the lock */
    socklen_t up_addrlen, next_up_addrlen;
    Buf host_header, request_id_header, id_prefix, scheme;
    PyObject *matches;
    Buf status_lines[600];  /* "HTTP/1.1 <status> <phrase>\r\n", by status */
    double timeout, connect_timeout, client_timeout, idle_timeout;
    long long max_body;
    int rewrite_host, generate_ids;
    long long queue_capacity, queue_bytes;
    /* the loop */
    int ep, wake_fd, control_fd, timer_fd;
    pthread_t thread;
    int started, stopping, draining, finished_thread;
    Sock listen_sock, control_sock, timer_sock;  /* timer: accepting again after a pause */
    volatile int accept_errno;  /* why accepting was last paused */
    Client *clients;
    Client *to_free;
    Upstream *idle, *up_to_free;
    int n_idle;
    unsigned long long id_counter;
    uint64_t rng;
    volatile double rate;
    RouteSlot routes[ROUTE_SLOTS];
    int n_routes;
    int in_flight;
    long long answered;  /* exchanges over, in total (count_done) */
    /* handed to Python, under the lock */
    pthread_mutex_t lock;
    Record *rec_head, *rec_tail;
    long long rec_count, rec_bytes;
    Done *done;
    size_t n_done, cap_done;
    Handoff *hand_head, *hand_tail;
    long long counters[N_COUNTERS];
    int woken, dirty;  /* the wake-up descriptor was written, or is due */
    double last_wake;
} Core;

static double mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
