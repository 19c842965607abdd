"""The pairing store joins request and response halves by id, within a bound and a time to live."""

from __future__ import annotations

from collections import Counter

from driftgauge.sources.pairing import PairingStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(max_pending: int = 10, ttl: float = 5.0) -> tuple[PairingStore, Counter[str], Clock]:
    reasons: Counter[str] = Counter()
    clock = Clock()

    def count(reason: str) -> None:
        reasons[reason] += 1

    return PairingStore(max_pending, ttl, count, clock), reasons, clock


def test_request_then_response_makes_one_record_with_the_request_time() -> None:
    """The record carries both bodies, the id, and the request's timestamp."""
    store, reasons, _ = make()
    assert store.add("request", "a", {"x": 1}, 10.0) is None
    record = store.add("response", "a", {"y": 2}, 11.0)
    assert record is not None
    assert (record.request, record.response, record.request_id, record.ts) == (
        {"x": 1},
        {"y": 2},
        "a",
        10.0,
    )
    assert record.path == ""
    assert len(store) == 0 and not reasons


def test_response_first_pairs_the_same_way() -> None:
    """Out of order: the response waits for its request and the record is the same."""
    store, reasons, _ = make()
    assert store.add("response", "a", {"y": 2}, 11.0) is None
    record = store.add("request", "a", {"x": 1}, 10.0)
    assert record is not None
    assert (record.request, record.response, record.ts) == ({"x": 1}, {"y": 2}, 10.0)
    assert not reasons


def test_halves_expire_after_the_ttl_and_are_counted_by_kind() -> None:
    """A half older than ttl is dropped, counted as unpaired request or response."""
    store, reasons, clock = make(ttl=5.0)
    store.add("request", "a", {}, 0.0)
    clock.now += 3
    store.add("response", "b", {}, 0.0)
    clock.now += 2.5
    assert store.expire() == 1
    assert reasons == {"cloudevents_unpaired_request": 1}
    clock.now += 3
    assert store.add("request", "b", {}, 0.0) is None  # its response expired meanwhile
    assert reasons == {"cloudevents_unpaired_request": 1, "cloudevents_unpaired_response": 1}
    assert len(store) == 1


def test_oldest_half_is_evicted_beyond_max_pending() -> None:
    """The store never holds more than max_pending halves; the oldest goes first."""
    store, reasons, _ = make(max_pending=2)
    store.add("request", "a", {}, 0.0)
    store.add("response", "b", {}, 0.0)
    store.add("request", "c", {}, 0.0)
    assert len(store) == 2
    assert reasons == {"cloudevents_unpaired_request": 1}
    assert store.add("request", "b", {}, 0.0) is not None  # b survived, a did not
    assert store.add("response", "a", {}, 0.0) is None


def test_a_second_half_of_the_same_kind_replaces_the_first_and_is_counted() -> None:
    """Two requests with one id: the later one waits, the duplicate is counted."""
    store, reasons, _ = make()
    store.add("request", "a", {"n": 1}, 0.0)
    store.add("request", "a", {"n": 2}, 0.0)
    assert reasons == {"cloudevents_duplicate": 1}
    record = store.add("response", "a", {}, 0.0)
    assert record is not None and record.request == {"n": 2}


def test_a_pair_replayed_after_pairing_is_counted_as_duplicates_and_not_paired_again() -> None:
    """A retrying sender resends both halves of a call already paired: two duplicates, no Record."""
    store, reasons, _ = make()
    store.add("request", "a", {"n": 1}, 0.0)
    assert store.add("response", "a", {}, 0.0) is not None
    assert store.add("request", "a", {"n": 1}, 0.0) is None
    assert store.add("response", "a", {}, 0.0) is None
    assert reasons == {"cloudevents_duplicate": 2}
    assert len(store) == 0  # nothing waits: no unpaired half later either


def test_a_single_replayed_half_is_a_duplicate_not_an_unpaired_event() -> None:
    """One half resent after its pair formed is counted once, as a duplicate, and never expires
    as cloudevents_unpaired_*."""
    store, reasons, clock = make(ttl=5.0)
    store.add("response", "a", {}, 0.0)
    store.add("request", "a", {}, 0.0)
    store.add("response", "a", {}, 0.0)
    clock.now += 60
    store.expire()
    assert reasons == {"cloudevents_duplicate": 1}


def test_paired_ids_are_forgotten_after_the_ttl() -> None:
    """After ttl seconds the id may pair again (a new call reusing it, not a replay)."""
    store, reasons, clock = make(ttl=5.0)
    store.add("request", "a", {"n": 1}, 0.0)
    store.add("response", "a", {}, 0.0)
    clock.now += 5.0
    store.add("request", "a", {"n": 2}, 0.0)
    record = store.add("response", "a", {}, 0.0)
    assert record is not None and record.request == {"n": 2}
    assert not reasons


def test_at_most_max_pending_paired_ids_are_remembered() -> None:
    """Memory stays bounded: past max_pending pairs the oldest ids are forgotten first."""
    store, reasons, _ = make(max_pending=3)
    for event_id in "abcd":
        store.add("request", event_id, {}, 0.0)
        store.add("response", event_id, {}, 0.0)
    assert len(store._paired) == 3
    for event_id in "bcd":  # remembered: replays
        store.add("request", event_id, {}, 0.0)
    assert reasons == {"cloudevents_duplicate": 3}
    assert store.add("request", "a", {}, 0.0) is None  # forgotten: it waits for a response
    assert len(store) == 1


def test_events_pair_only_within_their_origin() -> None:
    """The same id from two origins (two services, or a transformer and its predictor) makes
    two pairs, each Record carrying its request's origin as headers."""
    store, reasons, _ = make()
    wine = {"ce-inferenceservicename": "wine", "ce-component": "predictor"}
    iris = {"ce-inferenceservicename": "iris", "ce-component": "predictor"}
    transformer = {"ce-inferenceservicename": "wine", "ce-component": "transformer"}
    store.add("request", "a", {"to": "wine"}, 0.0, origin=wine)
    store.add("request", "a", {"to": "iris"}, 0.0, origin=iris)
    assert store.add("response", "a", {}, 0.0, origin=transformer) is None
    first = store.add("response", "a", {}, 0.0, origin=dict(iris))
    second = store.add("response", "a", {}, 0.0, origin=wine)
    assert first is not None and second is not None
    assert (first.request, first.headers) == ({"to": "iris"}, iris)
    assert (second.request, second.headers) == ({"to": "wine"}, wine)
    assert not reasons and len(store) == 1  # the transformer's response still waits


def test_a_decoded_id_pairs_under_its_spelling_as_sent_with_an_event_read_as_is() -> None:
    """A binary-mode id made of escapes alone ("a%2Fb", read "a/b") pairs with a structured
    event whose id is "a%2Fb" (a sender that does not encode, in either order), under "a%2Fb";
    with one whose id is "a/b" (a sender that encodes) under "a/b"."""
    for first in ("request", "response"):
        store, reasons, _ = make()
        second = "response" if first == "request" else "request"
        assert store.add(first, "a/b", {first: 1}, 1.0, sent="a%2Fb") is None
        record = store.add(second, "a%2Fb", {second: 1}, 1.0)
        assert record is not None and record.request_id == "a%2Fb"
        assert (record.request, record.response) == ({"request": 1}, {"response": 1})
        assert store.add(second, "a%2Fb", {}, 1.0) is None  # a replay
        assert store.add(first, "a/b", {}, 1.0, sent="a%2Fb") is None
        assert len(store) == 0 and reasons == {"cloudevents_duplicate": 2}
        assert store.add(second, "a%2Fb", {second: 1}, 1.0, origin={"ce-source": "x"}) is None
        origin = {"ce-source": "x"}
        record = store.add(first, "a/b", {first: 1}, 1.0, origin=origin, sent="a%2Fb")
        assert record is not None and record.request_id == "a%2Fb"
        store.add(first, "c/d", {}, 1.0, sent="c%2Fd")
        record = store.add(second, "c/d", {}, 1.0)
        assert record is not None and record.request_id == "c/d"
        assert len(store) == 0


def test_decoded_ids_pair_only_by_what_they_decode_to() -> None:
    """Two binary-mode events pair by their decoded ids alone: "a%2Fb" (read "a/b") and
    "a%252Fb" (read "a%2Fb") are two ids, whatever the order, and neither waits for long
    under the other's spelling once paired or gone."""
    store, reasons, clock = make(ttl=5.0)
    assert store.add("request", "a/b", {}, 1.0, sent="a%2Fb") is None
    assert store.add("response", "a%2Fb", {}, 1.0, sent="a%252Fb") is None
    assert len(store) == 2
    record = store.add("response", "a/b", {}, 1.0, sent="a%2Fb")
    assert record is not None and record.request_id == "a/b"
    clock.now += 6
    store.expire()
    assert len(store) == 0 and reasons == {"cloudevents_unpaired_response": 1}
    # Gone, the expired half's spelling as sent pairs with nothing.
    assert store.add("request", "a%252Fb", {}, 1.0) is None
    assert len(store) == 1
