/* The request: its head read and rewritten, its body forwarded, a client's reads. */
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
        } else if (is_named(f, &core->request_id_header)) {
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
        if (make_id && is_named(f, &core->request_id_header)) continue;
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
