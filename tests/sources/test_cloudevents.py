"""The cloudevents source pairs KServe logger events, answers at once and forwards them unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.http_parser import HttpRequestParser, HttpRequestParserPy
from cloudevents.core.bindings.http import to_binary as sdk_to_binary
from cloudevents.core.bindings.http import to_structured as sdk_to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkCloudEvent
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from driftgauge.config import CloudEventsConfig, TlsConfig, config_from_mapping
from driftgauge.exceptions import ConfigError
from driftgauge.sources import cloudevents as cloudevents_module
from driftgauge.sources.cloudevents import (
    BATCH_CONTENT_TYPE,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    CloudEventsSource,
    is_cloudevent,
    parse_events,
)
from driftgauge.typing import Record
from tests.helpers import base_config, burn, free_port
from tests.kserve_logger import binary, encode, kserve_event, send, structured
from tests.proxy_upstream import Seen, Upstream, upstream_server

WAIT = 5.0


def _json(body: Any) -> Any:
    return json.loads(body) if isinstance(body, bytes | str) else body


@dataclass
class Running:
    """A started CloudEventsSource and everything it handed over or counted."""

    source: CloudEventsSource
    url: str
    task: asyncio.Task[None]
    batches: list[list[Record]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def records(self) -> list[Record]:
        return [r for batch in self.batches for r in batch]

    def by_id(self) -> dict[str | None, tuple[Any, Any]]:
        return {r.request_id: (_json(r.request), _json(r.response)) for r in self.records}

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if self.task.done():
                self.task.result()
                raise AssertionError("the source stopped")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.errors}")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(cost: float = 0.0, **settings: Any) -> AsyncIterator[Running]:
    """A CloudEventsSource on a free loopback port, always closed.

    ``cost``: CPU seconds each record takes in ``on_records`` (on the loop, like ingestion).
    """
    config = CloudEventsConfig(listen=("127.0.0.1", 0), **settings)
    batches: list[list[Record]] = []
    errors: Counter[str] = Counter()
    dropped: Counter[str] = Counter()

    def on_records(batch: list[Record]) -> None:
        burn(cost * len(batch))
        batches.append(batch)

    def count(reason: str) -> None:
        errors[reason] += 1

    def drop(reason: str) -> None:
        dropped[reason] += 1

    source = CloudEventsSource(config, on_records, count, on_dropped=drop)
    port = await source.start()
    task = asyncio.create_task(source.run())
    state = Running(source, f"http://127.0.0.1:{port}/", task, batches, errors, dropped)
    try:
        yield state
    finally:
        await source.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def session() -> AsyncIterator[ClientSession]:
    async with ClientSession(timeout=ClientTimeout(total=10)) as client:
        yield client


REQUEST = {"instances": [[13.1, 2.3, "north"]]}
RESPONSE = {"predictions": ["a"]}


async def test_request_then_response_become_one_record(session: ClientSession) -> None:
    """Binary-mode request and response with one ce-id: one Record with both bodies and the id."""
    async with running() as ce:
        assert await send(session, ce.url, binary(kserve_event("request", "id-1", REQUEST))) == 200
        assert (
            await send(session, ce.url, binary(kserve_event("response", "id-1", RESPONSE))) == 200
        )
        await ce.until(lambda: len(ce.records) == 1, "the pair")
        record = ce.records[0]
        assert (record.request_id, record.path) == ("id-1", "")
        assert (_json(record.request), _json(record.response)) == (REQUEST, RESPONSE)
        assert abs(record.ts - time.time()) < 5  # the request event's ce-time
        assert not ce.errors


async def test_response_before_request_pairs_the_same_way(session: ClientSession) -> None:
    """Out of order (the logger's workers race): the response waits for its request."""
    async with running() as ce:
        for i in range(20):
            await send(
                session, ce.url, binary(kserve_event("response", f"r{i}", {"predictions": [i]}))
            )
        for i in reversed(range(20)):
            await send(
                session, ce.url, binary(kserve_event("request", f"r{i}", {"instances": [i]}))
            )
        await ce.until(lambda: len(ce.records) == 20, "20 pairs")
        assert ce.by_id() == {
            f"r{i}": ({"instances": [i]}, {"predictions": [i]}) for i in range(20)
        }
        assert len(ce.source.store) == 0
        assert len(ce.batches) < 20  # pairs are handed over in batches, not one by one
        assert not ce.errors


async def test_events_with_long_extension_headers_are_read(session: ClientSession) -> None:
    """ce-metadata holds the logged request headers (a cookie, a JWT) and ce-annotations the
    InferenceService's: KServe's logger puts no bound on them, so a 100 kB header line is read
    (Go's servers take 1 MiB of headers), not refused with 400 before any count."""
    metadata = json.dumps({"Cookie": ["c" * 100_000]})
    async with running() as ce:
        for kind, body in (("request", REQUEST), ("response", RESPONSE)):
            event = kserve_event(kind, "long", body)
            event["metadata"] = metadata
            assert await send(session, ce.url, binary(event)) == 200
        await ce.until(lambda: len(ce.records) == 1, "the pair")
        assert ce.by_id() == {"long": (REQUEST, RESPONSE)}


async def test_unpaired_events_expire_after_the_ttl_and_are_counted(
    session: ClientSession,
) -> None:
    """A request without a response (the model failed) and a lone response are counted once gone."""
    async with running(ttl=0.2) as ce:
        await send(session, ce.url, binary(kserve_event("request", "lonely", REQUEST)))
        await send(session, ce.url, binary(kserve_event("response", "orphan", RESPONSE)))
        await ce.until(lambda: len(ce.source.store) == 0, "both expired")
        assert ce.errors == {
            "cloudevents_unpaired_request": 1,
            "cloudevents_unpaired_response": 1,
        }
        await send(session, ce.url, binary(kserve_event("response", "lonely", RESPONSE)))
        await asyncio.sleep(0.1)
        assert ce.records == []


async def test_oldest_waiting_events_are_evicted_beyond_max_pending(
    session: ClientSession,
) -> None:
    """With max_pending=3, the first two of five lone requests are evicted and counted."""
    async with running(max_pending=3) as ce:
        for i in range(5):
            await send(session, ce.url, binary(kserve_event("request", f"q{i}", REQUEST)))
        assert ce.errors == {"cloudevents_unpaired_request": 2}
        for i in reversed(range(5)):  # q4..q2 pair; q1 and q0 then wait in their turn
            await send(session, ce.url, binary(kserve_event("response", f"q{i}", RESPONSE)))
        await ce.until(lambda: len(ce.records) == 3, "the 3 kept pairs")
        assert len(ce.source.store) == 2
        assert sorted(r.request_id or "" for r in ce.records) == ["q2", "q3", "q4"]


def _headers(**extra: str) -> dict[str, str]:
    base = {"ce-specversion": "1.0", "ce-source": "http://localhost:9081/", "ce-id": "x"}
    return {**base, "ce-type": REQUEST_TYPE, "content-type": "application/json", **extra}


async def test_malformed_events_are_counted_by_reason_and_answered_200(
    session: ClientSession,
) -> None:
    """Unusable CloudEvents get 200 and a distinct reason; a non-CloudEvent 400, a GET 405."""
    no_id = _headers()
    del no_id["ce-id"]
    structured_type = {"content-type": "application/cloudevents+json"}
    bad_base64 = {"specversion": "1.0", "id": "b", "type": REQUEST_TYPE, "source": "s"}
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        (no_id, encode(REQUEST), 200, "cloudevents_missing_id"),
        (_headers(**{"ce-type": "com.example.other"}), b"{}", 200, "cloudevents_unknown_type"),
        (structured_type, b"{not json", 200, "cloudevents_invalid_envelope"),
        (
            structured_type,
            encode({"id": "a", "type": REQUEST_TYPE}),
            200,
            "cloudevents_invalid_envelope",
        ),
        (
            structured_type,
            encode({**bad_base64, "data_base64": "!!"}),
            200,
            "cloudevents_invalid_data",
        ),
        ({"content-type": BATCH_CONTENT_TYPE}, b"{}", 200, "cloudevents_invalid_envelope"),
        (_headers(), b"x" * 2000, 200, "cloudevents_body_too_large"),
        ({"content-type": "application/json"}, encode(REQUEST), 400, "cloudevents_not_cloudevent"),
    ]
    async with running(max_body_bytes=1000) as ce:
        for headers, body, status, reason in cases:
            before = ce.errors[reason]
            assert await send(session, ce.url, (headers, body)) == status, reason
            assert ce.errors[reason] == before + 1, reason
        async with session.get(ce.url) as response:
            assert response.status == 405
        assert ce.records == [] and len(ce.source.store) == 0
        # Still receiving normally afterwards.
        await send(session, ce.url, binary(kserve_event("request", "ok", REQUEST)))
        await send(session, ce.url, binary(kserve_event("response", "ok", RESPONSE)))
        await ce.until(lambda: len(ce.records) == 1, "the good pair")


async def test_a_sender_gone_before_its_body_ended_is_counted_not_logged_as_an_error(
    session: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A POST whose sender closes the connection mid-body (Content-Length or chunked) counts as
    cloudevents_incomplete, with no traceback in the log; receiving goes on."""
    heads = (b"Content-Length: 1000", b"Transfer-Encoding: chunked")
    async with running() as ce:
        port = int(ce.url.rstrip("/").rpartition(":")[2])
        for head in heads:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            lines = [b"POST / HTTP/1.1", b"Host: x", b"ce-specversion: 1.0", b"ce-id: cut"]
            lines += [b"ce-type: " + REQUEST_TYPE.encode(), head, b"", b"40"]
            writer.write(b"\r\n".join(lines) + b'\r\n{"instances": [')
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            await writer.wait_closed()
        await ce.until(lambda: ce.errors["cloudevents_incomplete"] == 2, "both counted")
        await send(session, ce.url, binary(kserve_event("request", "ok", REQUEST)))
        await send(session, ce.url, binary(kserve_event("response", "ok", RESPONSE)))
        await ce.until(lambda: len(ce.records) == 1, "the good pair")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# AIOHTTP_NO_EXTENSIONS=1 (or a platform without aiohttp's wheels) parses with pure Python,
# which reports a body's bad chunk to the handler's read; the C parser, at once or never.
PURE_PYTHON_PARSER = HttpRequestParser is HttpRequestParserPy


async def test_a_malformed_chunk_size_is_one_warning_line_and_counted(
    session: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked POST with a bad hex chunk size is answered 400, counted as
    cloudevents_bad_request and logged as one warning naming the peer (no traceback); receiving
    goes on."""
    head = [b"POST / HTTP/1.1", b"Host: x", b"ce-specversion: 1.0", b"ce-id: bad"]
    head += [b"ce-type: " + REQUEST_TYPE.encode(), b"Transfer-Encoding: chunked", b"", b""]
    sizes = (b"zz", b"-5", b"1_0", b"0x10", b"\x1b[31m")
    # (sent with the head, sent once the handler reads the body)
    messages = [(size + b"\r\n{}\r\n0\r\n\r\n", b"") for size in sizes]
    if PURE_PYTHON_PARSER:  # the C parser leaves that read waiting (aiohttp's own fault)
        messages += [(b"", size + b"\r\n{}\r\n0\r\n\r\n") for size in sizes]
        messages += [(b"2\r\n{}", b"XX\r\n0\r\n\r\n")]  # data longer than its size
    caplog.set_level(logging.DEBUG)
    async with running() as ce:
        port = int(ce.url.rstrip("/").rpartition(":")[2])
        for first, later in messages:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\r\n".join(head) + first)
            if later:
                await asyncio.sleep(0.05)
                writer.write(later)
            answer = await asyncio.wait_for(reader.read(), WAIT)
            assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")), answer
            writer.close()
            await writer.wait_closed()
        assert ce.errors == {"cloudevents_bad_request": len(messages)}
        await send(session, ce.url, binary(kserve_event("request", "ok", REQUEST)))
        await send(session, ce.url, binary(kserve_event("response", "ok", RESPONSE)))
        await ce.until(lambda: len(ce.records) == 1, "the good pair")
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(messages)
    for line in warnings:
        assert line.startswith("malformed HTTP request from 127.0.0.1: "), line
        assert "\n" not in line and "\x1b" not in line


async def test_a_body_that_stops_arriving_is_given_up_answered_408_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A POST whose body stops arriving, however its sender stays connected (a Content-Length
    body cut short; with aiohttp's compiled parser, a bad chunk after the body began, which it
    never reports to the read), is given up after BODY_IDLE_SECONDS without a byte of it:
    408, counted as cloudevents_incomplete, one warning line; a slow body that keeps arriving
    is read whole."""
    monkeypatch.setattr(cloudevents_module, "BODY_IDLE_SECONDS", 0.3)
    head = [b"POST / HTTP/1.1", b"Host: x", b"ce-specversion: 1.0", b"ce-id: slow"]
    head += [b"ce-type: " + REQUEST_TYPE.encode()]
    # (sent with the head, sent once the handler reads the body)
    stalled = [(b"Content-Length: 100\r\n\r\n" + b'{"instances": ', b"")]
    if not PURE_PYTHON_PARSER:
        stalled.append((b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", b"zz\r\n"))
    caplog.set_level(logging.INFO)
    async with running() as ce:
        port = int(ce.url.rstrip("/").rpartition(":")[2])
        for first, later in stalled:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\r\n".join([*head, first]))
            if later:
                await asyncio.sleep(0.05)
                writer.write(later)
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), WAIT)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            writer.close()
            await writer.wait_closed()
        assert ce.errors == {"cloudevents_incomplete": len(stalled)}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps(REQUEST).encode()
        writer.write(b"\r\n".join([*head, b"Content-Length: %d" % len(body), b"", b""]))
        for i in range(len(body)):  # a byte every 0.05 s: 0.3 s never passes without one
            writer.write(body[i : i + 1])
            await asyncio.sleep(0.05 if i < 8 else 0)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), WAIT)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        writer.close()
        await writer.wait_closed()
        assert len(ce.source.store) == 1  # the slow request, waiting for its response
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(stalled)
    assert all(w.startswith("no byte of a POST body from 127.0.0.1 for ") for w in warnings)


def test_a_malformed_chunk_size_is_one_line_with_the_pure_python_parser() -> None:
    """The same with aiohttp's pure Python parser, which also finds a bad chunk size in a body
    the handler is reading: 400, counted, one line."""
    test = f"{__file__}::test_a_malformed_chunk_size_is_one_warning_line_and_counted"
    env = {**os.environ, "AIOHTTP_NO_EXTENSIONS": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_duplicate_events_are_counted(session: ClientSession) -> None:
    """The same request event twice: counted as a duplicate, the pair still forms once."""
    async with running() as ce:
        message = binary(kserve_event("request", "dup", REQUEST))
        await send(session, ce.url, message)
        await send(session, ce.url, message)
        await send(session, ce.url, binary(kserve_event("response", "dup", RESPONSE)))
        await ce.until(lambda: len(ce.records) == 1, "the pair")
        assert ce.errors == {"cloudevents_duplicate": 1}


async def test_a_replayed_pair_is_monitored_once_and_counted_as_duplicates(
    session: ClientSession,
) -> None:
    """A sender retrying a call resends both events after they paired: one record, two
    duplicates; one event resent alone is a duplicate too, never an unpaired event."""
    async with running(ttl=0.3) as ce:
        request = binary(kserve_event("request", "again", REQUEST))
        response = binary(kserve_event("response", "again", RESPONSE))
        for message in (request, response, request, response):
            assert await send(session, ce.url, message) == 200
        await ce.until(lambda: len(ce.records) == 1, "the pair")
        alone = binary(kserve_event("response", "once", RESPONSE))
        for message in (binary(kserve_event("request", "once", REQUEST)), alone, alone):
            await send(session, ce.url, message)
        await ce.until(lambda: len(ce.records) == 2, "the second pair")
        await asyncio.sleep(0.5)  # past the ttl: nothing was left waiting
        assert sorted(r.request_id or "" for r in ce.records) == ["again", "once"]
        assert ce.errors == {"cloudevents_duplicate": 3}


async def test_records_carry_the_origin_of_their_events_and_pair_within_it(
    session: ClientSession,
) -> None:
    """The InferenceService, namespace, component, endpoint and source become the record's
    headers (percent-decoded, structured mode too); a transformer's request never pairs with
    its predictor's response of the same ce-id."""
    async with running() as ce:
        transformer = kserve_event("request", "t1", REQUEST)
        transformer["component"] = "transformer"
        headers, body = binary(kserve_event("request", "t1", REQUEST))
        headers["ce-inferenceservicename"] = "wine%20a"
        await send(session, ce.url, binary(transformer))
        await send(session, ce.url, structured(kserve_event("response", "t1", RESPONSE)))
        await send(session, ce.url, (headers, body))
        await asyncio.sleep(0.1)
        assert ce.records == [] and len(ce.source.store) == 3
        proper = kserve_event("response", "t1", RESPONSE)
        proper["component"] = "transformer"
        await send(session, ce.url, binary(proper))
        await ce.until(lambda: len(ce.records) == 1, "the transformer's pair")
        origin = {
            "ce-source": "http://localhost:9081/",
            "ce-inferenceservicename": "wine",
            "ce-namespace": "models",
            "ce-component": "transformer",
            "ce-endpoint": "default",
        }
        assert dict(ce.records[0].headers) == origin
        renamed = kserve_event("response", "t1", RESPONSE)
        renamed["inferenceservicename"] = "wine a"
        await send(session, ce.url, structured(renamed))
        await ce.until(lambda: len(ce.records) == 2, "the renamed service's pair")
        assert dict(ce.records[1].headers) == {
            **origin,
            "ce-component": "predictor",
            "ce-inferenceservicename": "wine a",
        }
        assert len(ce.source.store) == 1  # the predictor's response of service "wine"
        assert not ce.errors


async def test_structured_and_batch_modes_pair_like_binary(session: ClientSession) -> None:
    """Structured events (JSON data or data_base64) and a batch pair with each other and binary."""
    async with running() as ce:
        request = kserve_event("request", "s1", REQUEST)
        request.data = REQUEST  # JSON data: "data" in the envelope, not "data_base64"
        await send(session, ce.url, structured(request))
        headers, envelope = structured(kserve_event("response", "s1", RESPONSE))
        assert "data_base64" in json.loads(envelope)
        await send(session, ce.url, (headers, envelope))
        batch = [
            json.loads(structured(kserve_event("request", "b1", {"instances": [1]}))[1]),
            json.loads(structured(kserve_event("response", "b2", {"predictions": [2]}))[1]),
        ]
        assert (
            await send(session, ce.url, ({"content-type": BATCH_CONTENT_TYPE}, encode(batch)))
            == 200
        )
        await send(session, ce.url, binary(kserve_event("response", "b1", {"predictions": [1]})))
        await send(session, ce.url, binary(kserve_event("request", "b2", {"instances": [2]})))
        await ce.until(lambda: len(ce.records) == 3, "3 pairs")
        assert ce.by_id() == {
            "s1": (REQUEST, RESPONSE),
            "b1": ({"instances": [1]}, {"predictions": [1]}),
            "b2": ({"instances": [2]}, {"predictions": [2]}),
        }
        assert not ce.errors


def _sent_headers_kept(sent: dict[str, str], seen: Seen) -> bool:
    return all(seen.header_all(name) == [value] for name, value in sent.items())


async def test_forward_receives_every_event_unchanged(session: ClientSession) -> None:
    """Method, body and every header sent (ce-* included) reach the forward target as they were."""
    messages = [
        binary(kserve_event("request", "f1", REQUEST)),
        binary(kserve_event("response", "f1", RESPONSE)),
        structured(kserve_event("request", "f2", REQUEST)),
        (_headers(**{"ce-type": "com.example.other", "x-extra": "kept"}), b"opaque \x00 bytes"),
    ]
    async with upstream_server() as target, running(forward=target.url + "/events?k=v") as ce:
        for message in messages:
            assert await send(session, ce.url, message) == 200
        await ce.until(lambda: len(target.seen) == len(messages), "every event forwarded")
        for (headers, body), seen in zip(messages, target.seen, strict=True):
            assert (seen.method, seen.target, seen.body) == ("POST", "/events?k=v", body)
            assert _sent_headers_kept(headers, seen), (headers, seen.headers)
            assert seen.header("Host") == f"127.0.0.1:{target.port}"
        assert "cloudevents_forward_failed" not in ce.errors


async def test_a_compressed_event_is_forwarded_decoded_without_its_content_encoding(
    session: ClientSession,
) -> None:
    """A gzip-encoded event is read decoded (and monitored); the target gets that decoded body
    without the Content-Encoding header, a body it can read, not a decoded one labelled gzip."""
    messages = [
        binary(kserve_event("request", "gz", REQUEST)),
        binary(kserve_event("response", "gz", RESPONSE)),
    ]
    async with upstream_server() as target, running(forward=target.url + "/events") as ce:
        for headers, body in messages:
            compressed = ({**headers, "Content-Encoding": "gzip"}, gzip.compress(body))
            assert await send(session, ce.url, compressed) == 200
        await ce.until(lambda: len(target.seen) == 2 and len(ce.records) == 1, "both forwarded")
        for (headers, body), seen in zip(messages, target.seen, strict=True):
            assert seen.body == body and seen.header("Content-Encoding") is None
            assert _sent_headers_kept(headers, seen), (headers, seen.headers)
        assert ce.by_id() == {"gz": (REQUEST, RESPONSE)}


@pytest.mark.serial  # answers within 0.5 s
async def test_slow_forward_target_does_not_delay_answers_and_overflow_is_counted(
    session: ClientSession,
) -> None:
    """A target that takes 2 s: answers stay fast, the queue fills, the overflow is counted."""
    workers, queue = cloudevents_module.FORWARD_WORKERS, 2
    async with (
        upstream_server() as target,
        running(forward=target.url + "/slow?delay=2", forward_queue_size=queue) as ce,
    ):
        slowest = 0.0
        for i in range(20):
            started = time.perf_counter()
            status = await send(session, ce.url, binary(kserve_event("request", f"s{i}", REQUEST)))
            slowest = max(slowest, time.perf_counter() - started)
            assert status == 200
        assert slowest < 0.5
        assert ce.errors["cloudevents_forward_dropped"] == 20 - workers - queue
        await ce.until(lambda: len(target.seen) == workers, "the first events reach the target")


async def test_unreachable_forward_target_is_counted(session: ClientSession) -> None:
    """Every event the target refuses (connection refused) counts as a failed forward."""
    target = Upstream()  # a free port nobody listens on
    async with running(forward=target.url, forward_timeout=1.0) as ce:
        for i in range(3):
            assert (
                await send(session, ce.url, binary(kserve_event("request", f"u{i}", REQUEST)))
                == 200
            )
        await ce.until(lambda: ce.errors["cloudevents_forward_failed"] == 3, "3 failed forwards")


async def test_pairs_beyond_what_monitoring_keeps_up_with_are_dropped_and_counted(
    session: ClientSession,
) -> None:
    """Ingestion at 10 ms a record, 100 pairs at once, max_pending=5: excess pairs are dropped
    (counted as cloudevents_overload), none lost silently, and answers keep coming."""
    async with running(cost=0.01, max_pending=5) as ce:
        calls = asyncio.Semaphore(4)  # at most 4 halves wait for pairing: none evicted there

        async def call(i: int) -> None:
            async with calls:
                for kind, body in (("request", REQUEST), ("response", RESPONSE)):
                    message = binary(kserve_event(kind, f"o{i}", body))
                    assert await send(session, ce.url, message) == 200

        await asyncio.gather(*(call(i) for i in range(100)))
        await ce.until(lambda: len(ce.records) + ce.dropped["cloudevents_overload"] == 100, "all")
        assert ce.dropped["cloudevents_overload"] > 0
        assert set(ce.dropped) == {"cloudevents_overload"}
        assert not ce.errors


@pytest.mark.parametrize(("wall", "cpu"), [(0.03, 0.0), (0.0, 0.05)])
async def test_a_batch_pauses_for_its_cpu_within_twice_what_it_was_sized_to_cost(
    monkeypatch: pytest.MonkeyPatch, session: ClientSession, wall: float, cpu: float
) -> None:
    """An on_records call spanning 30 ms of wall time for no CPU (the process preempted on a
    busy node; 60-500 ms were seen for 0.2 ms of CPU), or charged 50 ms of CPU for one cheap
    record (contention, a garbage collection), is followed by a pause of its CPU within twice
    the 5 ms a batch is sized to: pausing as long let max_pending 5 overflow at 100 pairs/s."""
    pauses: list[float] = []

    class Asyncio:
        """The asyncio module, with the source's pauses recorded."""

        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        async def sleep(self, delay: float) -> None:
            pauses.append(delay)
            await asyncio.sleep(delay)

    monkeypatch.setattr(cloudevents_module, "asyncio", Asyncio())
    async with running() as ce:
        on_records = ce.source._on_records

        def held_up(batch: list[Record]) -> None:
            time.sleep(wall)
            burn(cpu)
            on_records(batch)

        ce.source._on_records = held_up
        for kind, body in (("request", REQUEST), ("response", RESPONSE)):
            assert await send(session, ce.url, binary(kserve_event(kind, "slow", body))) == 200
        await ce.until(lambda: bool(ce.records and pauses), "the first batch and its pause")
    assert max(pauses) <= 2 * cloudevents_module.SLICE_SECONDS, pauses


async def test_close_hands_over_pairs_not_yet_delivered(session: ClientSession) -> None:
    """Pairs completed just before shutdown still reach on_records."""
    async with running() as ce:
        await send(session, ce.url, binary(kserve_event("request", "last", REQUEST)))
        await send(session, ce.url, binary(kserve_event("response", "last", RESPONSE)))
        await ce.source.close()
        assert [r.request_id for r in ce.records] == ["last"]


async def test_close_counts_the_events_still_waiting_for_their_other_half(
    session: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A request whose response never came before shutdown is counted unpaired, as at its ttl."""
    async with running() as ce:
        await send(session, ce.url, binary(kserve_event("request", "no answer", REQUEST)))
        await send(session, ce.url, binary(kserve_event("response", "no request", RESPONSE)))
        with caplog.at_level("INFO", logger="driftgauge.sources.cloudevents"):
            await ce.source.close()
        assert len(ce.source.store) == 0
        assert ce.errors == {"cloudevents_unpaired_request": 1, "cloudevents_unpaired_response": 1}
        assert "shutting down with 2 events unpaired (counted)" in caplog.text


# -- config ------------------------------------------------------------------------------


def test_config_defaults_listen_like_the_proxy(tmp_path: Path) -> None:
    """source.cloudevents: {} listens on 0.0.0.0:8080 with no forward, 10000 pending, 60 s."""
    config = config_from_mapping(base_config(tmp_path, source={"cloudevents": {}}), base=tmp_path)
    assert config.source == CloudEventsConfig()
    assert config.source.listen == ("0.0.0.0", 8080)
    assert (config.source.max_pending, config.source.ttl, config.source.forward) == (
        10_000,
        60.0,
        None,
    )


def test_config_reads_every_key(tmp_path: Path) -> None:
    """Every key of source.cloudevents is read, durations included."""
    raw = {
        "listen": "127.0.0.1:9999",
        "forward": "http://dumper.default.svc:80/",
        "forward_timeout": "2s",
        "forward_queue_size": 50,
        "max_pending": 500,
        "ttl": "30s",
        "max_body_bytes": 1024,
    }
    config = config_from_mapping(base_config(tmp_path, source={"cloudevents": raw}), base=tmp_path)
    assert config.source == CloudEventsConfig(
        ("127.0.0.1", 9999), "http://dumper.default.svc:80", 2.0, 50, 500, 30.0, 1024
    )


def test_config_errors_name_the_key_path(tmp_path: Path) -> None:
    """Bad values and unknown keys are reported with their source.cloudevents.* path."""
    raw = {"forward": "ftp://x", "ttl": "soon", "max_pending": 0, "port": 1, "ca_file": "no.pem"}
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(base_config(tmp_path, source={"cloudevents": raw}), base=tmp_path)
    message = str(caught.value)
    for key in ("forward", "ttl", "max_pending", "port", "ca_file"):
        assert f"source.cloudevents.{key}" in message, key


def test_request_and_response_types_are_kserves() -> None:
    """The two event types are the ones kserve/kserve pkg/logger/worker.go sends."""
    assert REQUEST_TYPE == "org.kubeflow.serving.inference.request"
    assert RESPONSE_TYPE == "org.kubeflow.serving.inference.response"


# -- the parser --------------------------------------------------------------------------

_CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents+json; charset=utf-8",
        BATCH_CONTENT_TYPE,
        "",
    ]
)


@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.builds(
            encode,
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(
                        st.sampled_from(
                            ["specversion", "id", "type", "data", "data_base64", "time"]
                        ),
                        inner,
                        max_size=5,
                    )
                ),
                max_leaves=10,
            ),
        ),
    ),
    content_type=_CONTENT_TYPES,
    binary_mode=st.booleans(),
)
def test_parse_events_never_raises(body: bytes, content_type: str, binary_mode: bool) -> None:
    """Any body under any CloudEvents content type gives events and reasons, never an exception."""
    headers = CIMultiDict({"Content-Type": content_type})
    if binary_mode:
        headers.update({"ce-specversion": "1.0", "ce-id": "1", "ce-type": REQUEST_TYPE})
    assert is_cloudevent(headers) or not binary_mode
    events, errors = parse_events(headers, body)
    assert all(reason.startswith("cloudevents_") for reason in errors)
    assert all(event.id for event in events)


def test_binary_header_values_are_percent_decoded() -> None:
    """The HTTP binding percent-encodes header values: ce-id "call%201" is the id "call 1"."""
    headers = CIMultiDict(
        {"ce-specversion": "1.0", "ce-id": "call%201", "ce-type": REQUEST_TYPE, "ce-time": "bad"}
    )
    (event,), errors = parse_events(headers, b"{}")
    assert (event.id, event.type, event.data, errors) == ("call 1", REQUEST_TYPE, b"{}", [])


def _sdk_event(kind: str, event_id: str, mode: str) -> tuple[dict[str, str], bytes]:
    """An event as the CloudEvents SDK's own API (cloudevents.core) sends it: in binary mode
    its header values percent-encoded (HTTP binding 3.1.3.2)."""
    made = SdkCloudEvent(
        attributes={
            "id": event_id,
            "type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
            "source": "http://localhost:9081/",
            "inferenceservicename": "wine",
            "datacontenttype": "application/json",
        },
        data={"kind": kind},
    )
    message = (sdk_to_binary if mode == "binary" else sdk_to_structured)(made, JSONFormat())
    return dict(message.headers), message.body


# Ids holding a '%': each pairs from a sender that encodes and from one that does not, an id
# that is itself a valid encoding (escapes only) by its spelling as sent.
_PERCENT_IDS = [
    "call%201",
    "a%2Fb",
    "100%",  # a '%' that starts no escape
    "50%25 off",  # an escape beside a space, which an encoder escapes
    "caf%C3%A9 é",  # ... beside non-ASCII
    "%FF",  # escapes of bytes that are no UTF-8
    "%C0%A0",
]


@pytest.mark.parametrize("event_id", _PERCENT_IDS)
async def test_an_id_with_a_percent_pairs_across_binary_and_structured_mode(
    session: ClientSession, event_id: str
) -> None:
    """Over HTTP, a binary request and a structured response with one id pair, under that id:
    sent by the CloudEvents SDK's API (cloudevents.core, header values percent-encoded) and
    by its 1.x API, which sends header values as they are, as KServe's Go logger (sdk-go)
    does (an id of escapes alone, "a%2Fb", then pairs by its spelling as sent)."""
    async with running() as ce:
        await send(session, ce.url, _sdk_event("request", event_id, "binary"))
        await send(session, ce.url, _sdk_event("response", event_id, "structured"))
        await ce.until(lambda: len(ce.records) == 1, "the pair sent by the SDK's API")
        assert ce.records[0].request_id == event_id
        await send(session, ce.url, binary(kserve_event("request", event_id, REQUEST)))
        await send(session, ce.url, structured(kserve_event("response", event_id, RESPONSE)))
        await ce.until(lambda: len(ce.records) == 2, "the pair sent by the 1.x API")
        assert ce.records[1].request_id == event_id
        assert not ce.errors


async def test_ids_whose_escapes_are_no_utf8_stay_apart(session: ClientSession) -> None:
    """Binary ce-ids "%FE" and "%FF" (no UTF-8 once decoded, so not the binding's encoding)
    are two ids, not both U+FFFD: a request of one never pairs with the response of the other."""
    async with running() as ce:
        await send(session, ce.url, binary(kserve_event("request", "%FE", REQUEST)))
        await send(session, ce.url, binary(kserve_event("response", "%FF", RESPONSE)))
        await send(session, ce.url, binary(kserve_event("response", "%FE", RESPONSE)))
        await ce.until(lambda: len(ce.records) == 1, "the pair")
        assert ce.records[0].request_id == "%FE"
        assert len(ce.source.store) == 1  # the response "%FF" waits for its request
        assert not ce.errors


@given(event_id=st.text(min_size=1, max_size=20))
def test_any_id_the_sdk_encodes_in_binary_mode_reads_back_as_it_was(event_id: str) -> None:
    """Whatever text the id is, the binding's percent-encoding (the SDK's) decodes back to it."""
    headers, body = _sdk_event("request", event_id, "binary")
    (event,), errors = parse_events(CIMultiDict(headers), body)
    assert (event.id, errors) == (event_id, [])


# -- TLS ---------------------------------------------------------------------------------


async def test_https_logger_url_and_https_forward_with_a_private_ca(pki: Path) -> None:
    """tls serves the listener over https; ca_file lets forward trust an https target."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pki / "server.pem", pki / "server.key")
    seen: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.Response(status=202)

    target = web.Application()
    target.router.add_post("/", receive)
    runner = web.AppRunner(target)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_tls).start()
    tls = TlsConfig(pki / "server.pem", pki / "server.key")
    client = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    try:
        async with (
            running(forward=f"https://127.0.0.1:{port}", ca_file=pki / "ca.pem", tls=tls) as ce,
            ClientSession(timeout=ClientTimeout(total=10)) as session,
        ):
            url = ce.url.replace("http://", "https://")
            for kind, body in (("request", REQUEST), ("response", RESPONSE)):
                headers, data = binary(kserve_event(kind, "tls", body))
                async with session.post(url, data=data, headers=headers, ssl=client) as response:
                    assert response.status == 200
            await ce.until(lambda: len(ce.records) == 1 and len(seen) == 2, "pair and forwards")
            assert seen == [encode(REQUEST), encode(RESPONSE)]
            assert not ce.errors
    finally:
        await runner.cleanup()
