/* The proxy's native forwarding core (`source.proxy.engine: native`).
 *
 * One thread of its own, outside the GIL, runs an epoll loop: it accepts client
 * connections, forwards plain HTTP/1.1 requests over a pool of persistent
 * upstream connections and relays the responses, and copies the bodies of
 * monitored requests into a bounded list that Python takes in batches
 * (Core.take).  Everything it does not handle itself — HTTP/1.0, chunked or
 * oversized request bodies, Expect, Upgrade, TE, any head that is not plainly
 * well-formed — it hands over, before anything of that request went upstream,
 * as the connection's descriptor and the bytes read from it, to the Python proxy
 * (sources/proxy/native.py), which serves that connection from then on.  So the
 * cases the Python proxy's conformance tests cover behave as they do there.
 *
 * The only Python it calls is the route test for a path not seen before
 * (cached), under the GIL.  Times are CLOCK_MONOTONIC seconds, as
 * time.perf_counter() reads on Linux.
 */
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

enum { K_LISTEN, K_CLIENT, K_UPSTREAM, K_CONTROL };

/* Counter slots, mirrored by native.py's COUNTERS. */
enum {
    C_OFFERED, C_SAMPLED, C_UNKNOWN_PATH, C_ANSWERED_EARLY, C_BODY_TOO_LARGE, C_QUEUE_FULL,
    C_CONNECT_REFUSED, C_CONNECT_TIMEOUT, C_TIMEOUT, C_UPSTREAM_RESET, C_BAD_RESPONSE,
    C_CLIENT_STALLED, C_HANDOFFS, N_COUNTERS
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
    struct sockaddr_storage up_addr;
    socklen_t up_addrlen;
    Buf host_header, request_id_header, id_prefix, scheme;
    PyObject *matches;
    Buf status_lines[600];  /* "HTTP/1.1 <status> <phrase>\r\n", by status */
    double timeout, connect_timeout, client_timeout, idle_timeout;
    long long max_body;
    int rewrite_host, generate_ids;
    long long queue_capacity, queue_bytes;
    /* the loop */
    int ep, wake_fd, control_fd;
    pthread_t thread;
    int started, stopping, draining, finished_thread;
    Sock listen_sock, control_sock;
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

/* -- what Python takes -------------------------------------------------------------- */

#define WAKE_INTERVAL 0.001

/* Tell Python there is something to take (under the lock): at once when the last wake-up is
 * over WAKE_INTERVAL old (at low rates, before the answer goes out, so Python counts an
 * exchange before its client sees it) or `urgent`; else at the end of the loop's turn once it
 * is (under load, one wake-up for many exchanges). */
static void write_wake(Core *core, double now) {
    uint64_t one = 1;
    ssize_t r = write(core->wake_fd, &one, sizeof one);
    (void)r;
    core->woken = 1;
    core->dirty = 0;
    core->last_wake = now;
}

static void notify(Core *core, int urgent) {
    if (core->woken) return;  /* Python has yet to take: it takes this too */
    double now = mono();
    if (urgent || now - core->last_wake >= WAKE_INTERVAL) write_wake(core, now);
    else core->dirty = 1;
}

#define wake(core) notify(core, 0)

/* At the end of the loop's turn: a wake-up that was due; returns whether one still is. */
static int wake_due(Core *core, double now) {
    pthread_mutex_lock(&core->lock);
    if (core->dirty && !core->woken && now - core->last_wake >= WAKE_INTERVAL) write_wake(core, now);
    int due = core->dirty && !core->woken;
    pthread_mutex_unlock(&core->lock);
    return due;
}

static void count(Core *core, int slot) {
    pthread_mutex_lock(&core->lock);
    core->counters[slot]++;
    wake(core);
    pthread_mutex_unlock(&core->lock);
}

static void count_done(Core *core, Client *c, int status) {
    pthread_mutex_lock(&core->lock);
    if (core->n_done == core->cap_done) {
        size_t cap = core->cap_done ? core->cap_done * 2 : 256;
        Done *d = realloc(core->done, cap * sizeof(Done));
        if (!d) {
            pthread_mutex_unlock(&core->lock);
            return;
        }
        core->done = d;
        core->cap_done = cap;
    }
    core->answered++;
    Done *d = &core->done[core->n_done++];
    d->status = status;
    d->started = c->started;
    d->sent = c->sent;
    d->finished = mono();
    d->request_bytes = c->request_bytes;
    d->response_bytes = c->response_bytes;
    wake(core);
    pthread_mutex_unlock(&core->lock);
}

static void record_free(Record *r) {
    buf_free(&r->request);
    buf_free(&r->response);
    buf_free(&r->path);
    buf_free(&r->request_id);
    buf_free(&r->req_fields);
    buf_free(&r->resp_fields);
    free(r);
}

static void take_buf(Buf *to, Buf *from) {
    *to = *from;
    from->p = NULL;
    from->len = from->cap = 0;
}

/* The exchange's bodies go to Python (moved, not copied), or are counted as queue_full. */
static void put_record(Core *core, Client *c) {
    size_t size = c->cap_req.len + c->cap_resp.len;
    pthread_mutex_lock(&core->lock);
    if (core->rec_count >= core->queue_capacity || core->rec_bytes + (long long)size > core->queue_bytes) {
        core->counters[C_QUEUE_FULL]++;
        wake(core);
        pthread_mutex_unlock(&core->lock);
        return;
    }
    pthread_mutex_unlock(&core->lock);
    Record *r = calloc(1, sizeof(Record));
    if (!r) return;
    r->ts = wall();
    r->size = size;
    take_buf(&r->request, &c->cap_req);
    take_buf(&r->response, &c->cap_resp);
    buf_add(&r->path, c->path.p, c->path.len);
    buf_add(&r->request_id, c->request_id.p, c->request_id.len);
    r->has_id = c->request_id.len > 0;
    take_buf(&r->req_fields, &c->req_fields);
    take_buf(&r->resp_fields, &c->resp_fields);
    pthread_mutex_lock(&core->lock);
    if (core->rec_tail) core->rec_tail->next = r;
    else core->rec_head = r;
    core->rec_tail = r;
    core->rec_count++;
    core->rec_bytes += (long long)size;
    wake(core);
    pthread_mutex_unlock(&core->lock);
}

/* -- sockets ------------------------------------------------------------------------ */

static void sock_mask(Core *core, Sock *s, uint32_t mask) {
    if (s->closed || mask == s->mask) return;
    struct epoll_event ev = {.events = mask, .data.ptr = s};
    epoll_ctl(core->ep, EPOLL_CTL_MOD, s->fd, &ev);
    s->mask = mask;
}

static int sock_add(Core *core, Sock *s, uint32_t mask) {
    struct epoll_event ev = {.events = mask, .data.ptr = s};
    s->mask = mask;
    return epoll_ctl(core->ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static size_t pending(Sock *s) { return s->out.len - s->out_off; }

/* Send what is queued; returns -1 when the peer is gone. */
static int sock_flush(Sock *s) {
    while (s->out_off < s->out.len) {
        ssize_t n = send(s->fd, s->out.p + s->out_off, s->out.len - s->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            s->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        return -1;
    }
    if (s->out_off == s->out.len) {
        s->out.len = 0;
        s->out_off = 0;
    } else if (s->out_off > 256 * 1024) {
        buf_drop(&s->out, s->out_off);
        s->out_off = 0;
    }
    return 0;
}

/* -- routes ------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

/* Whether monitoring reads bodies sent to `path` (the Python router's answer, remembered). */
static int route_matches(Core *core, const char *path, size_t len) {
    uint64_t h = hash_bytes(path, len);
    size_t i = (size_t)(h % ROUTE_SLOTS);
    for (size_t k = 0; k < ROUTE_SLOTS; k++, i = (i + 1) % ROUTE_SLOTS) {
        RouteSlot *slot = &core->routes[i];
        if (!slot->path) break;
        if (slot->len == len && memcmp(slot->path, path, len) == 0) return slot->match;
    }
    int match = 0;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *text = PyUnicode_DecodeLatin1(path, (Py_ssize_t)len, NULL);
    if (text) {
        PyObject *r = PyObject_CallOneArg(core->matches, text);
        if (r) {
            match = PyObject_IsTrue(r) == 1;
            Py_DECREF(r);
        }
        Py_DECREF(text);
    }
    PyErr_Clear();
    PyGILState_Release(g);
    if (core->n_routes < ROUTE_SLOTS / 2) {
        i = (size_t)(h % ROUTE_SLOTS);
        while (core->routes[i].path) i = (i + 1) % ROUTE_SLOTS;
        char *copy = malloc(len + 1);
        if (copy) {
            memcpy(copy, path, len);
            core->routes[i] = (RouteSlot){copy, len, match};
            core->n_routes++;
        }
    }
    return match;
}

static int admit(Core *core) {
    double rate = core->rate;
    if (rate >= 1.0) return 1;
    uint64_t x = core->rng;  /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    core->rng = x;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0) < rate;
}

/* -- heads -------------------------------------------------------------------------- */

static int lower_eq(const char *p, size_t n, const char *lower) {
    size_t m = strlen(lower);
    return n == m && strncasecmp(p, lower, m) == 0;
}

static const char *HOP_BY_HOP[] = {
    "connection", "http2-settings", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailers", "transfer-encoding", "upgrade", NULL};

static int hop_by_hop(const char *p, size_t n) {
    for (int i = 0; HOP_BY_HOP[i]; i++)
        if (lower_eq(p, n, HOP_BY_HOP[i])) return 1;
    return 0;
}

static int is_tchar(unsigned char ch) {
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return 1;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Whether a line of `p` ends with a bare LF: a head that never gets its CRLF CRLF, malformed
 * as soon as it is seen (the Python proxy's parser says so at once; waiting would time out). */
static int bare_lf(const char *p, size_t n) {
    for (const char *q = memchr(p, '\n', n); q; q = memchr(q + 1, '\n', n - (size_t)(q + 1 - p)))
        if (q == p || q[-1] != '\r') return 1;
    return 0;
}

typedef struct {
    const char *name, *value;
    size_t name_len, value_len;
} Field;

/* Split a head's field lines (between the first line and the blank line) into fields, the
 * values without surrounding whitespace.  Returns the count, or -1 when a line is not a plain
 * `name: value` (obs-fold, a bare LF, a control byte, no colon). */
static int split_fields(const char *p, const char *end, Field *fields, int max) {
    int n = 0;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol[1] != '\n') return -1;  /* in bounds: the head's blank line follows */
        const char *colon = p;
        while (colon < eol && is_tchar((unsigned char)*colon)) colon++;
        if (colon == p || colon == eol || *colon != ':') return -1;
        const char *v = colon + 1, *w = eol;
        for (const char *q = v; q < eol; q++) {
            unsigned char ch = (unsigned char)*q;
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return -1;
        }
        while (v < w && (*v == ' ' || *v == '\t')) v++;
        while (w > v && (w[-1] == ' ' || w[-1] == '\t')) w--;
        if (n == max) return -1;
        fields[n++] = (Field){p, v, (size_t)(colon - p), (size_t)(w - v)};
        p = eol + 2;
    }
    return n;
}

static void add_field(Buf *b, const char *name, size_t nn, const char *value, size_t vn) {
    buf_add(b, name, nn);
    buf_add(b, ": ", 2);
    buf_add(b, value, vn);
    buf_add(b, "\r\n", 2);
}

/* The status line for `status` without a reason of the upstream's. */
static void status_line(Core *core, Buf *out, int status) {
    if (status >= 100 && status < 600 && core->status_lines[status].len) {
        buf_add(out, core->status_lines[status].p, core->status_lines[status].len);
    } else {
        char l[48];
        int k = snprintf(l, sizeof l, "HTTP/1.1 %d Unknown\r\n", status);
        buf_add(out, l, (size_t)k);
    }
}

static void error_response(Core *core, Buf *out, int status, const char *reason, const char *message) {
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"driftgauge\":\"%s\"}", message, reason);
    status_line(core, out, status);
    char head[128];
    int h = snprintf(head, sizeof head, "content-type: application/json\r\ncontent-length: %d\r\n\r\n", n);
    buf_add(out, head, (size_t)h);
    buf_add(out, body, (size_t)n);
}

/* -- clients and upstreams ---------------------------------------------------------- */

static void client_process(Core *core, Client *c);
static void upstream_process(Core *core, Upstream *u);
static void answer(Core *core, Client *c, int status, const char *reason, const char *message, int counter);

static void upstream_close(Core *core, Upstream *u) {
    if (u->s.closed) return;
    u->s.closed = 1;
    u->usable = 0;
    epoll_ctl(core->ep, EPOLL_CTL_DEL, u->s.fd, NULL);
    close(u->s.fd);
    u->client = NULL;
    u->next = core->up_to_free;
    core->up_to_free = u;
}

static Upstream *upstream_connect(Core *core, double now) {
    int fd = socket(core->up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Upstream *u = calloc(1, sizeof(Upstream));
    if (!u) {
        close(fd);
        return NULL;
    }
    u->s.kind = K_UPSTREAM;
    u->s.fd = fd;
    int r = connect(fd, (struct sockaddr *)&core->up_addr, core->up_addrlen);
    if (r < 0 && errno != EINPROGRESS) {
        close(fd);
        free(u);
        errno = ECONNREFUSED;
        return NULL;
    }
    u->connecting = r < 0;
    u->usable = 1;
    u->connect_deadline = now + core->connect_timeout;
    sock_add(core, &u->s, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    return u;
}

static void upstream_release(Core *core, Upstream *u) {
    u->client = NULL;
    if (!u->usable || u->s.in.len || core->draining || core->n_idle >= MAX_IDLE) {
        upstream_close(core, u);
        return;
    }
    u->reused = 0;
    u->received_any = 0;
    sock_mask(core, &u->s, EPOLLIN | EPOLLRDHUP);  /* idle: notice a close */
    u->next = core->idle;
    core->idle = u;
    core->n_idle++;
}

static Upstream *upstream_take_idle(Core *core) {
    while (core->idle) {
        Upstream *u = core->idle;
        core->idle = u->next;
        core->n_idle--;
        u->next = NULL;
        if (u->usable && !u->s.closed) return u;
    }
    return NULL;
}

static void client_reset_exchange(Client *c) {
    c->ex = c->req_done = c->head_sent = c->finished = c->monitor = c->generated = 0;
    c->is_head = c->retried = c->cap_resp_on = c->cap_req_on = 0;
    c->req_remaining = c->request_bytes = c->response_bytes = 0;
    c->started = c->sent = c->deadline = 0;
    c->up = NULL;
    c->replay.len = c->path.len = c->request_id.len = c->req_fields.len = c->resp_fields.len = 0;
    c->cap_req.len = c->cap_resp.len = 0;
    c->rstate = R_HEAD;
    c->status = 0;
    c->resp_reusable = 0;
    c->rremaining = 0;
}

static void client_free(Client *c) {
    buf_free(&c->s.in);
    buf_free(&c->s.out);
    buf_free(&c->replay);
    buf_free(&c->path);
    buf_free(&c->request_id);
    buf_free(&c->req_fields);
    buf_free(&c->resp_fields);
    buf_free(&c->cap_req);
    buf_free(&c->cap_resp);
    free(c);
}

static void client_unlink(Core *core, Client *c) {
    if (c->prev) c->prev->next = c->next;
    else core->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->free_next = core->to_free;
    core->to_free = c;
}

static void client_drop_upstream(Core *core, Client *c) {
    Upstream *u = c->up;
    c->up = NULL;
    if (u) upstream_close(core, u);
}

/* Close now (the peer is gone, or it was aborted). */
static void client_destroy(Core *core, Client *c) {
    if (c->s.closed) return;
    if (c->ex) core->in_flight--;
    c->ex = 0;
    client_drop_upstream(core, c);
    c->s.closed = 1;
    epoll_ctl(core->ep, EPOLL_CTL_DEL, c->s.fd, NULL);
    close(c->s.fd);
    client_unlink(core, c);
}

/* Send what is queued, then close; `linger`: close the writing side only and read on (and
 * drop) until the client's end or LINGER_SECONDS, as the Python proxy's Lingering. */
static void client_close(Core *core, Client *c, int linger) {
    if (c->closing) return;
    c->closing = 1;
    c->lingering = linger;
    c->linger_until = mono() + LINGER_SECONDS;
    if (c->ex) core->in_flight--;
    c->ex = 0;
    client_drop_upstream(core, c);
}

static void hand_over(Core *core, Client *c) {
    /* hand the connection to Python: it was read up to what `in` holds, and all was sent */
    Handoff *h = calloc(1, sizeof(Handoff));
    if (!h) {
        client_destroy(core, c);
        return;
    }
    epoll_ctl(core->ep, EPOLL_CTL_DEL, c->s.fd, NULL);
    h->fd = c->s.fd;
    take_buf(&h->data, &c->s.in);
    c->s.closed = 1;
    client_unlink(core, c);
    pthread_mutex_lock(&core->lock);
    if (core->hand_tail) core->hand_tail->next = h;
    else core->hand_head = h;
    core->hand_tail = h;
    core->counters[C_HANDOFFS]++;
    notify(core, 1);
    pthread_mutex_unlock(&core->lock);
}

/* After anything happened on a client or its upstream: send what is queued on both, set what
 * each socket waits for (a side is not read while the other's buffer is full), finish a close
 * or a handoff. */
static void settle(Core *core, Client *c) {
    if (c->s.closed) return;
    if (sock_flush(&c->s) < 0) {
        client_destroy(core, c);
        return;
    }
    size_t waiting = pending(&c->s);
    if (c->closing && !waiting) {
        if (!c->lingering) {
            client_destroy(core, c);
            return;
        }
        if (c->lingering == 1) {
            shutdown(c->s.fd, SHUT_WR);
            c->lingering = 2;
        }
    }
    if (waiting > WRITE_HIGH && !c->write_paused_at) c->write_paused_at = mono();
    else if (waiting <= WRITE_LOW) c->write_paused_at = 0;
    Upstream *u = c->up;
    if (u && !u->s.closed) {
        if (!u->connecting && sock_flush(&u->s) < 0) {
            /* its read side reports the loss; until then it is only read */
            sock_mask(core, &u->s, EPOLLIN | EPOLLRDHUP);
        } else {
            size_t up_waiting = pending(&u->s);
            if (up_waiting > WRITE_HIGH) c->up_full = 1;
            else if (up_waiting <= WRITE_LOW) c->up_full = 0;
            uint32_t mask = (u->connecting || up_waiting) ? EPOLLOUT : 0;
            if (!u->connecting && !c->write_paused_at) mask |= EPOLLIN | EPOLLRDHUP;
            sock_mask(core, &u->s, mask);
        }
    } else {
        c->up_full = 0;
    }
    int reading = !c->eof && (!c->closing || c->lingering) && !c->handoff_wanted &&
                  !(c->last && c->req_done);  /* what follows a last request is not read */
    if (c->ex && !c->req_done && c->up_full) reading = 0;
    if (c->ex && c->req_done && c->s.in.len > PIPELINE_HIGH) reading = 0;
    sock_mask(core, &c->s, (reading ? EPOLLIN | EPOLLRDHUP : 0) | (waiting ? EPOLLOUT : 0));
    if (c->handoff_wanted && !waiting && !c->ex && !c->closing) hand_over(core, c);
}

/* The exchange is over (answered): the connection's next request, or its end. */
static void exchange_over(Core *core, Client *c) {
    int req_done = c->req_done;
    long long remaining = c->req_remaining;
    core->in_flight--;
    c->ex = 0;
    c->up = NULL;
    buf_clear(&c->replay);  /* the copies of its bodies are done with */
    buf_clear(&c->cap_req);
    buf_clear(&c->cap_resp);
    if (!req_done) c->discard = remaining;  /* answered early: read and drop the rest */
    if (c->eof || c->last) {  /* the client half-closed, or said close: its last answer */
        client_close(core, c, 0);
        return;
    }
    if (!c->in_process) client_process(core, c);  /* else its loop goes on to the next request */
}

static void answer(Core *core, Client *c, int status, const char *reason, const char *message, int counter) {
    if (counter >= 0) count(core, counter);
    c->deadline = 0;
    client_drop_upstream(core, c);
    if (c->head_sent) {
        count_done(core, c, 0);
        client_close(core, c, 0);
        return;
    }
    error_response(core, &c->s.out, status, reason, message);
    count_done(core, c, status);
    if (!c->req_done) {
        client_close(core, c, 1);
        return;
    }
    exchange_over(core, c);
}

static void send_upstream(Core *core, Client *c, Upstream *u, double now) {
    u->client = c;
    c->up = u;
    buf_add(&u->s.out, c->replay.p, c->replay.len);
    if (!u->connecting) {
        c->sent = now;
        c->deadline = now + core->timeout;
    }
}

static int known_method(const char *p, size_t n) {
    static const char *methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", NULL};
    for (int i = 0; methods[i]; i++)
        if (n == strlen(methods[i]) && memcmp(p, methods[i], n) == 0) return 1;
    return 0;
}

/* Parse the head `in` starts with (`end`: past its blank line) and start the exchange; 0 when
 * started, 1 when the request is not one this core forwards (hand the connection over). */
static int start_exchange(Core *core, Client *c, size_t head_len, double now) {
    const char *p = c->s.in.p, *end = p + head_len;
    const char *eol = memchr(p, '\r', head_len);
    if (!eol || eol[1] != '\n') return 1;
    /* request line: METHOD SP origin-form SP HTTP/1.1 */
    const char *sp = p;
    while (sp < eol && *sp >= 'A' && *sp <= 'Z') sp++;
    size_t method_len = (size_t)(sp - p);
    if (method_len == 0 || method_len > 15 || sp >= eol || *sp != ' ') return 1;
    const char *target = sp + 1, *t = target;
    while (t < eol && (unsigned char)*t > 0x20 && (unsigned char)*t < 0x7f) t++;
    size_t target_len = (size_t)(t - target);
    if (target_len == 0 || *target != '/' || t + 9 != eol || memcmp(t, " HTTP/1.1", 9) != 0) return 1;
    if (!known_method(p, method_len)) return 1;  /* the parser of the Python proxy decides */
    Field fields[MAX_FIELDS];
    int n = split_fields(eol + 2, end - 2, fields, MAX_FIELDS);
    if (n < 0) return 1;
    long long length = -1;
    int has_host = 0, has_proto = 0, id_index = -1, last = 0;
    Buf forwarded = {0};
    for (int i = 0; i < n; i++) {
        Field *f = &fields[i];
        if (lower_eq(f->name, f->name_len, "content-length")) {
            if (length >= 0 || f->value_len == 0 || f->value_len > 15) goto handoff;
            long long v = 0;
            for (size_t k = 0; k < f->value_len; k++) {
                if (f->value[k] < '0' || f->value[k] > '9') goto handoff;
                v = v * 10 + (f->value[k] - '0');
            }
            length = v;
        } else if (lower_eq(f->name, f->name_len, "transfer-encoding") || lower_eq(f->name, f->name_len, "expect") ||
                   lower_eq(f->name, f->name_len, "upgrade") || lower_eq(f->name, f->name_len, "te")) {
            goto handoff;
        } else if (lower_eq(f->name, f->name_len, "connection")) {
            if (lower_eq(f->value, f->value_len, "close")) last = 1;
            else if (!lower_eq(f->value, f->value_len, "keep-alive")) goto handoff;
        } else if (lower_eq(f->name, f->name_len, "x-forwarded-for")) {
            buf_add(&forwarded, f->value, f->value_len);
            buf_add(&forwarded, ", ", 2);
        } else if (lower_eq(f->name, f->name_len, "host")) {
            has_host = 1;
        } else if (lower_eq(f->name, f->name_len, "x-forwarded-proto")) {
            has_proto = 1;
        } else if (f->name_len == core->request_id_header.len &&
                   strncasecmp(f->name, core->request_id_header.p, f->name_len) == 0) {
            if (f->value_len) id_index = i;  /* the last non-empty one, as the Python proxy */
        }
    }
    const char *q = memchr(target, '?', target_len);
    size_t path_len = q ? (size_t)(q - target) : target_len;
    int body_method = lower_eq(p, method_len, "post") || lower_eq(p, method_len, "put") ||
                      lower_eq(p, method_len, "patch");
    if (length > core->max_body || (body_method && length < 0)) goto handoff;
    int predicted = body_method && route_matches(core, target, path_len);

    /* the exchange */
    client_reset_exchange(c);
    c->ex = 1;
    c->last = last;
    core->in_flight++;
    c->requests++;
    c->started = c->head_since ? c->head_since : now;
    c->head_since = 0;
    c->is_head = lower_eq(p, method_len, "head");
    c->req_remaining = length > 0 ? length : 0;
    buf_add(&c->path, target, path_len);
    if (id_index >= 0) buf_add(&c->request_id, fields[id_index].value, fields[id_index].value_len);
    if (predicted) {
        int admitted = admit(core);
        c->monitor = c->cap_req_on = admitted;
        pthread_mutex_lock(&core->lock);
        core->counters[C_OFFERED]++;
        core->counters[C_SAMPLED] += !admitted;
        pthread_mutex_unlock(&core->lock);
    } else if (body_method) {
        count(core, C_UNKNOWN_PATH);
    }
    int make_id = predicted && core->generate_ids && id_index < 0;
    /* the head to send upstream */
    Buf *h = &c->replay;
    buf_add(h, p, (size_t)(eol + 2 - p));
    for (int i = 0; i < n; i++) {
        Field *f = &fields[i];
        if (hop_by_hop(f->name, f->name_len) || lower_eq(f->name, f->name_len, "x-forwarded-for") ||
            (core->rewrite_host && lower_eq(f->name, f->name_len, "host")))
            continue;
        if (make_id && f->name_len == core->request_id_header.len &&
            strncasecmp(f->name, core->request_id_header.p, f->name_len) == 0)
            continue;
        add_field(h, f->name, f->name_len, f->value, f->value_len);
    }
    if (c->monitor) buf_add(&c->req_fields, eol + 2, (size_t)(end - eol - 4));  /* the field lines */
    if (core->rewrite_host || !has_host) add_field(h, "host", 4, core->host_header.p, core->host_header.len);
    buf_add(&forwarded, c->peer, strlen(c->peer));
    add_field(h, "x-forwarded-for", 15, forwarded.p, forwarded.len);
    buf_free(&forwarded);
    if (!has_proto) add_field(h, "x-forwarded-proto", 17, core->scheme.p, core->scheme.len);
    if (make_id) {
        char id[96];
        int k = snprintf(id, sizeof id, "%.*s%llx", (int)core->id_prefix.len, core->id_prefix.p, ++core->id_counter);
        buf_add(&c->request_id, id, (size_t)k);
        c->generated = 1;
        add_field(h, core->request_id_header.p, core->request_id_header.len, id, (size_t)k);
    }
    buf_add(h, "\r\n", 2);
    buf_drop(&c->s.in, head_len);
    c->req_done = c->req_remaining == 0;

    Upstream *u = upstream_take_idle(core);
    if (u) {
        u->reused = 1;
        sock_mask(core, &u->s, EPOLLIN | EPOLLRDHUP);
    } else {
        u = upstream_connect(core, now);
        if (!u) {
            answer(core, c, 502, "connect_refused", "upstream unavailable", C_CONNECT_REFUSED);
            return 0;
        }
    }
    send_upstream(core, c, u, now);
    return 0;
handoff:
    buf_free(&forwarded);
    return 1;
}

/* Request body bytes from the client: to the upstream (and the replay copy, and monitoring's). */
static void forward_body(Core *core, Client *c, const char *p, size_t n, double now) {
    c->request_bytes += (long long)n;
    c->req_remaining -= (long long)n;
    if (c->cap_req_on) buf_add(&c->cap_req, p, n);
    buf_add(&c->replay, p, n);
    if (c->up && !c->up->s.closed) buf_add(&c->up->s.out, p, n);
    if (c->sent) c->deadline = now + core->timeout;
    if (c->req_remaining == 0) c->req_done = 1;
}

static void client_process(Core *core, Client *c) {
    double now = mono();
    c->in_process = 1;
    while (!c->closing && !c->s.closed) {
        Buf *in = &c->s.in;
        if (c->discard > 0) {
            size_t n = in->len < (size_t)c->discard ? in->len : (size_t)c->discard;
            buf_drop(in, n);
            c->discard -= (long long)n;
            if (c->discard > 0) break;
            continue;
        }
        if (!c->ex) {
            if (c->handoff_wanted) break;
            if (!in->len) {
                if (core->draining || c->eof) client_close(core, c, 0);
                break;
            }
            if (!c->head_since) c->head_since = now;
            size_t scan = in->len < MAX_HEAD ? in->len : MAX_HEAD;
            const char *end = memmem(in->p, scan, "\r\n\r\n", 4);
            if (!end) {
                if (in->len >= MAX_HEAD || in->p[0] == '\r' || in->p[0] == '\n' || c->eof ||
                    bare_lf(in->p, scan))
                    c->handoff_wanted = 1;  /* the Python proxy answers (or refuses) it */
                break;
            }
            if (start_exchange(core, c, (size_t)(end + 4 - in->p), now)) {
                c->handoff_wanted = 1;
                break;
            }
            continue;
        }
        if (!c->req_done) {
            size_t n = in->len < (size_t)c->req_remaining ? in->len : (size_t)c->req_remaining;
            if (n) forward_body(core, c, in->p, n, now);
            buf_drop(in, n);
            if (!c->req_done) break;
            continue;
        }
        break;  /* an exchange waits for its response: pipelined bytes wait with it */
    }
    c->in_process = 0;
    settle(core, c);
}

static void client_readable(Core *core, Client *c) {
    Buf *in = &c->s.in;
    if (buf_reserve(in, READ_SIZE)) {
        client_destroy(core, c);
        return;
    }
    ssize_t n = recv(c->s.fd, in->p + in->len, READ_SIZE, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        client_destroy(core, c);
        return;
    }
    c->since = mono();
    if (c->lingering) {  /* read and dropped */
        if (n == 0) client_destroy(core, c);
        return;
    }
    if (n == 0) {
        c->eof = 1;
        if (c->ex && !c->req_done) {
            /* the body was cut short: the upstream never gets the rest */
            client_destroy(core, c);
            return;
        }
    }
    in->len += (size_t)n;
    client_process(core, c);
}

/* -- the response ------------------------------------------------------------------- */

/* The response is all relayed: count it and hand monitoring its bodies. */
static void response_relayed(Core *core, Client *c) {
    c->deadline = 0;
    c->finished = 1;
    count_done(core, c, c->status);
    if (c->monitor && c->cap_resp_on && c->cap_req_on) {
        if (c->req_done) put_record(core, c);
        else count(core, C_ANSWERED_EARLY);  /* monitoring would hold part of the request */
    }
}

static void finish_response(Core *core, Client *c, Upstream *u, int reusable) {
    response_relayed(core, c);
    c->up = NULL;
    if (reusable && c->req_done) upstream_release(core, u);
    else upstream_close(core, u);
    exchange_over(core, c);
}

static void relay(Client *c, const char *p, size_t n) { buf_add(&c->s.out, p, n); }

static void capture_response(Core *core, Client *c, const char *p, size_t n) {
    c->response_bytes += (long long)n;
    if (!c->cap_resp_on) return;
    if ((long long)(c->cap_resp.len + n) > core->max_body) {
        c->cap_resp_on = 0;
        buf_free(&c->cap_resp);
        count(core, C_BODY_TOO_LARGE);
        return;
    }
    buf_add(&c->cap_resp, p, n);
}

static void head_line(Core *core, Buf *out, int status, const char *reason, size_t reason_len) {
    if (!reason_len) {
        status_line(core, out, status);
        return;
    }
    char l[32];
    int k = snprintf(l, sizeof l, "HTTP/1.1 %d ", status);
    buf_add(out, l, (size_t)k);
    buf_add(out, reason, reason_len);
    buf_add(out, "\r\n", 2);
}

/* The response head `in` starts with: relayed (rewritten) to the client.  Returns 0 done, 1 an
 * interim head (parse the next), -1 a malformed one. */
static int response_head(Core *core, Client *c, Upstream *u, size_t head_len) {
    const char *p = u->s.in.p, *end = p + head_len;
    const char *eol = memchr(p, '\r', head_len);
    if (!eol || eol[1] != '\n' || eol - p < 12) return -1;
    if (memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ') return -1;
    int http10 = p[7] == '0';
    int status = 0;
    for (int k = 9; k < 12; k++) {
        if (p[k] < '0' || p[k] > '9') return -1;
        status = status * 10 + (p[k] - '0');
    }
    if (status < 100) return -1;
    const char *reason = p + 12;
    if (reason < eol && *reason != ' ') return -1;
    if (reason < eol) reason++;
    size_t reason_len = (size_t)(eol - reason);
    if (memchr(reason, '\n', reason_len)) return -1;  /* relayed, it would end the line early */
    Field fields[MAX_FIELDS];
    int n = split_fields(eol + 2, end - 2, fields, MAX_FIELDS);
    if (n < 0) return -1;
    if (status == 101) return -1;  /* no upgrade was asked for */
    int interim = status < 200;
    /* connection tokens name more hop-by-hop fields */
    Buf transfer = {0};
    int chunked = 0, close_token = 0, has_length = 0, keep_alive_token = 0, echoed = 0;
    long long length = -1;
    for (int i = 0; i < n; i++) {
        Field *f = &fields[i];
        if (lower_eq(f->name, f->name_len, "transfer-encoding")) {
            if (transfer.len) buf_add(&transfer, ", ", 2);
            buf_add(&transfer, f->value, f->value_len);
        } else if (lower_eq(f->name, f->name_len, "content-length")) {
            long long v = 0;
            if (f->value_len == 0 || f->value_len > 18) goto bad;
            for (size_t k = 0; k < f->value_len; k++) {
                if (f->value[k] < '0' || f->value[k] > '9') goto bad;
                v = v * 10 + (f->value[k] - '0');
            }
            if (has_length && v != length) goto bad;
            has_length = 1;
            length = v;
        } else if (lower_eq(f->name, f->name_len, "connection")) {
            const char *v = f->value, *vend = f->value + f->value_len;
            while (v < vend) {
                const char *comma = memchr(v, ',', (size_t)(vend - v));
                const char *te = comma ? comma : vend, *a = v, *b = te;
                while (a < b && (*a == ' ' || *a == '\t')) a++;
                while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
                if (lower_eq(a, (size_t)(b - a), "close")) close_token = 1;
                if (lower_eq(a, (size_t)(b - a), "keep-alive")) keep_alive_token = 1;
                v = comma ? comma + 1 : vend;
            }
        } else if (f->name_len == core->request_id_header.len &&
                   strncasecmp(f->name, core->request_id_header.p, f->name_len) == 0) {
            echoed = 1;
        }
    }
    if (transfer.len) {
        /* chunked is the last coding when present */
        const char *t = transfer.p + transfer.len;
        size_t k = transfer.len;
        while (k && (t[-1] == ' ' || t[-1] == '\t')) t--, k--;
        chunked = k >= 7 && strncasecmp(t - 7, "chunked", 7) == 0;
        if (chunked && has_length) {
            buf_free(&transfer);
            return -1;
        }
    }
    Buf *out = &c->s.out;
    int no_body = c->is_head || status == 204 || status == 304;
    int close_delimited = !has_length && !chunked && !no_body;
    if (interim) {
        if (status != 100) {
            head_line(core, out, status, reason, reason_len);
            goto copy_fields;
        }
        buf_free(&transfer);
        return 1;
    }
    c->status = status;
    c->deadline = mono() + core->timeout;
    c->resp_reusable = !http10 ? !close_token : keep_alive_token && !close_token;
    if (close_delimited) c->resp_reusable = 0;
    if (c->monitor && status >= 200 && status < 300) c->cap_resp_on = 1;
    head_line(core, out, status, reason, reason_len);
copy_fields:
    for (int i = 0; i < n; i++) {
        Field *f = &fields[i];
        if (hop_by_hop(f->name, f->name_len)) continue;
        /* fields a Connection header names */
        int named = 0;
        for (int j = 0; j < n && !named; j++) {
            Field *g = &fields[j];
            if (!lower_eq(g->name, g->name_len, "connection")) continue;
            const char *v = g->value, *vend = g->value + g->value_len;
            while (v < vend) {
                const char *comma = memchr(v, ',', (size_t)(vend - v));
                const char *te = comma ? comma : vend, *a = v, *b = te;
                while (a < b && (*a == ' ' || *a == '\t')) a++;
                while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
                if ((size_t)(b - a) == f->name_len && strncasecmp(a, f->name, f->name_len) == 0) named = 1;
                v = comma ? comma + 1 : vend;
            }
        }
        if (named) continue;
        add_field(out, f->name, f->name_len, f->value, f->value_len);
    }
    if (interim) {
        buf_add(out, "\r\n", 2);
        buf_free(&transfer);
        return 1;
    }
    if (c->monitor) buf_add(&c->resp_fields, eol + 2, (size_t)(end - eol - 4));  /* the field lines */
    if (c->generated && !echoed)
        add_field(out, core->request_id_header.p, core->request_id_header.len, c->request_id.p, c->request_id.len);
    if (!no_body && chunked) add_field(out, "transfer-encoding", 17, transfer.p, transfer.len);
    else if (close_delimited) add_field(out, "transfer-encoding", 17, "chunked", 7);
    if (c->eof || c->last) add_field(out, "connection", 10, "close", 5);
    buf_add(out, "\r\n", 2);
    buf_free(&transfer);
    c->head_sent = 1;
    if (no_body) c->rstate = -1;
    else if (chunked) c->rstate = R_CSIZE;
    else if (close_delimited) c->rstate = R_CLOSE;
    else {
        c->rstate = R_LEN;
        c->rremaining = length;
    }
    return 0;
bad:
    buf_free(&transfer);
    return -1;
}

static void bad_response(Core *core, Client *c) {
    answer(core, c, 502, "bad_response", "bad response from upstream", C_BAD_RESPONSE);
}

static void upstream_process(Core *core, Upstream *u) {
    Client *c = u->client;
    Buf *in = &u->s.in;
    while (c && c->up == u && in->len) {
        switch (c->rstate) {
        case R_HEAD: {
            size_t scan = in->len < MAX_HEAD ? in->len : MAX_HEAD;
            const char *end = memmem(in->p, scan, "\r\n\r\n", 4);
            if (!end) {
                if (in->len >= MAX_HEAD || bare_lf(in->p, scan)) bad_response(core, c);
                return;
            }
            size_t head_len = (size_t)(end + 4 - in->p);
            int r = response_head(core, c, u, head_len);
            if (r < 0) {
                bad_response(core, c);
                return;
            }
            buf_drop(in, head_len);
            if (r == 0 && (c->rstate == -1 || (c->rstate == R_LEN && c->rremaining == 0))) {
                finish_response(core, c, u, c->resp_reusable);
                return;
            }
            break;
        }
        case R_LEN: {
            size_t n = in->len < (size_t)c->rremaining ? in->len : (size_t)c->rremaining;
            relay(c, in->p, n);
            capture_response(core, c, in->p, n);
            buf_drop(in, n);
            c->rremaining -= (long long)n;
            if (c->rremaining == 0) {
                finish_response(core, c, u, c->resp_reusable);
                return;
            }
            break;
        }
        case R_CSIZE:
        case R_TRAILER: {
            size_t scan = in->len < 4096 ? in->len : 4096;
            const char *eol = memmem(in->p, scan, "\r\n", 2);
            if (!eol) {
                if (in->len >= 4096) bad_response(core, c);
                return;
            }
            size_t line = (size_t)(eol + 2 - in->p);
            if (c->rstate == R_TRAILER) {
                Field field;  /* relayed verbatim: a plain `name: value` line only */
                if (line > 2 && split_fields(in->p, in->p + line, &field, 1) != 1) {
                    bad_response(core, c);
                    return;
                }
                relay(c, in->p, line);
                buf_drop(in, line);
                if (line == 2) {
                    finish_response(core, c, u, c->resp_reusable);
                    return;
                }
                break;
            }
            long long size = 0;
            size_t k = 0;
            for (; in->p + k < eol; k++) {
                char ch = in->p[k];
                int d = (ch >= '0' && ch <= '9') ? ch - '0' : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                      : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;
                if (d < 0) break;
                if (k >= 15) {
                    bad_response(core, c);
                    return;
                }
                size = size * 16 + d;
            }
            if (k == 0 || (in->p + k < eol && in->p[k] != ';' && in->p[k] != ' ' && in->p[k] != '\t')) {
                bad_response(core, c);
                return;
            }
            for (const char *q = in->p + k; q < eol; q++) {  /* the extension, relayed verbatim */
                unsigned char ch = (unsigned char)*q;
                if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                    bad_response(core, c);
                    return;
                }
            }
            relay(c, in->p, line);
            buf_drop(in, line);
            if (size == 0) c->rstate = R_TRAILER;
            else {
                c->rstate = R_CDATA;
                c->rremaining = size;
            }
            break;
        }
        case R_CDATA: {
            size_t n = in->len < (size_t)c->rremaining ? in->len : (size_t)c->rremaining;
            relay(c, in->p, n);
            capture_response(core, c, in->p, n);
            buf_drop(in, n);
            c->rremaining -= (long long)n;
            if (c->rremaining == 0) c->rstate = R_CEND;
            break;
        }
        case R_CEND:
            if (in->len < 2) return;
            if (in->p[0] != '\r' || in->p[1] != '\n') {
                bad_response(core, c);
                return;
            }
            relay(c, "\r\n", 2);
            buf_drop(in, 2);
            c->rstate = R_CSIZE;
            break;
        case R_CLOSE: {
            char size[24];
            int k = snprintf(size, sizeof size, "%zx\r\n", in->len);
            relay(c, size, (size_t)k);
            relay(c, in->p, in->len);
            capture_response(core, c, in->p, in->len);
            relay(c, "\r\n", 2);
            in->len = 0;
            break;
        }
        default:
            return;
        }
    }
}

/* The upstream connection ended (EOF or error) while `c` was using it. */
static void upstream_lost(Core *core, Upstream *u) {
    Client *c = u->client;
    upstream_close(core, u);
    if (!c || c->up != u) return;
    c->up = NULL;
    if (c->rstate == R_CLOSE && c->head_sent) {
        relay(c, "0\r\n\r\n", 5);
        response_relayed(core, c);
        exchange_over(core, c);
        return;
    }
    if (u->reused && !u->received_any && c->req_done && !c->retried) {
        /* a stale pooled connection: once more on a new one */
        c->retried = 1;
        double now = mono();
        Upstream *v = upstream_connect(core, now);
        if (v) {
            v->reused = 0;
            send_upstream(core, c, v, now);
            return;
        }
        answer(core, c, 502, "connect_refused", "upstream unavailable", C_CONNECT_REFUSED);
        return;
    }
    answer(core, c, 502, "upstream_reset", "upstream closed the connection", C_UPSTREAM_RESET);
}

static void idle_lost(Core *core, Upstream *u) {
    Upstream **link = &core->idle;
    while (*link && *link != u) link = &(*link)->next;
    if (*link) {
        *link = u->next;
        core->n_idle--;
    }
    upstream_close(core, u);
}

static void upstream_event(Core *core, Upstream *u, uint32_t events) {
    Client *c = u->client;
    if (!c) {  /* idle in the pool: it closed, or sent bytes nobody asked for */
        idle_lost(core, u);
        return;
    }
    if (u->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(u->s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            upstream_close(core, u);
            c->up = NULL;
            answer(core, c, 502, "connect_refused", "upstream unavailable", C_CONNECT_REFUSED);
            settle(core, c);
            return;
        }
        if (!(events & EPOLLOUT)) return;
        u->connecting = 0;
        double now = mono();
        c->sent = now;
        c->deadline = now + core->timeout;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
        Buf *in = &u->s.in;
        int lost = 0;
        if (buf_reserve(in, READ_SIZE) == 0) {
            ssize_t n = recv(u->s.fd, in->p + in->len, READ_SIZE, 0);
            if (n > 0) {
                in->len += (size_t)n;
                u->received_any = 1;
            } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                lost = 1;
            }
        }
        if (in->len) {
            double now = mono();
            if (c->deadline) c->deadline = now + core->timeout;
            c->since = now;
            upstream_process(core, u);
        }
        if (lost && !c->s.closed && c->up == u) upstream_lost(core, u);
    }
    settle(core, c);
}

/* -- the sweep ---------------------------------------------------------------------- */

static void sweep(Core *core, double now) {
    Client *next;
    for (Client *c = core->clients; c; c = next) {
        next = c->next;
        if (c->s.closed) continue;
        if (c->lingering) {
            if (now > c->linger_until) client_destroy(core, c);
            continue;
        }
        if (c->closing) continue;
        if (!c->ex) {
            if (c->head_since && now - c->head_since > core->client_timeout) {
                count(core, C_CLIENT_STALLED);
                error_response(core, &c->s.out, 408, "client_stalled", "request head not received in time");
                client_close(core, c, 1);
                settle(core, c);
            } else if (c->discard > 0) {
                /* answered before its body was all in: the answer is out, only closing is left */
                if (now - c->since > core->client_timeout) {
                    count(core, C_CLIENT_STALLED);
                    client_close(core, c, 0);
                    settle(core, c);
                }
            } else if (!c->head_since && !c->s.in.len && !pending(&c->s)) {
                double limit = c->requests ? core->idle_timeout : core->client_timeout;
                if (limit > 0 && now - c->since > limit) client_destroy(core, c);
            }
            continue;
        }
        Upstream *u = c->up;
        if (u && u->connecting) {
            if (now > u->connect_deadline) {
                upstream_close(core, u);
                c->up = NULL;
                answer(core, c, 502, "connect_timeout", "upstream unavailable", C_CONNECT_TIMEOUT);
                settle(core, c);
            }
            continue;
        }
        if (!c->deadline) continue;
        if (c->write_paused_at && now - c->write_paused_at >= core->client_timeout) {
            count(core, C_CLIENT_STALLED);
            count_done(core, c, 0);
            client_destroy(core, c);
        } else if (!c->req_done && !c->status && !c->up_full) {
            /* the upstream waits for the body; with its buffer full (up_full) the client is not
             * read, so the upstream is the late one: its deadline, below */
            if (now - (c->deadline - core->timeout) > core->client_timeout) {
                count(core, C_CLIENT_STALLED);
                client_drop_upstream(core, c);
                answer(core, c, 408, "client_stalled", "request body not received in time", -1);
                settle(core, c);
            }
        } else if (c->deadline < now) {
            if (c->write_paused_at) {
                c->deadline = now + core->timeout;
            } else {
                client_drop_upstream(core, c);
                answer(core, c, 504, "timeout", "upstream timed out", C_TIMEOUT);
                settle(core, c);
            }
        }
    }
}

static void free_deferred(Core *core) {
    while (core->to_free) {
        Client *c = core->to_free;
        core->to_free = c->free_next;
        client_free(c);
    }
    while (core->up_to_free) {
        Upstream *u = core->up_to_free;
        core->up_to_free = u->next;
        buf_free(&u->s.in);
        buf_free(&u->s.out);
        free(u);
    }
}

static void accept_clients(Core *core, double now) {
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(core->listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        Client *c = calloc(1, sizeof(Client));
        if (!c) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->s.kind = K_CLIENT;
        c->s.fd = fd;
        if (addr.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, c->peer, sizeof c->peer);
        else if (addr.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, c->peer, sizeof c->peer);
        c->since = now;
        c->rstate = R_HEAD;
        c->next = core->clients;
        if (core->clients) core->clients->prev = c;
        core->clients = c;
        sock_add(core, &c->s, EPOLLIN | EPOLLRDHUP);
    }
}

static void start_drain(Core *core) {
    core->draining = 1;
    if (core->listen_fd >= 0) {
        epoll_ctl(core->ep, EPOLL_CTL_DEL, core->listen_fd, NULL);
        close(core->listen_fd);
        core->listen_fd = -1;
    }
    while (core->idle) {
        Upstream *u = core->idle;
        core->idle = u->next;
        upstream_close(core, u);
    }
    core->n_idle = 0;
    Client *next;
    for (Client *c = core->clients; c; c = next) {
        next = c->next;
        if (!c->ex && !c->s.in.len && !c->closing) {
            client_close(core, c, 0);
            settle(core, c);
        }
    }
}

static void *loop(void *arg) {
    Core *core = arg;
    struct epoll_event events[256];
    double next_sweep = 0;
    int due = 0;
    double interval = core->client_timeout;
    if (core->timeout < interval) interval = core->timeout;
    /* the sweep times connects out too (the Python engine's connect has a timer of its own) */
    if (core->connect_timeout < interval) interval = core->connect_timeout;
    if (core->idle_timeout > 0 && core->idle_timeout < interval) interval = core->idle_timeout;
    interval /= 8;
    if (interval > 1.0) interval = 1.0;
    if (interval < 0.02) interval = 0.02;
    while (!core->stopping) {
        int n = epoll_wait(core->ep, events, 256, due ? 1 : (int)(interval * 1000));
        double now = mono();
        for (int i = 0; i < n; i++) {
            Sock *s = events[i].data.ptr;
            uint32_t ev = events[i].events;
            if (s->closed) continue;
            if (s->kind == K_LISTEN) {
                accept_clients(core, now);
            } else if (s->kind == K_CONTROL) {
                uint64_t v;
                ssize_t r = read(core->control_fd, &v, sizeof v);
                (void)r;
                if (core->draining == 1) {
                    core->draining = 2;
                    start_drain(core);
                }
            } else if (s->kind == K_CLIENT) {
                Client *c = (Client *)s;
                if (ev & (EPOLLIN | EPOLLRDHUP)) client_readable(core, c);
                if (!c->s.closed && (ev & (EPOLLHUP | EPOLLERR))) client_destroy(core, c);  /* gone */
                else if (!c->s.closed && (ev & EPOLLOUT)) settle(core, c);
            } else {
                upstream_event(core, (Upstream *)s, ev);
            }
        }
        if (now >= next_sweep) {
            sweep(core, now);
            next_sweep = now + interval;
        }
        free_deferred(core);
        due = wake_due(core, mono());
    }
    /* stopped: close everything left */
    Client *next;
    for (Client *c = core->clients; c; c = next) {
        next = c->next;
        client_destroy(core, c);
    }
    while (core->idle) {
        Upstream *u = core->idle;
        core->idle = u->next;
        upstream_close(core, u);
    }
    free_deferred(core);
    return NULL;
}

/* -- the Python type ---------------------------------------------------------------- */

static int set_buf(Buf *b, PyObject *bytes) {
    if (!PyBytes_Check(bytes)) {
        PyErr_SetString(PyExc_TypeError, "bytes expected");
        return -1;
    }
    return buf_add(b, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
}

static int Core_init(Core *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"listen_fd", "upstream_host", "upstream_port", "host_header", "matches",
                            "status_lines", "timeout", "connect_timeout", "client_timeout", "idle_timeout",
                            "max_body_bytes", "request_id_header", "id_prefix", "rewrite_host", "scheme",
                            "queue_capacity", "queue_bytes", NULL};
    int listen_fd, port, rewrite_host;
    const char *host;
    PyObject *host_header, *matches, *status_lines, *request_id_header, *id_prefix, *scheme;
    double timeout, connect_timeout, client_timeout, idle_timeout;
    long long max_body, capacity, queue_bytes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "isiSOO!ddddLSOpSLL", names, &listen_fd, &host, &port,
                                     &host_header, &matches, &PyTuple_Type, &status_lines, &timeout,
                                     &connect_timeout, &client_timeout, &idle_timeout, &max_body,
                                     &request_id_header, &id_prefix, &rewrite_host, &scheme, &capacity,
                                     &queue_bytes))
        return -1;
    if (PyTuple_GET_SIZE(status_lines) != 600) {
        PyErr_SetString(PyExc_ValueError, "status_lines: 600 lines expected");
        return -1;
    }
    for (int i = 0; i < 600; i++) {
        PyObject *line = PyTuple_GET_ITEM(status_lines, i);
        if (line != Py_None && set_buf(&self->status_lines[i], line)) return -1;
    }
    memset(&self->up_addr, 0, sizeof self->up_addr);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&self->up_addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&self->up_addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        self->up_addrlen = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        self->up_addrlen = sizeof *v6;
    } else {
        PyErr_Format(PyExc_ValueError, "%s: a numeric address expected", host);
        return -1;
    }
    if (set_buf(&self->host_header, host_header) || set_buf(&self->request_id_header, request_id_header) ||
        set_buf(&self->scheme, scheme))
        return -1;
    if (id_prefix != Py_None) {
        if (set_buf(&self->id_prefix, id_prefix)) return -1;
        self->generate_ids = 1;
    }
    Py_INCREF(matches);
    self->matches = matches;
    self->timeout = timeout;
    self->connect_timeout = connect_timeout;
    self->client_timeout = client_timeout;
    self->idle_timeout = idle_timeout;
    self->max_body = max_body;
    self->rewrite_host = rewrite_host;
    self->queue_capacity = capacity;
    self->queue_bytes = queue_bytes;
    self->rate = 1.0;
    self->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)self ^ (uint64_t)(wall() * 1e6);
    pthread_mutex_init(&self->lock, NULL);
    self->ep = epoll_create1(EPOLL_CLOEXEC);
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->control_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->listen_fd = dup(listen_fd);
    if (self->ep < 0 || self->wake_fd < 0 || self->control_fd < 0 || self->listen_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    fcntl(self->listen_fd, F_SETFL, fcntl(self->listen_fd, F_GETFL) | O_NONBLOCK);
    self->listen_sock = (Sock){.kind = K_LISTEN, .fd = self->listen_fd};
    self->control_sock = (Sock){.kind = K_CONTROL, .fd = self->control_fd};
    sock_add(self, &self->listen_sock, EPOLLIN);
    sock_add(self, &self->control_sock, EPOLLIN);
    return 0;
}

static PyObject *Core_start(Core *self, PyObject *unused) {
    if (self->started) Py_RETURN_NONE;
    if (pthread_create(&self->thread, NULL, loop, self) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot start the forwarding thread");
        return NULL;
    }
    self->started = 1;
    Py_RETURN_NONE;
}

static void poke(Core *self) {
    uint64_t one = 1;
    ssize_t r = write(self->control_fd, &one, sizeof one);
    (void)r;
}

static PyObject *Core_drain(Core *self, PyObject *unused) {
    if (!self->draining) {
        self->draining = 1;
        poke(self);
    }
    Py_RETURN_NONE;
}

static PyObject *Core_stop(Core *self, PyObject *unused) {
    if (self->started && !self->finished_thread) {
        self->stopping = 1;
        poke(self);
        Py_BEGIN_ALLOW_THREADS pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS self->finished_thread = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *Core_in_flight(Core *self, PyObject *unused) {
    return PyLong_FromLong(self->in_flight > 0 ? self->in_flight : 0);
}

static PyObject *Core_answered(Core *self, PyObject *unused) {
    pthread_mutex_lock(&self->lock);
    long long answered = self->answered;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromLongLong(answered);
}

static PyObject *Core_set_rate(Core *self, PyObject *arg) {
    double rate = PyFloat_AsDouble(arg);
    if (rate == -1.0 && PyErr_Occurred()) return NULL;
    self->rate = rate;
    Py_RETURN_NONE;
}

static PyObject *bytes_of(Buf *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->len); }

/* take() -> (records, done, counters, handoffs), each emptied; records as tuples
 * (ts, request, response, path, request_id or None, request fields, response fields). */
static PyObject *Core_take(Core *self, PyObject *unused) {
    uint64_t v;
    ssize_t r = read(self->wake_fd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&self->lock);
    Record *records = self->rec_head;
    self->rec_head = self->rec_tail = NULL;
    self->rec_count = self->rec_bytes = 0;
    Done *done = self->done;
    size_t n_done = self->n_done;
    self->done = NULL;
    self->n_done = self->cap_done = 0;
    Handoff *hand = self->hand_head;
    self->hand_head = self->hand_tail = NULL;
    long long counters[N_COUNTERS];
    memcpy(counters, self->counters, sizeof counters);
    memset(self->counters, 0, sizeof self->counters);
    self->woken = self->dirty = 0;
    pthread_mutex_unlock(&self->lock);

    PyObject *result = NULL, *recs = PyList_New(0), *dones = PyList_New((Py_ssize_t)n_done);
    PyObject *counts = PyTuple_New(N_COUNTERS), *hands = PyList_New(0);
    if (!recs || !dones || !counts || !hands) goto out;
    for (Record *rec = records; rec; rec = rec->next) {
        PyObject *id = rec->has_id ? bytes_of(&rec->request_id) : (Py_INCREF(Py_None), Py_None);
        PyObject *t = Py_BuildValue("(dNNNNNN)", rec->ts, bytes_of(&rec->request), bytes_of(&rec->response),
                                    bytes_of(&rec->path), id, bytes_of(&rec->req_fields),
                                    bytes_of(&rec->resp_fields));
        if (!t || PyList_Append(recs, t)) {
            Py_XDECREF(t);
            goto out;
        }
        Py_DECREF(t);
    }
    for (size_t i = 0; i < n_done; i++) {
        Done *d = &done[i];
        PyObject *t = Py_BuildValue("(idddLL)", d->status, d->started, d->sent, d->finished, d->request_bytes,
                                    d->response_bytes);
        if (!t) goto out;
        PyList_SET_ITEM(dones, (Py_ssize_t)i, t);
    }
    for (int i = 0; i < N_COUNTERS; i++) PyTuple_SET_ITEM(counts, i, PyLong_FromLongLong(counters[i]));
    for (Handoff *h = hand; h; h = h->next) {
        PyObject *t = Py_BuildValue("(iN)", h->fd, bytes_of(&h->data));
        if (!t || PyList_Append(hands, t)) {
            Py_XDECREF(t);
            goto out;
        }
        h->fd = -1;  /* Python owns it now */
        Py_DECREF(t);
    }
    result = Py_BuildValue("(OOOO)", recs, dones, counts, hands);
out:
    Py_XDECREF(recs);
    Py_XDECREF(dones);
    Py_XDECREF(counts);
    Py_XDECREF(hands);
    while (records) {
        Record *next = records->next;
        record_free(records);
        records = next;
    }
    free(done);
    while (hand) {
        Handoff *next = hand->next;
        if (hand->fd >= 0) close(hand->fd);
        buf_free(&hand->data);
        free(hand);
        hand = next;
    }
    return result;
}

static PyObject *Core_wake_fd(Core *self, void *closure) { return PyLong_FromLong(self->wake_fd); }

static void Core_dealloc(Core *self) {
    if (self->started && !self->finished_thread) {
        self->stopping = 1;
        poke(self);
        Py_BEGIN_ALLOW_THREADS pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
    }
    if (self->ep > 0) close(self->ep);
    if (self->wake_fd > 0) close(self->wake_fd);
    if (self->control_fd > 0) close(self->control_fd);
    if (self->listen_fd > 0) close(self->listen_fd);
    while (self->rec_head) {
        Record *next = self->rec_head->next;
        record_free(self->rec_head);
        self->rec_head = next;
    }
    while (self->hand_head) {
        Handoff *next = self->hand_head->next;
        close(self->hand_head->fd);
        buf_free(&self->hand_head->data);
        free(self->hand_head);
        self->hand_head = next;
    }
    for (int i = 0; i < ROUTE_SLOTS; i++) free(self->routes[i].path);
    free(self->done);
    buf_free(&self->host_header);
    buf_free(&self->request_id_header);
    buf_free(&self->id_prefix);
    buf_free(&self->scheme);
    Py_XDECREF(self->matches);
    for (int i = 0; i < 600; i++) buf_free(&self->status_lines[i]);
    pthread_mutex_destroy(&self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Core_methods[] = {
    {"start", (PyCFunction)Core_start, METH_NOARGS, "Start the forwarding thread."},
    {"drain", (PyCFunction)Core_drain, METH_NOARGS, "Stop accepting; close connections once idle."},
    {"stop", (PyCFunction)Core_stop, METH_NOARGS, "Close every connection and end the thread."},
    {"in_flight", (PyCFunction)Core_in_flight, METH_NOARGS, "Exchanges in progress."},
    {"answered", (PyCFunction)Core_answered, METH_NOARGS, "Exchanges over, in total."},
    {"set_rate", (PyCFunction)Core_set_rate, METH_O, "The share of prediction requests monitored."},
    {"take", (PyCFunction)Core_take, METH_NOARGS, "(records, done, counters, handoffs) since the last call."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Core_getset[] = {
    {"wake_fd", (getter)Core_wake_fd, NULL, "Readable when take() has something.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "driftgauge.sources.proxy._native.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The proxy's native forwarding core.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
    .tp_getset = Core_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "The proxy's native forwarding core.", -1, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&CoreType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "N_COUNTERS", N_COUNTERS);
    return m;
}
