"""The monitoring consumer: the proxy's queue drained into the sketches without starving it.

The proxy only enqueues what it answered; :func:`consume` reads those records
on the proxy's loop in slices timed to about 2 ms of CPU, each followed by
a pause as long as that CPU (at most twice what the slice was sized to cost),
hands what it read to the sketches in batches (a
batch's fixed cost paid once for many), moves a record too dear for the
loop to a worker thread, and charges the CPU it took to the ``Sampler``,
which adapts the share of requests admitted.  ``app.py`` starts it under the
proxy's cleanup context.
"""

from __future__ import annotations

import asyncio
import sys
import time

from driftgauge.monitor.batch import Batcher, Extraction
from driftgauge.monitor.route import Router
from driftgauge.sources.proxy import RecordQueue
from driftgauge.sources.sampling import QUEUE_LOW, Sampler, capped_pause
from driftgauge.typing import ConsumerMetrics, Record

__all__ = [
    "BATCH_FILL",
    "BATCH_RECORDS",
    "BATCH_SECONDS",
    "BEHIND_SECONDS",
    "MIN_PAUSE_SECONDS",
    "OBSERVE_SECONDS",
    "SLICE_SECONDS",
    "THREAD_SECONDS",
    "THREAD_SWITCH_SECONDS",
    "consume",
]

# The CPU a read slice is sized to.  Each slice, and each batch observed, holds the proxy's loop:
# at one connection the only client waits that long (``bench.consumer`` times the holds).  5 ms
# slices held it about twice as long; 1 ms ones cost about 8% more CPU per request (bench.proxy).
SLICE_SECONDS = 0.002
# Ingesting a batch has a fixed cost (for a wide model, a few hundred µs: sorting, binning and
# the windows' slices) besides its cost per record, so the consumer waits for a batch of about
# BATCH_RECORDS records or BATCH_SECONDS, whichever comes first.  Freshness does not suffer:
# drift is recomputed every few seconds.
BATCH_RECORDS = 256
BATCH_SECONDS = 0.25
# ... and waits for no more than this share of the queue's bounds, so gathering never fills it.
BATCH_FILL = 0.05
# A record that has waited this long reads to the sampler as a full queue (10 s): the consumer
# is behind once the oldest record waits QUEUE_LOW of it (1 s, four times the longest gathering:
# a loop stall of a few hundred milliseconds behind a huge body is not a backlog), far behind
# from QUEUE_HIGH of it (5 s).
BEHIND_SECONDS = 4 * BATCH_SECONDS / QUEUE_LOW
# The CPU a batch's ingest into the sketches may take on the loop (it cannot be split), or
# twice a one-record batch's where that is dearer (see consume).
OBSERVE_SECONDS = 2 * SLICE_SECONDS
# The shortest pause after a slice.  Both loops time sleeps in whole milliseconds: asyncio's
# selector rounds a shorter sleep up (about 1.1 ms), uvloop rounds it to the nearest (0 below
# 0.5 ms: no pause at all, and monitoring would take the loop from the requests).
MIN_PAUSE_SECONDS = 0.001
# A record whose ingest costs more CPU than this runs in a worker thread (see consume).
THREAD_SECONDS = 0.02
# The interpreter's switch interval while it does: how long the loop's thread may wait for
# the GIL after each socket call (5 ms by default).
THREAD_SWITCH_SECONDS = 0.0005


def _ingest_timed(batcher: Router, records: list[Record]) -> float:
    """Ingest ``records``; returns the CPU seconds that took in the calling thread.

    CPU time, not elapsed time: waits for the GIL or for a core on a busy
    machine would make the work look dearer than it is and push it into a
    thread, where it slows the loop more (each socket call then waits for
    the GIL).
    """
    started = time.thread_time()
    batcher.ingest(records)
    return time.thread_time() - started


async def _ingest_in_thread(batcher: Router, records: list[Record]) -> float:
    """``_ingest_timed`` in a worker thread, with a short switch interval meanwhile.

    The loop's thread gives up the GIL on every socket call and then waits for
    the worker to hand it back, which the interpreter asks for only after the
    switch interval (a convoy): at 5 ms per call, a request that needs a few
    of them is held up for tens of milliseconds.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, THREAD_SWITCH_SECONDS))
    ingest = asyncio.ensure_future(asyncio.to_thread(_ingest_timed, batcher, records))
    try:
        return await asyncio.shield(ingest)
    except asyncio.CancelledError:
        # A cancel (shutdown) cannot stop the thread: it ends first, or the queue's flush on
        # the loop's thread would ingest beside it (and the last state save miss its records).
        await asyncio.wait([ingest])
        raise
    finally:
        sys.setswitchinterval(interval)


def _read_timed(
    batcher: Router, records: list[Record], pending: dict[Batcher, Extraction]
) -> float:
    """Extract ``records`` into ``pending``; returns the CPU seconds that took (see above)."""
    started = time.thread_time()
    batcher.read(records, pending)
    return time.thread_time() - started


def _observe_timed(batcher: Router, pending: dict[Batcher, Extraction]) -> float:
    """Hand ``pending`` to the sketches and empty it; returns the CPU seconds that took."""
    started = time.thread_time()
    batcher.observe(pending)
    pending.clear()
    return time.thread_time() - started


async def consume(
    queue: RecordQueue, batcher: Router, metrics: ConsumerMetrics, sampler: Sampler
) -> None:
    """Drain the proxy's queue into the sketches in batches, yielding between them; charge
    their CPU to the sampler and let it adapt the share of requests admitted."""
    size, batch, threaded = 1, 1, False
    single = 0.0  # what a one-record batch's observe costs at most
    each = 0.0  # what a record cost to read in the last slice
    target = batch  # the records the batch being read will hold
    pending: dict[Batcher, Extraction] = {}
    try:
        while True:
            await queue.wait(
                min(BATCH_RECORDS, max(1, int(queue.capacity * BATCH_FILL))),
                max(1, int(queue.max_bytes * BATCH_FILL)),
                BATCH_SECONDS,
            )
            metrics.sampling_rate.set(sampler.update())
            backlog = len(queue)  # records that come in meanwhile wait for the next batch
            while backlog:
                # Records are read (decoded, extracted) in slices sized to cost about SLICE_SECONDS
                # on the proxy's loop, each followed by a pause as long as its CPU (within
                # sampling.MAX_PAUSE_FACTOR): monitoring gets at most half the loop's CPU, a slice never
                # holds a request up for long, and under overload the queue fills and drops
                # (counted) instead of the traffic slowing down.  Not as long as its wall time: on
                # a busy or CPU-throttled node a slice of 2 ms of CPU may span 50 ms, in which the
                # requests were held up by the node, not by the slice, and a 50 ms pause left
                # monitoring far less than half (its queue filled at modest rates).  The records
                # read then reach the sketches together, in batches sized likewise to cost about
                # OBSERVE_SECONDS (at most BATCH_RECORDS records), so a batch's fixed cost is paid
                # once for many.  The first slice and batch are one record: it also creates the
                # windows' slices, dear for a wide model.  When even one record costs much more CPU
                # (huge bodies, many thousands of fields), slices are read and ingested in a worker
                # thread, which hands the loop the GIL back within THREAD_SWITCH_SECONDS.
                if not pending:
                    # A remainder of at most a quarter batch joins it: on its own it would pay a
                    # batch's fixed cost and a pause for a few records (a queue of 8 against a
                    # batch of 7 sized from a one-record observe took two turns to drain).
                    stretch = min(BATCH_RECORDS, batch + -(-batch // 4))
                    target = backlog if backlog <= stretch else batch
                records = queue.take(min(size, backlog, target - _count(pending)))
                if not records:
                    break
                backlog = min(backlog - len(records), len(queue))
                if threaded:
                    work = await _ingest_in_thread(batcher, records)
                else:
                    work = _read_timed(batcher, records, pending)
                sampler.charge(work, len(records))
                owed = capped_pause(work, max(SLICE_SECONDS, each * len(records)))
                # A record goes to the worker thread when two slices in a row (or the first)
                # cost THREAD_SECONDS a record: under CPU contention a slice or observe of a
                # record, normally under 1 ms, is at times charged 30-100 ms of thread CPU (no
                # garbage collection ran), and a thread, under the same contention, handed the
                # next one back 30-140 ms later while a queue of 4 at 100/s overflowed.
                threaded = min(work / len(records), each or work) > THREAD_SECONDS
                each = work / len(records)
                # Sized from this slice's cost per record read: a slice cut short by the
                # backlog was cheap because it was short, not because its records were.
                ideal = int(len(records) * SLICE_SECONDS / max(work, 1e-6))
                size = max(1, min(BATCH_RECORDS, ideal))
                count = _count(pending)
                if count and (count >= target or not backlog or threaded):
                    # A slice cheaper than the shortest pause is observed at once, its CPU paused
                    # for with the batch's: each pause spans a few ms of wall time or more on a
                    # busy machine (until the loop comes back to it), and what comes in
                    # meanwhile waits in the queue; two a batch filled a queue of 10 at 400/s.
                    if owed >= MIN_PAUSE_SECONDS:
                        await asyncio.sleep(owed)
                        owed = 0.0
                    work = _observe_timed(batcher, pending)
                    sampler.charge(work, 0)  # the records were counted as they were read
                    owed = capped_pause(owed + work, max(OBSERVE_SECONDS, 2 * single))
                    # Sized to cost OBSERVE_SECONDS, or twice a one-record batch's cost where
                    # that is dearer (a wide model's windows: several ms however few records),
                    # so that fixed cost is still shared by many records.  That cost is the
                    # last one-record batch's, or any cheaper batch's since (the first batch
                    # also creates the windows' slices; a cheap record, another model's say,
                    # lowers it only until the next one-record batch).
                    dear = count == 1 and min(work, single or work) > THREAD_SECONDS  # as above
                    single = work if count == 1 else min(single, work)
                    ideal = int(count * max(OBSERVE_SECONDS, 2 * single) / max(work, 1e-6))
                    batch = max(1, min(BATCH_RECORDS, ideal))
                    threaded = threaded or dear
                metrics.queue_depth.set(len(queue))
                metrics.sampling_rate.set(sampler.update())
                await asyncio.sleep(max(MIN_PAUSE_SECONDS, owed))
    finally:  # cancelled (shutdown): what was read still reaches the sketches
        batcher.observe(pending)


def _count(pending: dict[Batcher, Extraction]) -> int:
    return sum(len(read) for read in pending.values())
