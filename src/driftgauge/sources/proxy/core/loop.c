/* The loop: the sweep of timeouts, accepting, the drain, the thread's epoll loop. */

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

/* Out of descriptors (or memory), accept fails while the listener stays readable: trying again
 * at once would spin. The listener is left out of the loop for ACCEPT_PAUSE_MS, as nginx does,
 * its clients waiting in the backlog; the connections held are served meanwhile. */
#define ACCEPT_PAUSE_MS 500

static void pause_accepting(Core *core, int error) {
    sock_mask(core, &core->listen_sock, 0);
    struct itimerspec at = {
        .it_value = {.tv_sec = ACCEPT_PAUSE_MS / 1000, .tv_nsec = ACCEPT_PAUSE_MS % 1000 * 1000000L}};
    timerfd_settime(core->timer_fd, 0, &at, NULL);
    core->accept_errno = error;
    count(core, C_ACCEPT_PAUSED);  /* Python logs it, once a pause */
}

static void accept_clients(Core *core, double now) {
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(core->listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) pause_accepting(core, errno);
            return;
        }
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

static void close_idle(Core *core) {
    while (core->idle) {
        Upstream *u = core->idle;
        core->idle = u->next;
        upstream_close(core, u);
    }
    core->n_idle = 0;
}

/* The upstream's name has a new address (Core.set_upstream): new connections go there, and the
 * idle ones, to the old, are closed. */
static void retarget(Core *core) {
    pthread_mutex_lock(&core->lock);
    int changed = core->next_up_addrlen != 0;
    if (changed) {
        core->up_addr = core->next_up_addr;
        core->up_addrlen = core->next_up_addrlen;
        core->next_up_addrlen = 0;
    }
    pthread_mutex_unlock(&core->lock);
    if (changed) close_idle(core);
}

static void start_drain(Core *core) {
    core->draining = 1;
    if (core->listen_fd >= 0) {
        epoll_ctl(core->ep, EPOLL_CTL_DEL, core->listen_fd, NULL);
        close(core->listen_fd);
        core->listen_fd = -1;
    }
    close_idle(core);
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
    int due = -1;  /* milliseconds to a wake-up due (wake_due) */
    double interval = core->client_timeout;
    if (core->timeout < interval) interval = core->timeout;
    /* the sweep times connects out too (the Python engine's connect has a timer of its own) */
    if (core->connect_timeout < interval) interval = core->connect_timeout;
    if (core->idle_timeout > 0 && core->idle_timeout < interval) interval = core->idle_timeout;
    interval /= 8;
    if (interval > 1.0) interval = 1.0;
    if (interval < 0.02) interval = 0.02;
    while (!core->stopping) {
        int n = epoll_wait(core->ep, events, 256, due >= 0 ? due : (int)(interval * 1000));
        double now = mono();
        for (int i = 0; i < n; i++) {
            Sock *s = events[i].data.ptr;
            uint32_t ev = events[i].events;
            if (s->closed) continue;
            if (s->kind == K_LISTEN) {
                accept_clients(core, now);
            } else if (s->kind == K_TIMER) {
                uint64_t v;
                ssize_t r = read(core->timer_fd, &v, sizeof v);
                (void)r;
                if (core->listen_fd >= 0) {  /* not drained meanwhile: accept again */
                    sock_mask(core, &core->listen_sock, EPOLLIN);
                    accept_clients(core, now);
                }
            } else if (s->kind == K_CONTROL) {
                uint64_t v;
                ssize_t r = read(core->control_fd, &v, sizeof v);
                (void)r;
                retarget(core);
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
    close_idle(core);
    free_deferred(core);
    return NULL;
}
