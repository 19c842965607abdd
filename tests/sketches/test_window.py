"""Sliding windows of tumbling slices: what they cover as time passes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.config import Window
from driftgauge.sketches.sealed import SliceSealer
from driftgauge.sketches.summary import NumericBinning, NumericSummary, Summary, to_floats
from driftgauge.sketches.window import Sealed, Slice, SlicedWindow

WINDOW = Window(seconds=60.0, slices=6)  # six slices of ten seconds
BINNING = NumericBinning(np.array([0.0]))


def fresh() -> dict[str, Summary]:
    return {"x": NumericSummary(BINNING)}


def add(window: SlicedWindow, now: float, *values: float) -> None:
    summary = window.current(now)["x"]
    assert isinstance(summary, NumericSummary)
    summary.update(*to_floats(list(values)))


def count(window: SlicedWindow, now: float) -> int:
    return window.merged(now)["x"].count


def test_updates_in_one_slice_share_its_summary() -> None:
    """Two times inside the same ten seconds land in one slice."""
    window = SlicedWindow(WINDOW, fresh)
    add(window, 1000.0, 1.0)
    add(window, 1009.9, 2.0)
    assert [s.index for s in window.slices()] == [100]
    assert count(window, 1009.9) == 2


def test_slices_expire_once_the_window_has_moved_past_them() -> None:
    """A slice stays while the window covers part of it and is gone one slice length later."""
    window = SlicedWindow(WINDOW, fresh)
    add(window, 1000.0, 1.0)  # slice 100 covers [1000, 1010)
    assert count(window, 1059.9) == 1  # still in slice 105, the sixth
    assert count(window, 1060.0) == 0  # slice 106 starts: slice 100 has expired
    assert window.slices() == []


def test_merged_covers_only_unexpired_slices() -> None:
    """Values from slices older than the window drop out; newer ones stay."""
    window = SlicedWindow(WINDOW, fresh)
    for second in range(0, 120, 10):
        add(window, 1000.0 + second, float(second))
    merged = window.merged(1115.0)["x"]
    assert isinstance(merged, NumericSummary)
    assert merged.count == 6
    assert (merged.minimum, merged.maximum) == (60.0, 110.0)
    assert [s.index for s in window.slices()] == list(range(106, 112))


def test_window_covers_between_w_minus_one_slice_and_w() -> None:
    """Right after a slice boundary the window holds W − W/S seconds, right before it almost W."""
    window = SlicedWindow(WINDOW, fresh)
    for second in range(200):
        add(window, 1000.0 + second, 1.0)
    assert count(window, 1199.5) == 60  # seconds 1140..1199: the full six slices
    assert count(window, 1200.0) == 50  # slice 114 dropped, slice 120 is still empty


def test_merged_does_not_change_the_stored_slices() -> None:
    """Reading the window twice gives the same answer."""
    window = SlicedWindow(WINDOW, fresh)
    add(window, 1000.0, 1.0, 2.0)
    add(window, 1015.0, 3.0)
    assert count(window, 1020.0) == 3
    assert count(window, 1020.0) == 3
    assert [s.summaries["x"].count for s in window.slices()] == [2, 1]


def test_a_clock_going_backwards_keeps_adding_to_the_newest_slice() -> None:
    """After an NTP step back, updates go to the newest slice and nothing is dropped."""
    window = SlicedWindow(WINDOW, fresh)
    add(window, 1000.0, 1.0)
    add(window, 1030.0, 2.0)
    add(window, 900.0, 3.0)  # far in the past
    add(window, 1025.0, 4.0)
    assert [s.index for s in window.slices()] == [100, 103]
    assert [s.summaries["x"].count for s in window.slices()] == [1, 3]
    assert count(window, 950.0) == 4  # reading at the earlier time drops nothing
    assert count(window, 1035.0) == 4


def test_a_long_gap_empties_the_window() -> None:
    """After more than a window of silence the next update starts a lone slice."""
    window = SlicedWindow(WINDOW, fresh)
    add(window, 1000.0, 1.0)
    add(window, 5000.0, 2.0)
    assert [s.index for s in window.slices()] == [500]
    assert count(window, 5000.0) == 1


def test_restore_orders_slices_by_index() -> None:
    """Restored slices are kept oldest first, so expiry still drops the oldest."""
    window = SlicedWindow(WINDOW, fresh)
    window.restore([Slice(103, fresh()), Slice(101, fresh())])
    assert [s.index for s in window.slices()] == [101, 103]
    window.merged(1075.0)  # slice 107 is current: 101 expires, 103 stays
    assert [s.index for s in window.slices()] == [103]


@pytest.mark.parametrize("now", [0.0, 0.5, 1e9 + 0.25])
def test_an_empty_window_merges_to_empty_summaries(now: float) -> None:
    """Reading a window nobody wrote to gives empty summaries, not an error."""
    window = SlicedWindow(WINDOW, fresh)
    assert count(window, now) == 0


# -- sealing closed slices ------------------------------------------------------------


def sealed_window() -> SlicedWindow[Summary]:
    return SlicedWindow(WINDOW, fresh, SliceSealer())


def test_closed_slices_are_sealed_and_the_newest_never_is() -> None:
    """Once a newer slice begins the older ones are sealed; updates still reach the newest."""
    window = sealed_window()
    add(window, 1000.0, 1.0)
    add(window, 1010.0, 2.0)
    add(window, 1025.0, 3.0)
    kinds = [isinstance(s.summaries, Sealed) for s in window.slices()]
    assert kinds == [True, True, False]
    add(window, 1005.0, 4.0)  # the clock went back: still the newest slice
    assert count(window, 1025.0) == 4
    assert [s.summaries["x"].count for s in window.slices()] == [1, 1, 2]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 200.0), st.lists(st.floats(-1e3, 1e3), max_size=20)),
        max_size=30,
    ),
    st.floats(0.0, 260.0),
)
def test_a_sealed_window_reads_as_an_unsealed_one(
    updates: list[tuple[float, list[float]]], read_after: float
) -> None:
    """Whatever the times, sealing changes nothing a read of the window gives."""
    plain, sealed = SlicedWindow(WINDOW, fresh), sealed_window()
    clock = 1000.0
    for step, values in updates:
        clock += step
        for window in (plain, sealed):
            add(window, clock, *values)
    now = clock + read_after
    got, expected = sealed.merged(now)["x"], plain.merged(now)["x"]
    assert isinstance(got, NumericSummary) and isinstance(expected, NumericSummary)
    assert np.array_equal(got.bins, expected.bins)
    assert (got.count, got.total, got.minimum, got.maximum) == pytest.approx(
        (expected.count, expected.total, expected.minimum, expected.maximum)
    )
    assert sorted(got.kll) == sorted(expected.kll)  # few values: both sketches still exact
    assert [s.index for s in sealed.slices()] == [s.index for s in plain.slices()]


def test_a_window_emptied_by_expiry_starts_again() -> None:
    """A read that expires every slice, the newest included, leaves a window that takes updates."""
    window = sealed_window()
    add(window, 1000.0, 1.0)
    assert count(window, 2000.0) == 0
    add(window, 2000.0, 2.0)
    assert count(window, 2000.0) == 1


def test_restore_seals_all_but_the_newest_slice() -> None:
    """A restored snapshot's older slices are sealed; its newest takes updates again."""
    window = sealed_window()
    older, newest = fresh(), fresh()
    for summaries, value in ((older, 1.0), (newest, 2.0)):
        summary = summaries["x"]
        assert isinstance(summary, NumericSummary)
        summary.update(*to_floats([value]))
    window.restore([Slice(103, newest), Slice(101, older)])
    assert [isinstance(s.summaries, Sealed) for s in window.slices()] == [True, False]
    add(window, 1035.0, 3.0)
    assert [s.summaries["x"].count for s in window.slices()] == [1, 2]
    assert count(window, 1035.0) == 3
