/* Client and upstream connections: the pool, closing, handing over, what each socket waits for. */

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

/* Whether the exchange in progress is the connection's last: its request said close, or the
 * client half-closed with no whole head after it (the pipelined requests it sent before that
 * are all answered first, as nginx and the Python proxy do). */
static int last_exchange(const Client *c) {
    const Buf *in = &c->s.in;
    return c->last || (c->eof && (!in->len || !memmem(in->p, in->len, "\r\n\r\n", 4)));
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
    if (last_exchange(c)) {
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
