"""Admission sampling: a hard bound on what monitoring costs when traffic outgrows it.

Monitoring a request costs a copy of its bodies on the request path and, off
it, parsing them and updating the sketches.  Under overload, dropping what
does not fit in the monitoring queue keeps the cost bounded but biases the
windows: a full queue drops whole bursts of contiguous traffic.  Instead, the
:class:`Sampler` decides per request, before anything is copied, whether the
request is monitored at all: with probability ``rate``, independently of
everything else (Bernoulli sampling).  The admitted requests are then a
uniform sample of the traffic, so a window's statistics stay unbiased; the
window simply holds fewer values, and the PSI noise floor and the KS p-value,
which read the window's own count, widen accordingly.  Requests not admitted
are counted as dropped with reason ``sampled``.

The rate adapts, at most once per ``interval`` seconds (:meth:`Sampler.update`,
called by the monitoring consumer), to two readings:

* the CPU time monitoring spent per wall-clock second (:meth:`Sampler.charge`)
  against ``budget`` (cores): above it, the rate is scaled down to spend
  ``HEADROOM`` of the budget; below it while sampling, the rate rises only as
  far as the measured CPU cost of a record and the request rate say fits;
* how far behind the consumer is (``fill``, 0 to 1, its peak over the
  interval): from ``QUEUE_LOW`` on, the consumer is running flat out, so the
  rate is cut to what it took in over the interval (``HEADROOM`` of it) and
  may not rise; from ``QUEUE_HIGH`` on it also at least halves, to drain the
  backlog.  Both sources read how long their oldest record has waited, against
  a wait that reads as 1 (the proxy's ``runtime.consumer.BEHIND_SECONDS`` is 10, the
  CloudEvents source's ``cloudevents.BEHIND_SECONDS`` 3), not how full their
  queue is: the consumer gathers records on purpose before each batch, and
  with a small bound even one record gathered would read as a consumer behind.
  The proxy's reading is also at least ``QUEUE_LOW`` after a record found its
  queue full.

The rate rises at most ``RISE``-fold per interval, so a passing lull does not
flood the queue, and never falls below ``floor``: past that, the queue's own
bound is the limit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

__all__ = [
    "HEADROOM",
    "MAX_PAUSE_FACTOR",
    "QUEUE_HIGH",
    "QUEUE_LOW",
    "RISE",
    "SAMPLED",
    "Sampler",
    "capped_pause",
]

HEADROOM = 0.9  # aim at this share of what fits: room for the readings' noise
QUEUE_LOW = 0.1  # backlog reading (0 to 1) from which the consumer counts as saturated
QUEUE_HIGH = 0.5  # backlog reading from which the rate also halves at each update
RISE = 2.0  # the most the rate grows in one update
SAMPLED = "sampled"  # the drop reason of a request not admitted
# The longest pause a monitoring pacer (runtime.consumer, the CloudEvents source) takes after
# a slice or batch, as a multiple of what it was sized to cost.  Under CPU contention (or a
# long garbage collection) a slice or observe of a few records, normally 0.3-1 ms, was
# sometimes charged 13-100 ms of thread CPU, and as long a pause let a queue of 10 overflow at
# 400 requests a second.  Such a charge also resizes the next slice or batch, which then pays
# for itself: a cost that lasts is paused in full from then on.
MAX_PAUSE_FACTOR = 2.0


def capped_pause(took: float, sized: float) -> float:
    """The pause after a slice or batch that took ``took`` CPU seconds, sized to cost ``sized``:
    as long as its CPU, at most ``MAX_PAUSE_FACTOR`` times ``sized``."""
    return min(took, MAX_PAUSE_FACTOR * sized)


class Sampler:
    """Decides per request whether monitoring takes it, with a rate that keeps within budget.

    ``budget`` is in cores (CPU seconds per wall second); ``fill`` reads how
    far behind monitoring is (0 to 1, see the module docstring);
    ``on_drop(reason, n)`` counts the
    requests not admitted, in bulk at each :meth:`update`.  ``clock`` (seconds)
    and ``draw`` (uniform in [0, 1)) are injectable for tests.
    """

    __slots__ = (
        "_clock",
        "_cpu",
        "_draw",
        "_fill",
        "_last",
        "_offered_then",
        "_on_drop",
        "_peak",
        "_records",
        "_unreported",
        "admitted",
        "budget",
        "floor",
        "interval",
        "offered",
        "rate",
        "sampled",
    )

    def __init__(
        self,
        budget: float,
        fill: Callable[[], float],
        on_drop: Callable[[str, int], None],
        *,
        interval: float = 0.5,
        floor: float = 0.001,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if budget <= 0:
            raise ValueError(f"the CPU budget must be positive, got {budget!r}")
        self.budget = budget
        self.interval = interval
        self.floor = floor
        self.rate = 1.0  # the share of requests admitted: 1 means every request is monitored
        self.offered = 0  # requests asked about, in total
        self.admitted = 0  # ... and admitted
        self.sampled = 0  # ... and not admitted (offered = admitted + sampled)
        self._fill = fill
        self._on_drop = on_drop
        self._clock = clock
        self._draw = draw
        self._last = clock()
        self._offered_then = 0
        self._unreported = 0  # not admitted, not yet passed to on_drop
        self._cpu = 0.0  # CPU seconds charged since the last update ...
        self._records = 0  # ... for this many records
        self._peak = 0.0  # the fullest the queue was seen at an update call in this interval

    def admit(self) -> bool:
        """Whether monitoring takes this request (the request path asks, once per request)."""
        self.offered += 1
        if self.rate >= 1.0 or self._draw() < self.rate:
            self.admitted += 1
            return True
        self.sampled += 1
        self._unreported += 1
        return False

    def tally(self, offered: int, sampled: int) -> None:
        """``offered`` requests were asked about elsewhere (the native proxy core, at this
        :attr:`rate`), and ``sampled`` of them not admitted."""
        self.offered += offered
        self.admitted += offered - sampled
        self.sampled += sampled
        self._unreported += sampled

    def charge(self, cpu_seconds: float, records: int) -> None:
        """Monitoring spent ``cpu_seconds`` of CPU on ``records`` admitted records."""
        self._cpu += cpu_seconds
        self._records += records

    def flush(self) -> None:
        """Pass the requests not admitted so far to ``on_drop``."""
        if self._unreported:
            n, self._unreported = self._unreported, 0
            self._on_drop(SAMPLED, n)

    def update(self) -> float:
        """Report what was not admitted and, once per ``interval``, adapt the rate; returns it."""
        self.flush()
        # The consumer calls in both just before and just after taking records: the peak over
        # the interval, not the last reading, tells whether the queue backs up.
        fill = self._peak = max(self._peak, self._fill())
        now = self._clock()
        elapsed = now - self._last
        if elapsed < self.interval:
            return self.rate
        self._peak = 0.0
        offered, cpu, records = self.offered - self._offered_then, self._cpu, self._records
        self._last, self._offered_then, self._cpu, self._records = now, self.offered, 0.0, 0
        rate = self.rate
        target = min(1.0, rate * RISE)
        usage = cpu / elapsed  # cores
        demand = offered / elapsed  # requests per second asked about
        if usage > self.budget:
            target = min(target, rate * HEADROOM * self.budget / usage)
        elif rate < 1.0 and records and cpu and demand:
            # Sampling, within budget: rise no further than the measured cost of a record
            # says the budget allows (not to twice the budget and back at the next update).
            fits = HEADROOM * self.budget / (cpu / records * demand)
            target = min(target, max(rate, fits))
        if fill >= QUEUE_LOW:
            # A backlog: what the consumer took in is all it can take.
            taken = records / elapsed
            target = min(target, rate, HEADROOM * taken / demand if demand else rate)
        if fill >= QUEUE_HIGH:
            target = min(target, rate / 2)
        self.rate = max(self.floor, target)
        return self.rate
