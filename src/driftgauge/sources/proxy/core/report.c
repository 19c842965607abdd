/* What the core reports to Python: wake-ups, counts, finished exchanges, records. */

/* Python's turn on the event loop costs tens of µs (the GIL, a selector round, the batch taken):
 * one a millisecond was half a wake-up an exchange at 1,200 a second, 20 µs of the Python
 * thread's CPU an exchange in front of MLServer (bench.proxy --upstream mlserver).  Every 10 ms
 * bounds that to 100 a second (7 µs an exchange there).  A scrape takes what the core holds
 * first (MetricsRegistry.before_scrape), so the counts it shows are current whatever this is. */
#define WAKE_INTERVAL 0.01

/* Tell Python there is something to take (under the lock): at once when the last wake-up is
 * over WAKE_INTERVAL old (at low rates, before the answer goes out) or `urgent`; else at the end
 * of the loop's turn once it is (under load, one wake-up for many exchanges). */
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

/* At the end of the loop's turn: a wake-up that was due; returns in how many milliseconds one
 * still is (at least 1), or -1 for none. */
static int wake_due(Core *core, double now) {
    pthread_mutex_lock(&core->lock);
    if (core->dirty && !core->woken && now - core->last_wake >= WAKE_INTERVAL) write_wake(core, now);
    int due = -1;
    if (core->dirty && !core->woken) {
        due = (int)((core->last_wake + WAKE_INTERVAL - now) * 1000) + 1;
        if (due < 1) due = 1;
    }
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
