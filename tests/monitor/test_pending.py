"""The columnar store of predictions awaiting labels, and its snapshot encoding."""

from __future__ import annotations

import base64
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.monitor.pending import PendingRows, PendingStore, decode_rows, encode_rows
from driftgauge.runtime.state import pack, unpack
from driftgauge.sketches.summary import category_key
from tests.feedback_support import as_format_2

NAN = float("nan")

Row = tuple[float, float, float, tuple[int, ...]]


def add(
    store: PendingStore,
    ids: Sequence[str | None],
    ts: float,
    predicted: Sequence[float] | None = None,
    probability: Sequence[float] | None = None,
    segments: Sequence[Sequence[int]] | None = None,
) -> None:
    """``store.add`` from plain lists (predictions 1.0, no probability, codes 0 by default)."""
    rows = len(ids)
    store.add(
        ids,
        ts,
        np.asarray([1.0] * rows if predicted is None else predicted, dtype=np.float64),
        np.asarray([NAN] * rows if probability is None else probability, dtype=np.float64),
        np.asarray(segments, dtype=np.intp).reshape(rows, store.width)
        if segments is not None
        else np.zeros((rows, store.width), dtype=np.intp),
    )


def held(store: PendingStore) -> list[str]:
    return store.snapshot().ids


def rows_of(rows: PendingRows) -> list[Row]:
    """Rows as plain tuples, as the reference holds them."""
    return [
        (ts, predicted, probability, tuple(codes))
        for ts, predicted, probability, codes in zip(
            rows.ts.tolist(),
            rows.predicted.tolist(),
            rows.probability.tolist(),
            rows.segments.tolist(),
            strict=True,
        )
    ]


def same_rows(actual: list[Row], expected: list[Row]) -> bool:
    """Equal rows, NaN (an absent probability) equal to NaN."""

    def plain(row: Row) -> tuple[Any, ...]:
        return tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row)

    return [plain(r) for r in actual] == [plain(r) for r in expected]


def round_trip(rows: PendingRows, width: int) -> PendingRows:
    """Through a state file's bytes, as a snapshot stores them."""
    return decode_rows(unpack(pack({"held": encode_rows(rows)}))["held"], width)


# -- the store ----------------------------------------------------------------------------------


def test_rows_without_an_id_or_a_prediction_are_not_held() -> None:
    """A None id or a NaN prediction waits for nothing; the other rows of the batch do."""
    store = PendingStore(1)
    add(
        store,
        ["a", None, "c", "d"],
        5.0,
        [1.0, 2.0, NAN, 4.0],
        [0.5, 0.6, 0.7, NAN],
        [[0], [1], [2], [-1]],
    )
    rows = store.snapshot()
    assert rows.ids == ["a", "d"] and len(store) == 2
    assert same_rows(rows_of(rows), [(5.0, 1.0, 0.5, (0,)), (5.0, 4.0, NAN, (-1,))])


def test_a_registered_id_again_replaces_its_row_and_becomes_newest() -> None:
    """Re-registering moves the id to the end with its new values, within a batch too."""
    store = PendingStore(0)
    add(store, ["a", "b", "c"], 1.0, [1.0, 2.0, 3.0])
    add(store, ["a"], 2.0, [10.0])
    add(store, ["d", "b", "d"], 3.0, [4.0, 20.0, 40.0])
    rows = store.snapshot()
    assert rows.ids == ["c", "a", "b", "d"] and len(store) == 4
    assert rows.predicted.tolist() == [3.0, 10.0, 20.0, 40.0]
    assert rows.ts.tolist() == [1.0, 2.0, 3.0, 3.0]


def test_pop_takes_matched_rows_in_key_order() -> None:
    """pop returns which keys matched and their rows in the keys' order; a repeat matches once."""
    store = PendingStore(1)
    add(store, ["a", "b", "c"], 1.0, [1.0, 2.0, 3.0], None, [[0], [1], [2]])
    matched, rows = store.pop(["c", "x", "a", "c"])
    assert matched.tolist() == [True, False, True, False]
    assert rows.ids == ["c", "a"] and rows.predicted.tolist() == [3.0, 1.0]
    assert rows.segments.tolist() == [[2], [0]]
    assert held(store) == ["b"]


def test_pop_tries_the_alternate_only_where_the_key_is_not_held() -> None:
    """Alternates are tried in order, after their own key (one-row requests: ID:0 names ID)."""
    store = PendingStore(0)
    add(store, ["r", "r:0", "s"], 1.0, [1.0, 2.0, 3.0])
    matched, rows = store.pop(["r:0", "r:0", "s:0", "s"], ["r", "r", "s", None])
    assert matched.tolist() == [True, True, True, False]
    assert rows.predicted.tolist() == [2.0, 1.0, 3.0]
    assert len(store) == 0


def test_expire_evicts_beyond_max_pending_then_older_than_ttl() -> None:
    """Oldest first: the excess over max_pending, then rows older than now - ttl; the count comes back."""
    store = PendingStore(0)
    for t in range(10):
        add(store, [f"r{t}"], float(t))
    assert store.expire(now=9.0, ttl=100.0, max_pending=7) == 3
    assert held(store) == [f"r{t}" for t in range(3, 10)]
    assert store.expire(now=15.5, ttl=10.0, max_pending=7) == 3  # 3, 4, 5 older than 5.5
    assert held(store) == ["r6", "r7", "r8", "r9"]
    assert store.expire(now=15.5, ttl=10.0, max_pending=7) == 0


def test_expire_stops_at_the_first_row_kept() -> None:
    """As a queue: a young row at the head shelters older rows behind it (the clock went back)."""
    store = PendingStore(0)
    add(store, ["young"], 10.0)
    add(store, ["old"], 1.0)
    assert store.expire(now=12.0, ttl=5.0, max_pending=10) == 0
    matched, _ = store.pop(["young"])
    assert matched.all()
    assert store.expire(now=12.0, ttl=5.0, max_pending=10) == 1
    assert len(store) == 0


def test_expire_skips_slots_freed_by_labels() -> None:
    """Labelled rows are not counted as evicted, wherever they were."""
    store = PendingStore(0, capacity=4)
    add(store, [f"r{i}" for i in range(2_000)], 1.0)
    store.pop([f"r{i}" for i in range(0, 2_000, 2)])
    assert store.expire(now=100.0, ttl=10.0, max_pending=5_000) == 1_000
    assert len(store) == 0 and held(store) == []


def test_capacity_follows_the_rows_held() -> None:
    """A bounded store in steady state reuses its room: capacity stays within 2x of what it needs."""
    store = PendingStore(1, capacity=8)
    for batch in range(2_000):
        add(store, [f"b{batch}:{i}" for i in range(10)], float(batch))
        if batch % 3 == 0:
            store.pop([f"b{batch}:{i}" for i in range(5)])
        store.expire(now=float(batch), ttl=1e9, max_pending=500)
        assert store.capacity <= 2 * (500 + 10)
    assert len(store) == 500
    assert held(store)[-1] == "b1999:9"


def test_add_rejects_columns_of_other_lengths() -> None:
    """Every column must have one entry per id (and segments the store's width)."""
    store = PendingStore(2)
    with pytest.raises(ValueError, match="2 ids"):
        store.add(["a", "b"], 1.0, np.ones(3), np.ones(2), np.zeros((2, 2), dtype=np.intp))
    with pytest.raises(ValueError, match="2 wide"):
        store.add(["a", "b"], 1.0, np.ones(2), np.ones(2), np.zeros((2, 1), dtype=np.intp))
    assert len(store) == 0


def test_restore_replaces_everything_and_keeps_order() -> None:
    """A restored store holds exactly the snapshot's rows, oldest first, and keeps working."""
    store = PendingStore(1)
    add(store, ["a", "b", "c"], 1.0, [1.0, 2.0, 3.0], [0.1, NAN, 0.3], [[0], [1], [-1]])
    store.pop(["b"])
    copy = PendingStore(1)
    add(copy, ["z"], 9.0)
    copy.restore(round_trip(store.snapshot(), 1))
    assert held(copy) == ["a", "c"]
    assert same_rows(rows_of(copy.snapshot()), rows_of(store.snapshot()))
    add(copy, ["a"], 2.0)
    assert held(copy) == ["c", "a"]


# -- encoding -----------------------------------------------------------------------------------

ODD_IDS = ["plain", "with\nnewline", 'quote"and\\slash', "ünïcødé ✓", "\ud800lone", "", "x:0"]


def test_encoding_round_trips_any_id_and_nan() -> None:
    """Ids with newlines, quotes, unicode or lone surrogates and NaN probabilities survive JSON."""
    store = PendingStore(2)
    codes = [[i % 3 - 1, 2] for i in range(len(ODD_IDS))]
    probabilities = [NAN, 0.25, NAN, 1.0, 0.0, 0.5, NAN]
    predicted = [float(i) for i in range(len(ODD_IDS))]
    predicted[1] = math.inf  # a regression prediction that overflowed
    add(store, ODD_IDS, 7.5, predicted, probabilities, codes)
    rows = store.snapshot()
    back = round_trip(rows, 2)
    assert back.ids == ODD_IDS
    assert same_rows(rows_of(back), rows_of(rows))
    assert back.segments.dtype == np.int16 and back.ts.dtype == np.float64


def test_ids_are_one_string_unless_one_holds_a_newline() -> None:
    """Ids go as the bytes of one newline-joined string; a newline in one makes them a list."""
    store = PendingStore(0)
    add(store, ["a", "b:0", ""], 1.0)
    assert encode_rows(store.snapshot())["ids"] == b"a\nb:0\n"
    add(store, ["new\nline"], 1.0)
    assert encode_rows(store.snapshot())["ids"] == ["a", "b:0", "", "new\nline"]
    assert round_trip(store.snapshot(), 0).ids == ["a", "b:0", "", "new\nline"]


def test_joined_ids_keep_lone_surrogates() -> None:
    """A lone surrogate (valid in JSON text, not in UTF-8) survives the joined bytes."""
    store = PendingStore(0)
    add(store, ["\ud800lone", "\udfff", "ü"], 1.0)
    assert isinstance(encode_rows(store.snapshot())["ids"], bytes)
    assert round_trip(store.snapshot(), 0).ids == ["\ud800lone", "\udfff", "ü"]


@pytest.mark.parametrize("ids", [[], [""], ["", ""], ["only"]], ids=repr)
def test_few_or_empty_ids_round_trip(ids: list[str]) -> None:
    """No rows, or rows with an empty id, come back as they were, for any width."""
    for width in (0, 3):
        store = PendingStore(width)
        add(store, ids, 2.0)
        back = round_trip(store.snapshot(), width)
        assert back.ids == held(store) and back.segments.shape == (len(back), width)


def _encoded() -> dict[str, Any]:
    store = PendingStore(1)
    add(store, ["a", "b"], 3.0, [1.0, 2.0], [0.5, NAN], [[0], [1]])
    return encode_rows(store.snapshot())


@given(st.lists(st.text(), max_size=20, unique=True))
def test_format_2_payloads_still_decode(ids: list[str]) -> None:
    """Held predictions as state format 2 wrote them (text ids, base64 columns) read the same."""
    store = PendingStore(2)
    add(
        store,
        ids,
        4.0,
        [float(i) for i in range(len(ids))],
        None,
        [[i, -1] for i in range(len(ids))],
    )
    rows = store.snapshot()
    back = decode_rows(as_format_2(encode_rows(rows)), 2)
    assert back.ids == ids
    assert same_rows(rows_of(back), rows_of(rows))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def damage(payload: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        target = payload
        for name in parents:
            target = target[name]
        target[last] = value
        return payload

    return damage


def _drop(name: str) -> Callable[[dict[str, Any]], Any]:
    def damage(payload: dict[str, Any]) -> Any:
        del payload[name]
        return payload

    return damage


def _column(name: str, values: npt.NDArray[Any]) -> Callable[[dict[str, Any]], Any]:
    """Replace column ``name`` with well-formed bytes of ``values``."""

    def damage(payload: dict[str, Any]) -> Any:
        data = base64.b64encode(values.tobytes()).decode("ascii")
        payload[name] = {"dtype": values.dtype.str, "shape": list(values.shape), "data": data}
        return payload

    return damage


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(lambda _: [["a", 1.0]], "format 1", id="format-1-short-row"),
        pytest.param(lambda _: [["a", 1.0, "x", None, []]], "format 1", id="format-1-text-value"),
        pytest.param(lambda _: [["a", 1.0, 1.0, None, [0, 1]]], "segments", id="format-1-width"),
        pytest.param(lambda _: "rows", "expected an object", id="not-an-object"),
        pytest.param(_set("ids", {"a": 0}), "list of strings", id="ids-not-a-list"),
        pytest.param(_set("ids", ["a", 2]), "list of strings", id="id-not-a-string"),
        pytest.param(_set("ids", "a\nb\nc"), "shape", id="more-joined-ids-than-rows"),
        pytest.param(_set("ids", b"a\nb\nc"), "shape", id="more-joined-id-bytes-than-rows"),
        pytest.param(_set("ids", b"a\n\xff"), "UTF-8", id="ids-not-utf-8"),
        pytest.param(_set("ids", ["a", "a"]), "repeat an id", id="repeated-id"),
        pytest.param(_set("ids", ["a", "b", "c"]), "shape", id="more-ids-than-rows"),
        pytest.param(_drop("probability"), "not an object", id="missing-column"),
        pytest.param(_set("ts.dtype", "<f4"), "dtype", id="other-dtype"),
        pytest.param(_set("segments.dtype", ">i2"), "dtype", id="big-endian"),
        pytest.param(_set("segments.shape", [2, 2]), "shape", id="other-width"),
        pytest.param(_set("ts.data", "AAAA"), "bytes", id="short-base64-data"),
        pytest.param(_set("ts.data", b"\0" * 15), "bytes", id="short-data"),
        pytest.param(_set("ts.data", "not base64!"), "base64", id="bad-base64"),
        pytest.param(_set("ts.data", None), "base64", id="data-not-text"),
        pytest.param(_column("ts", np.asarray([NAN, 1.0], "<f8")), "time", id="nan-time"),
        pytest.param(
            _column("predicted", np.asarray([1.0, NAN], "<f8")), "NaN", id="nan-prediction"
        ),
        pytest.param(
            _column("segments", np.asarray([[0], [-2]], "<i2")), "outside", id="bad-segment-code"
        ),
    ],
)
def test_decode_rejects_malformed_payloads(
    damage: Callable[[dict[str, Any]], Any], message: str
) -> None:
    """Every mismatch of lengths, shapes, dtypes or values is a ValueError (the snapshot goes aside)."""
    with pytest.raises(ValueError, match=message):
        decode_rows(damage(_encoded()), 1)


def test_decode_checks_the_configured_width() -> None:
    """Rows saved with one segment feature do not load into a config with two."""
    with pytest.raises(ValueError, match="shape"):
        decode_rows(_encoded(), 2)


# -- against a reference model ------------------------------------------------------------------


class Reference:
    """The store as it was: an OrderedDict in insertion order, evicted from the front."""

    def __init__(self) -> None:
        self.rows: OrderedDict[str, Row] = OrderedDict()

    def add(
        self,
        ids: Sequence[str | None],
        ts: float,
        predicted: Sequence[float],
        probability: Sequence[float],
        segments: Sequence[Sequence[int]],
    ) -> None:
        for key, value, chance, codes in zip(ids, predicted, probability, segments, strict=True):
            if key is not None and not math.isnan(value):
                self.rows.pop(key, None)
                self.rows[key] = (ts, value, chance, tuple(codes))

    def pop(
        self, keys: Sequence[str], alternates: Sequence[str | None] | None
    ) -> tuple[list[bool], list[Row]]:
        matched, taken = [], []
        for index, key in enumerate(keys):
            row = self.rows.pop(key, None)
            if row is None and alternates is not None and alternates[index] is not None:
                row = self.rows.pop(alternates[index], None)
            matched.append(row is not None)
            if row is not None:
                taken.append(row)
        return matched, taken

    def expire(self, now: float, ttl: float, max_pending: int) -> int:
        evicted = 0
        while self.rows and (
            len(self.rows) > max_pending or next(iter(self.rows.values()))[0] < now - ttl
        ):
            self.rows.popitem(last=False)
            evicted += 1
        return evicted


KEYS = [f"k{i}" for i in range(8)] + [f"k{i}:0" for i in range(4)] + ["", "new\nline"]
keys = st.sampled_from(KEYS)
values = st.one_of(st.just(NAN), st.floats(-1e6, 1e6), st.just(math.inf))


@st.composite
def batches(draw: st.DrawFn, width: int) -> tuple[str, Any]:
    rows = draw(st.integers(0, 12))
    return (
        "add",
        (
            draw(st.lists(st.one_of(st.none(), keys), min_size=rows, max_size=rows)),
            draw(st.lists(values, min_size=rows, max_size=rows)),
            draw(st.lists(st.one_of(st.just(NAN), st.floats(0, 1)), min_size=rows, max_size=rows)),
            draw(
                st.lists(
                    st.lists(st.integers(-1, 50), min_size=width, max_size=width),
                    min_size=rows,
                    max_size=rows,
                )
            ),
        ),
    )


def operations(width: int) -> st.SearchStrategy[list[tuple[str, Any]]]:
    return st.lists(
        st.one_of(
            batches(width),
            st.tuples(st.just("pop"), st.tuples(st.lists(keys, max_size=8), st.booleans())),
            st.tuples(st.just("expire"), st.tuples(st.floats(0, 20), st.integers(0, 10))),
            st.tuples(st.just("tick"), st.floats(-3, 10)),
            st.tuples(st.just("restore"), st.none()),
        ),
        max_size=40,
    )


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2).flatmap(lambda width: st.tuples(st.just(width), operations(width))))
def test_store_behaves_like_an_ordered_dict(case: tuple[int, list[tuple[str, Any]]]) -> None:
    """Any sequence of add/pop/expire (and snapshot restores) leaves the reference's rows and counts."""
    width, steps = case
    store, reference, now = PendingStore(width, capacity=2), Reference(), 0.0
    for name, argument in steps:
        if name == "add":
            ids, predicted, probability, segments = argument
            add(store, ids, now, predicted, probability, segments)
            reference.add(ids, now, predicted, probability, segments)
        elif name == "pop":
            wanted, quirk = argument
            alternates = [k[:-2] if k.endswith(":0") else None for k in wanted] if quirk else None
            matched, rows = store.pop(wanted, alternates)
            expected_matched, expected_rows = reference.pop(wanted, alternates)
            assert matched.tolist() == expected_matched
            assert same_rows(rows_of(rows), expected_rows)
        elif name == "expire":
            ttl, max_pending = argument
            assert store.expire(now, ttl, max_pending) == reference.expire(now, ttl, max_pending)
        elif name == "tick":
            now += argument
        else:
            restored = PendingStore(width, capacity=2)
            restored.restore(round_trip(store.snapshot(), width))
            store = restored
        snapshot = store.snapshot()
        assert snapshot.ids == list(reference.rows)
        assert same_rows(rows_of(snapshot), list(reference.rows.values()))
        assert len(store) == len(reference.rows)


def test_class_keys_survive_a_snapshot_and_older_snapshots_read_as_unknown() -> None:
    """Each row's class key goes through a snapshot unchanged; a snapshot written before class
    keys were held (no "classes" column) reads back with 0, not known, for every row."""
    store = PendingStore(1)
    keys = np.asarray([category_key("cat"), category_key("dog"), 0], dtype=np.int64)
    store.add(["a", "b", "c"], 1.0, np.ones(3), np.full(3, NAN), np.zeros((3, 1)), keys)
    back = round_trip(store.snapshot(), 1)
    assert back.classes.tolist() == keys.tolist()
    older = encode_rows(store.snapshot())
    del older["classes"]
    assert decode_rows(older, 1).classes.tolist() == [0, 0, 0]
