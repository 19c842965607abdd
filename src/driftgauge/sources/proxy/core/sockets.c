/* Sockets of the loop, and the route test (the Python router's answer, remembered). */

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
