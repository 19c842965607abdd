/* The response: its head rewritten, its body relayed by its framing, an upstream's events. */

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

/* Relay (and capture) what `in` holds of the `rremaining` bytes left of a body or a chunk;
 * returns whether they are all through. */
static int relay_remaining(Core *core, Client *c, Buf *in) {
    size_t n = in->len < (size_t)c->rremaining ? in->len : (size_t)c->rremaining;
    relay(c, in->p, n);
    capture_response(core, c, in->p, n);
    buf_drop(in, n);
    c->rremaining -= (long long)n;
    return c->rremaining == 0;
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
    /* HTTP/1.0 has no interim responses (RFC 9110, 15.2): the Python proxy's parser takes the
     * connection to close after one, and refuses the final head that follows */
    if (interim && http10) return -1;
    /* connection tokens name more hop-by-hop fields */
    Buf transfer = {0};
    int chunked = 0, close_token = 0, has_length = 0, has_transfer = 0, keep_alive_token = 0, echoed = 0;
    long long length = -1;
    for (int i = 0; i < n; i++) {
        Field *f = &fields[i];
        if (lower_eq(f->name, f->name_len, "transfer-encoding")) {
            /* a tab after the value's start: the Python proxy's parser reads "chunked\t" as
             * another coding, where the value is chunked once the tab is trimmed */
            const char *cr = memchr(f->value, '\r', (size_t)(end - f->value));
            if (memchr(f->value, '\t', (size_t)(cr - f->value))) goto bad;
            if (has_transfer) buf_add(&transfer, ", ", 2);
            buf_add(&transfer, f->value, f->value_len);
            has_transfer = 1;
        } else if (lower_eq(f->name, f->name_len, "content-length")) {
            long long v = 0;
            /* one field, one value: a duplicate, even an identical one, is refused (RFC 9110,
             * 8.6 lets a recipient do so; the Python proxy's parser does) */
            if (has_length || f->value_len == 0) goto bad;
            for (size_t k = 0; k < f->value_len; k++) {  /* leading zeros too, as the parser */
                int d = f->value[k] - '0';
                if (d < 0 || d > 9 || v > (LLONG_MAX - d) / 10) goto bad;
                v = v * 10 + d;
            }
            has_length = 1;
            length = v;
        } else if (lower_eq(f->name, f->name_len, "connection")) {
            close_token |= has_token(f->value, f->value_len, "close", 5);
            keep_alive_token |= has_token(f->value, f->value_len, "keep-alive", 10);
        } else if (is_named(f, &core->request_id_header)) {
            echoed = 1;
        }
    }
    if (has_transfer) {
        /* with a Content-Length too, the two framings could be read either way (RFC 9112, 6.3) */
        if (has_length || !transfer.len || !chunked_codings(transfer.p, transfer.len)) goto bad;
        chunked = 1;
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
        for (int j = 0; j < n && !named; j++)
            named = lower_eq(fields[j].name, fields[j].name_len, "connection") &&
                    has_token(fields[j].value, fields[j].value_len, f->name, f->name_len);
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
    if (last_exchange(c)) add_field(out, "connection", 10, "close", 5);
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

/* The size a chunk-size line (`p` up to its CR at `eol`) gives, or -1 when it is malformed:
 * hex digits, then chunk extensions read as the Python proxy's parser (llhttp) reads them,
 * with no whitespace (RFC 9112, 7.1.1's BWS, which it refuses) and `;` `name` [`=` token or
 * quoted-string] each, so the two engines take and refuse the same lines. */
static long long chunk_size(const char *p, const char *eol) {
    long long size = 0;
    const char *q = p;
    for (; q < eol; q++) {
        char ch = *q;
        int d = (ch >= '0' && ch <= '9') ? ch - '0' : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
              : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;
        if (d < 0) break;
        if (size > (LLONG_MAX >> 4)) return -1;
        size = size * 16 + d;
    }
    if (q == p) return -1;
    while (q < eol) {
        if (*q++ != ';' || q == eol) return -1;
        while (q < eol && is_tchar((unsigned char)*q)) q++;
        if (q < eol && *q == '=') {
            q++;
            if (q < eol && *q == '"') {
                for (q++;; q++) {
                    if (q == eol) return -1;
                    unsigned char ch = (unsigned char)*q;
                    if (ch == '"') break;
                    if (ch == '\\' && ++q == eol) return -1;
                    ch = (unsigned char)*q;
                    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return -1;
                }
                q++;
            } else {
                while (q < eol && is_tchar((unsigned char)*q)) q++;
            }
        }
        if (q < eol && *q != ';') return -1;
    }
    return size;
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
        case R_LEN:
            if (relay_remaining(core, c, in)) {
                finish_response(core, c, u, c->resp_reusable);
                return;
            }
            break;
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
                /* relayed verbatim: a plain `name: value` line only, and no Content-Length,
                 * which the Python proxy's parser refuses beside chunked there too */
                Field field;
                if (line > 2 && (split_fields(in->p, in->p + line, &field, 1) != 1 ||
                                 lower_eq(field.name, field.name_len, "content-length"))) {
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
            long long size = chunk_size(in->p, eol);
            if (size < 0) {
                bad_response(core, c);
                return;
            }
            /* the proxy's own size line: an extension goes no further, as on the Python proxy */
            char l[24];
            int k = snprintf(l, sizeof l, "%llx\r\n", size);
            relay(c, l, (size_t)k);
            buf_drop(in, line);
            if (size == 0) c->rstate = R_TRAILER;
            else {
                c->rstate = R_CDATA;
                c->rremaining = size;
            }
            break;
        }
        case R_CDATA:
            if (relay_remaining(core, c, in)) c->rstate = R_CEND;
            break;
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
