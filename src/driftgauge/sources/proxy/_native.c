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
 *
 * One translation unit: the parts in core/ are included here in order, each named after what it
 * holds (the core's structures, what it reports, sockets and routes, heads, connections, the
 * request, the response, the loop); this file holds the Python type.
 */
#include "core/core.h"
#include "core/report.c"
#include "core/sockets.c"
#include "core/heads.c"
#include "core/connections.c"
#include "core/request.c"
#include "core/response.c"
#include "core/loop.c"

/* -- the Python type ---------------------------------------------------------------- */

static int set_buf(Buf *b, PyObject *bytes) {
    if (!PyBytes_Check(bytes)) {
        PyErr_SetString(PyExc_TypeError, "bytes expected");
        return -1;
    }
    return buf_add(b, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
}

/* `host`, a numeric IPv4 or IPv6 address, and `port` as a socket address (its length; 0 with
 * ValueError set when `host` is not numeric). */
static socklen_t numeric_address(const char *host, int port, struct sockaddr_storage *addr) {
    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return sizeof *v4;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return sizeof *v6;
    }
    PyErr_Format(PyExc_ValueError, "%s: a numeric address expected", host);
    return 0;
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
    /* "": the upstream's name has no address yet (set_upstream gives it): a socket of no family
     * fails to open, and connects are answered 502 meanwhile, as the Python engine's are */
    if (*host) {
        self->up_addrlen = numeric_address(host, port, &self->up_addr);
        if (!self->up_addrlen) return -1;
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
    self->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    self->listen_fd = dup(listen_fd);
    if (self->ep < 0 || self->wake_fd < 0 || self->control_fd < 0 || self->timer_fd < 0 || self->listen_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    fcntl(self->listen_fd, F_SETFL, fcntl(self->listen_fd, F_GETFL) | O_NONBLOCK);
    self->listen_sock = (Sock){.kind = K_LISTEN, .fd = self->listen_fd};
    self->control_sock = (Sock){.kind = K_CONTROL, .fd = self->control_fd};
    self->timer_sock = (Sock){.kind = K_TIMER, .fd = self->timer_fd};
    sock_add(self, &self->listen_sock, EPOLLIN);
    sock_add(self, &self->control_sock, EPOLLIN);
    sock_add(self, &self->timer_sock, EPOLLIN);
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

/* set_upstream(host, port): connect to this numeric address from now on (the upstream's name
 * resolved anew); the loop takes it at its next turn. */
static PyObject *Core_set_upstream(Core *self, PyObject *args) {
    const char *host;
    int port;
    struct sockaddr_storage addr;
    if (!PyArg_ParseTuple(args, "si", &host, &port)) return NULL;
    socklen_t len = numeric_address(host, port, &addr);
    if (!len) return NULL;
    pthread_mutex_lock(&self->lock);
    self->next_up_addr = addr;
    self->next_up_addrlen = len;
    pthread_mutex_unlock(&self->lock);
    poke(self);
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

static PyObject *Core_accept_errno(Core *self, void *closure) { return PyLong_FromLong(self->accept_errno); }

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
    if (self->timer_fd > 0) close(self->timer_fd);
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
    {"set_upstream", (PyCFunction)Core_set_upstream, METH_VARARGS,
     "Connect to this numeric address and port from now on; idle connections to the old close."},
    {"in_flight", (PyCFunction)Core_in_flight, METH_NOARGS, "Exchanges in progress."},
    {"answered", (PyCFunction)Core_answered, METH_NOARGS, "Exchanges over, in total."},
    {"set_rate", (PyCFunction)Core_set_rate, METH_O, "The share of prediction requests monitored."},
    {"take", (PyCFunction)Core_take, METH_NOARGS, "(records, done, counters, handoffs) since the last call."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Core_getset[] = {
    {"wake_fd", (getter)Core_wake_fd, NULL, "Readable when take() has something.", NULL},
    {"accept_errno", (getter)Core_accept_errno, NULL, "Why accepting last paused (an errno; 0: never).",
     NULL},
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
