"""Pure functions building the heads the proxy writes: requests to the upstream, responses
and its own error answers to the client."""

from __future__ import annotations

import http
import re
from collections.abc import Callable

__all__ = [
    "BODY_METHODS",
    "CHUNK_END",
    "CONTINUE",
    "HOP_BY_HOP",
    "MAX_FIELDS",
    "MAX_HEAD_BYTES",
    "STATUS_LINES",
    "chunked_codings",
    "error_response",
    "h2c_replay",
    "last_chunk",
    "request_head",
    "response_head",
]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"http2-settings",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
# A request line and header fields beyond this are refused (431), not buffered on and on; about
# Envoy's default (60 KiB), past nginx's (4 lines of 8 KiB). A response head beyond it, or with
# more field lines than MAX_FIELDS, is a bad response, as the native core's MAX_HEAD and
# MAX_FIELDS (core.h) make it.
MAX_HEAD_BYTES = 64 * 1024
MAX_FIELDS = 128
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNK_END = b"0\r\n\r\n"


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b"Unknown"
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
"""``HTTP/1.1 <status> <phrase>\\r\\n`` for a status the upstream gave without a reason."""

# Request headers the proxy sends in its own form (Expect: it answers 100 itself), or not at all.
_REPLACED = (b"expect", b"x-forwarded-for")
_REPLACED_AND_HOST = (*_REPLACED, b"host")

RequestHead = tuple[bytes, bool, int | None, bool, str | None, bool]


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def chunked_codings(values: list[bytes]) -> bool:
    """Whether a response's ``Transfer-Encoding`` values plainly frame a chunked body: tokens
    apart by commas and spaces, ``chunked`` the last and only there.

    Anything else is a bad response (the native core's ``chunked_codings`` says the same): an
    empty coding or a parameter the parser may read otherwise, a tab it keeps in the value
    (``chunked\t`` is another coding to it), a body delimited by the close under codings the
    client would not be told of.
    """
    if any(b"\t" in value for value in values):
        return False
    codings = [coding.strip(b" ").lower() for coding in b",".join(values).split(b",")]
    return (
        codings[-1] == b"chunked"
        and b"chunked" not in codings[:-1]
        and all(_TOKEN.fullmatch(coding) for coding in codings)
    )


def h2c_replay(
    method: bytes, url: bytes, version: str, headers: list[tuple[bytes, bytes]]
) -> bytes | None:
    """The head of an upgrade request without ``Upgrade``, when it offers h2c alone; else None.

    Parsed again, the request is the HTTP/1.1 request it also is; the
    ``Connection`` tokens naming the upgrade go with the other hop-by-hop
    headers when :func:`request_head` builds the upstream's head.
    """
    offers = [
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"upgrade"
        for token in value.split(b",")
    ]
    if method == b"CONNECT" or not offers or any(offer != b"h2c" for offer in offers):
        return None
    out = [b"%s %s HTTP/%s\r\n" % (method, url, version.encode())]
    out.extend(
        b"%s: %s\r\n" % (name, value) for name, value in headers if name.lower() != b"upgrade"
    )
    out.append(b"\r\n")
    return b"".join(out)


def request_head(
    method: bytes,
    url: bytes,
    headers: list[tuple[bytes, bytes]],
    peer: bytes,
    host: bytes,
    request_id_header: bytes,
    new_request_id: Callable[[], str] | None,
    scheme: bytes = b"http",
    rewrite_host: bool = False,
    http10: bool = False,
) -> RequestHead:
    """The head to send upstream for a client's request, and what its headers said.

    Hop-by-hop headers (and those ``Connection`` names) are dropped, but an
    HTTP/1.1 client's ``TE`` listing ``trailers`` becomes the proxy's own
    ``TE: trailers`` (it relays a chunked response's trailer fields);
    ``X-Forwarded-For`` gains ``peer``; ``X-Forwarded-Proto`` is ``scheme``
    (the client's) unless an earlier hop set it; ``Host`` is ``host`` (the
    upstream's) with ``rewrite_host``, else the client's, and ``host`` for an
    HTTP/1.0 client that left it out; ``new_request_id``, when given, makes an
    id for a request that has none.  Returns ``(head, chunked, content_length,
    expect_continue, request_id, generated_id)``; raises ValueError for a
    ``Transfer-Encoding`` that does not end in chunked (:func:`chunked_codings`).
    """
    out = [b"%s %s HTTP/1.1\r\n" % (method, url)]
    connection_tokens: set[bytes] = set()
    forwarded_for = b""
    has_proto = False
    has_host = False
    transfer = b""
    expect_continue = False
    length: int | None = None
    request_id: str | None = None
    accepts_trailers = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"connection":
            connection_tokens.update(t.strip().lower() for t in value.split(b","))
        elif lower == b"te":
            accepts_trailers = accepts_trailers or any(
                t.split(b";", 1)[0].strip().lower() == b"trailers" for t in value.split(b",")
            )
        elif lower == b"transfer-encoding":
            transfer = b"%s, %s" % (transfer, value) if transfer else value
        elif lower == b"content-length":
            length = int(value) if value.strip().isdigit() else None
        elif lower == b"expect" and value.strip().lower() == b"100-continue":
            expect_continue = True
            continue
        elif lower == b"x-forwarded-for":
            forwarded_for += value + b", "  # several fields are one list: keep every hop
            continue
        elif lower == b"host":
            has_host = True
        elif lower == b"x-forwarded-proto":
            has_proto = True
        elif lower == request_id_header:
            # As aiohttp reads it (the CloudEvents source): UTF-8, as clients send non-ASCII
            # text, so "café" here is the "café" a label names in JSON; whitespace around a
            # field value is not part of it (RFC 9110, 5.5).
            # An empty value names no request: one is made below, as for no header.
            request_id = value.strip(b" \t").decode("utf-8", "surrogateescape") or request_id
    make_id = new_request_id is not None and request_id is None
    replaced = _REPLACED_AND_HOST if rewrite_host else _REPLACED
    for name, value in headers:
        lower = name.lower()
        if (
            lower in HOP_BY_HOP
            or lower in connection_tokens
            or lower in replaced
            or (make_id and lower == request_id_header)  # empty: replaced by the one made
        ):
            continue
        out.append(b"%s: %s\r\n" % (name, value))
    # An HTTP/1.0 client may omit it; HTTP/1.1 to the upstream needs it.
    if rewrite_host or not has_host:
        out.append(b"host: %s\r\n" % host)
    out.append(b"x-forwarded-for: %s%s\r\n" % (forwarded_for, peer))
    if not has_proto:
        out.append(b"x-forwarded-proto: %s\r\n" % scheme)
    # An upstream may send trailer fields only when asked (RFC 9110, 10.1.4); HTTP/1.0 gets
    # no chunked body to carry them.
    if accepts_trailers and not http10:
        out.append(b"te: trailers\r\nconnection: te\r\n")
    # A body's length is known only when chunked is its last coding: any other Transfer-Encoding
    # is answered 400 (RFC 9112, 6.3), not sent on for the upstream to read otherwise than the
    # parser (which takes it for no body at all).
    if transfer and not chunked_codings([transfer]):
        raise ValueError(f"Transfer-Encoding {transfer!r}: the request body has no length")
    # The proxy chunks the body again; any coding before chunked (gzip) stays in its bytes.
    chunked = bool(transfer)
    if chunked:
        out.append(b"transfer-encoding: %s\r\n" % transfer)
    generated_id = False
    if make_id:
        # Labels arrive later by id: give the client (and the model server) one to use.
        assert new_request_id is not None
        request_id = new_request_id()
        generated_id = True
        out.append(b"%s: %s\r\n" % (request_id_header, request_id.encode()))
    out.append(b"\r\n")
    return b"".join(out), chunked, length, expect_continue, request_id, generated_id


def response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    request_id_line: bytes = b"",
    transfer_encoding: bytes = b"",
    connection: bytes = b"",
) -> bytes:
    """The head to send the client for the upstream's response (hop-by-hop headers dropped).

    ``request_id_line`` is a header line to add (the id the proxy made);
    ``transfer_encoding`` (the upstream's codings, ending in ``chunked``,
    or ``chunked`` alone) and ``connection`` (``close``, or ``keep-alive``
    for an HTTP/1.0 client whose connection stays open) add the proxy's own
    framing headers.  An interim (1xx) head takes none of the three.
    """
    if reason:
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    else:
        out = [STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status]
    connection_tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            connection_tokens.update(t.strip().lower() for t in value.split(b","))
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in connection_tokens:
            continue
        out.append(b"%s: %s\r\n" % (name, value))
    if request_id_line:
        out.append(request_id_line)
    if transfer_encoding:
        out.append(b"transfer-encoding: %s\r\n" % transfer_encoding)
    if connection:
        out.append(b"connection: %s\r\n" % connection)
    out.append(b"\r\n")
    return b"".join(out)


def last_chunk(fields: list[tuple[bytes, bytes]], head_fields: int) -> bytes:
    """The end of a chunked body: its last chunk and trailer section, the fields after the
    first ``head_fields`` (those of the head; the parser adds trailer fields to the same list)."""
    if len(fields) == head_fields:
        return CHUNK_END
    trailer = b"".join([b"%s: %s\r\n" % field for field in fields[head_fields:]])
    return b"0\r\n%s\r\n" % trailer


def error_response(status: int, reason: str, message: str) -> bytes:
    """A whole response the proxy answers itself: a short JSON body naming ``reason``."""
    body = b'{"error":"%s","driftgauge":"%s"}' % (message.encode(), reason.encode())
    return b"%scontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        STATUS_LINES[status],
        len(body),
        body,
    )
