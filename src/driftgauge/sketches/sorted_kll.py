"""A KLL sketch of values already in order, compacted with numpy instead of one update each.

DataSketches' KLL update takes 25–35 ns a value.  A baseline build sorts
each chunk anyway (its bucket counts need it), and a sorted chunk can be
compacted in whole: KLL's compaction keeps the odd- or the even-placed
items of a sorted level, chosen at random, at twice the weight.  Halving the
sorted chunk ``h`` times that way, each time with a fresh random bit, is
``h`` such compactions.  The result is written in DataSketches' own serial
format (with ``k`` = :data:`CHUNK_K`, so every level is within capacity) and
read back as a sketch, which the caller merges into its own; the merge then
compacts by the caller's ``k`` as any merge would.

Error: the compactions here are the ones a streamed sketch would make at
its low levels, only over longer levels, so fewer of them: each adds ±2^l
or nothing to a rank at level ``l``, with mean zero.  At worst one chunk
moves a rank by ``2^h − 1 < 2·len/CHUNK_K`` (under 0.05% of the chunk's
count), far inside the ``normalized_rank_error`` of the ``k`` = 200 sketch
it is merged into (1.33%), which stays the stated bound.
``tests/sketches/test_sorted_kll.py`` checks ranks against numpy.
"""

from __future__ import annotations

import random
import struct
from functools import cache
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt

from driftgauge.sketches.codec import KLL_FAMILY
from driftgauge.sketches.summary import ItemType, kll_items

__all__ = ["CHUNK_K", "sorted_kll", "total_capacity"]

# Items a chunk's sketch keeps: 4,096 of a 65,536-row chunk, each of weight 16.
CHUNK_K = 4096
_M = 8  # DataSketches' minimum level width, fixed in its serial format
# preamble ints, serial version, family, flags, k, m, unused; n, min_k, levels, unused
_HEADER = struct.Struct("<BBBBHBBQHBB")
_FULL_PREAMBLE_INTS, _SERIAL_VERSION = 5, 1
_FORMATS: dict[ItemType, tuple[str, Any]] = {
    "float64": ("<f8", ds.kll_doubles_sketch),
    "float32": ("<f4", ds.kll_floats_sketch),
}


def _capacity_at_depth(k: int, depth: int) -> int:
    """k·(2/3)^depth rounded as DataSketches rounds it (``int_cap_aux``)."""
    if depth > 30:
        half = depth // 2
        return _capacity_at_depth(_capacity_at_depth(k, half), depth - half)
    return int(((2 * k) << depth) // 3**depth + 1) >> 1


def _offset() -> int:
    """Which items of a level a halving keeps: 0 or 1 at random.

    From the ``random`` module, which reseeds in a forked child: a numpy
    generator made at import would give every worker the same bits.
    """
    return random.getrandbits(1)


@cache
def total_capacity(k: int, levels: int) -> int:
    """The item slots of a KLL sketch with ``levels`` levels (``compute_total_capacity``)."""
    return sum(max(_M, _capacity_at_depth(k, levels - height - 1)) for height in range(levels))


def sorted_kll(ordered: npt.NDArray[np.floating[Any]], items: ItemType) -> Any:
    """A KLL sketch of ``ordered`` (finite, ascending, not empty) as ``items``.

    A chunk of :data:`CHUNK_K` values or fewer is simply added.  float32
    values are widened only as kept (a float64 sketch of float32 values).
    """
    dtype, sketch_type = _FORMATS[items]
    values = kll_items(ordered, items, float(ordered[0]), float(ordered[-1]))
    if len(values) <= CHUNK_K:
        sketch = sketch_type(CHUNK_K)
        sketch.update(np.array(values, dtype=dtype))
        return sketch
    levels: list[npt.NDArray[Any]] = []
    level = values
    while len(level) > CHUNK_K:
        # An odd item out stays at this level with its weight: it adds no error.
        odd = len(level) % 2
        levels.append(level[len(level) - odd :])
        level = level[_offset() : len(level) - odd : 2]
    levels.append(level)
    capacity = total_capacity(CHUNK_K, len(levels))
    offsets = np.cumsum([0] + [len(x) for x in levels[:-1]]) + capacity - sum(map(len, levels))
    preamble = (_FULL_PREAMBLE_INTS, _SERIAL_VERSION, KLL_FAMILY, 0, CHUNK_K, _M, 0)
    full = (len(values), CHUNK_K, len(levels), 0)
    data = b"".join(
        [
            _HEADER.pack(*preamble, *full),
            offsets.astype("<u4").tobytes(),
            np.array([values[0], values[-1]], dtype=dtype).tobytes(),
            np.concatenate(levels).astype(dtype, copy=False).tobytes(),
        ]
    )
    return sketch_type.deserialize(data)
