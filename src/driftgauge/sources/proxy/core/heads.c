/* Reading and writing heads: field lines, hop-by-hop fields, status lines, the core's own answers. */

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

/* Whether a response's Transfer-Encoding list `v` (its fields joined by ", ") plainly frames a
 * chunked body: tokens apart by commas and spaces, chunked the last and only there.  Anything
 * else (an empty coding, a parameter, a body close-delimited under codings the client is not
 * told of) is a bad response, as the Python proxy reads it (heads.chunked_codings). */
static int chunked_codings(const char *v, size_t n) {
    const char *end = v + n;
    int chunked = 0;
    for (;;) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *a = v, *b = comma ? comma : end;
        while (a < b && *a == ' ') a++;
        while (b > a && b[-1] == ' ') b--;
        if (a == b || chunked) return 0;  /* an empty coding, or one after chunked */
        for (const char *q = a; q < b; q++)
            if (!is_tchar((unsigned char)*q)) return 0;
        chunked = lower_eq(a, (size_t)(b - a), "chunked");
        if (!comma) return chunked;
        v = comma + 1;
    }
}

typedef struct {
    const char *name, *value;
    size_t name_len, value_len;
} Field;

/* Whether `f` is named `name` (any letter case). */
static int is_named(const Field *f, const Buf *name) {
    return f->name_len == name->len && strncasecmp(f->name, name->p, name->len) == 0;
}

/* Whether the comma-separated list `v` (a Connection value) holds `token`, in any letter case. */
static int has_token(const char *v, size_t vn, const char *token, size_t tn) {
    const char *end = v + vn;
    while (v < end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *a = v, *b = comma ? comma : end;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        if ((size_t)(b - a) == tn && strncasecmp(a, token, tn) == 0) return 1;
        v = comma ? comma + 1 : end;
    }
    return 0;
}

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
