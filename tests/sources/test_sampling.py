"""The admission sampler: a uniform share of requests, adapted to a CPU budget and the queue.

The control tests are deterministic: the clock, the CPU charged and the
random draws are given by the test, never read from the machine.  The last
test runs the real proxy over loopback with a budget too small for its traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import ClientSession, ClientTimeout, web
from scipy import stats as scipy_stats

from driftgauge.config import CloudEventsConfig
from driftgauge.sources.cloudevents import CloudEventsSource
from driftgauge.sources.sampling import HEADROOM, RISE, Sampler
from driftgauge.typing import Record
from tests.helpers import burn, scrape, series
from tests.kserve_logger import binary, kserve_event, send
from tests.proxy_upstream import running_proxy, until, upstream_server

pytestmark = pytest.mark.serial  # timing under load: run alone (scripts/test.sh)


@dataclass
class Rig:
    """A sampler on a hand-driven clock and queue, with its drops counted."""

    now: float = 0.0
    fill: float = 0.0
    dropped: Counter[str] = field(default_factory=Counter)
    sampler: Sampler = field(init=False)

    def __post_init__(self) -> None:
        self.sampler = self.make()

    def make(self, budget: float = 0.5, seed: int = 0, **options: float) -> Sampler:
        self.sampler = Sampler(
            budget,
            lambda: self.fill,
            self.count,
            clock=lambda: self.now,
            draw=random.Random(seed).random,
            **options,
        )
        return self.sampler

    def count(self, reason: str, n: int) -> None:
        self.dropped[reason] += n

    def second(self, offered: int, cpu_per_record: float, fill: float = 0.0) -> float:
        """One second of traffic: ``offered`` requests asked about, each admitted one processed
        at ``cpu_per_record`` CPU seconds; then the sampler updates.  Returns the new rate."""
        admitted = sum(self.sampler.admit() for _ in range(offered))
        self.sampler.charge(admitted * cpu_per_record, admitted)
        self.now += 1.0
        self.fill = fill
        return self.sampler.update()


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_within_budget_every_request_is_admitted(rig: Rig) -> None:
    """1,000 req/s at 0.2 ms each is 0.2 cores, under half a core: the rate stays 1, no drops."""
    for _ in range(5):
        assert rig.second(1_000, 0.0002) == 1.0
    assert (rig.sampler.offered, rig.sampler.admitted, rig.sampler.sampled) == (5_000, 5_000, 0)
    assert rig.dropped == {}


def test_over_budget_the_rate_falls_to_what_the_budget_allows(rig: Rig) -> None:
    """1,000 req/s at 2 ms each wants 2 cores; with half a core the rate falls to 0.9 × 0.25
    at once, and the CPU spent then stays within the budget."""
    rate = rig.second(1_000, 0.002)
    assert rate == pytest.approx(HEADROOM * 0.5 / 2.0)
    for _ in range(10):
        before = rig.sampler.admitted
        rig.second(1_000, 0.002)
        spent = (rig.sampler.admitted - before) * 0.002
        assert spent <= 0.5 * 1.15  # the budget, but for the binomial noise of the draws
    assert 0.15 < rig.sampler.rate <= 0.5


def test_the_rate_rises_at_most_twofold_per_interval_once_the_load_goes(rig: Rig) -> None:
    """After overload, light traffic lets the rate climb back: ×2 per interval, capped at 1."""
    rig.second(1_000, 0.01)  # 10 cores wanted: rate 0.045
    low = rig.sampler.rate
    rates = [rig.second(100, 0.0001) for _ in range(6)]
    assert rates[0] == pytest.approx(low * RISE)
    assert rates[1] == pytest.approx(low * RISE**2)
    assert rates[-1] == 1.0
    assert all(b <= a * RISE + 1e-12 for a, b in zip([low, *rates], rates, strict=False))


def test_a_backlog_cuts_the_rate_to_what_the_consumer_took_in(rig: Rig) -> None:
    """With the queue 20% full, the rate falls to 0.9 × taken / offered even under the CPU
    budget (the consumer is the bottleneck), and it does not rise while the backlog stays."""
    admitted = sum(rig.sampler.admit() for _ in range(1_000))
    rig.sampler.charge(0.01, 300)  # cheap records, but only 300 taken in this second
    rig.now, rig.fill = 1.0, 0.2
    assert admitted == 1_000
    assert rig.sampler.update() == pytest.approx(HEADROOM * 300 / 1_000)
    rate = rig.sampler.rate
    assert rig.second(1_000, 0.0, fill=0.2) <= rate  # nothing taken in: no rise either


def test_a_queue_past_half_full_halves_the_rate_each_interval(rig: Rig) -> None:
    """Past QUEUE_HIGH the rate at least halves per update, down to the floor."""
    rates = []
    for _ in range(15):
        admitted = sum(rig.sampler.admit() for _ in range(100))
        rig.sampler.charge(0.0, admitted)  # the consumer keeps up in records, not in bytes
        rig.now += 1.0
        rig.fill = 0.9
        rates.append(rig.sampler.update())
    assert rates[:3] == pytest.approx([0.5, 0.25, 0.125])
    assert rates[-1] == rig.sampler.floor == 0.001


def test_no_update_before_the_interval(rig: Rig) -> None:
    """update() within the interval changes nothing, however much CPU was charged."""
    rig.sampler.charge(100.0, 1)
    rig.now = 0.4
    assert rig.sampler.update() == 1.0
    rig.now = 0.5
    assert rig.sampler.update() < 0.01


def test_drops_are_reported_in_bulk_and_add_up(rig: Rig) -> None:
    """Each request asked about is admitted or counted ``sampled``, once, when update or
    flush runs: offered = admitted + dropped."""
    rig.make(budget=0.01)
    for _ in range(5):
        rig.second(2_000, 0.001)
    s = rig.sampler
    for _ in range(777):
        s.admit()
    assert s.offered == s.admitted + s.sampled == 10_777
    assert rig.dropped["sampled"] < s.sampled  # the last 777 not yet reported
    s.flush()
    assert rig.dropped == {"sampled": s.sampled}
    s.flush()
    assert rig.dropped == {"sampled": s.sampled}


def test_admission_is_a_bernoulli_draw_at_the_rate() -> None:
    """At a fixed rate, admissions of 100,000 requests are binomial(n, rate): the count is
    within a 1e-6 two-sided binomial interval, and runs show no bursts (a χ² test of the
    lengths of admitted and refused runs against the geometric law)."""
    rig = Rig()
    sampler = rig.make(seed=7)
    sampler.rate = 0.2
    n = 100_000
    decisions = [sampler.admit() for _ in range(n)]
    low, high = scipy_stats.binom(n, 0.2).interval(1 - 1e-6)
    assert low <= sum(decisions) <= high
    # Gaps between admitted requests: geometric with p = 0.2 when the draws are independent.
    gaps = Counter[int]()
    last = -1
    for index, admitted in enumerate(decisions):
        if admitted:
            gaps[min(index - last, 20)] += 1
            last = index
    total = sum(gaps.values())
    expected = [total * 0.8 ** (k - 1) * 0.2 for k in range(1, 20)]
    expected.append(total - sum(expected))
    observed = [gaps[k] for k in range(1, 21)]
    assert scipy_stats.chisquare(observed, expected).pvalue > 1e-6


def test_a_budget_must_be_positive() -> None:
    """A zero or negative budget is refused with a message quoting it."""
    with pytest.raises(ValueError, match="must be positive, got 0"):
        Sampler(0, lambda: 0.0, lambda reason, n: None)


# -- through the real proxy --------------------------------------------------------------------

PREDICT = "/v1/models/wine:predict"


def answer_for(body: bytes) -> bytes:
    """The test model's answer: one prediction, and the digest of exactly the body it got."""
    return json.dumps({"predictions": ["a"], "digest": hashlib.sha256(body).hexdigest()}).encode()


async def digest_model(request: web.Request) -> web.Response:
    return web.Response(body=answer_for(await request.read()), content_type="application/json")


def request_body(index: int) -> bytes:
    row = [12.0 + (index % 200) * 0.01, 2.0 + index * 1e-6, "east"]
    return json.dumps({"instances": [row]}).encode()


async def test_the_proxy_samples_under_a_tiny_cpu_budget_and_every_request_is_answered(
    tmp_path: Path, baseline: Path
) -> None:
    """With cpu_budget 0.0001 cores the proxy admits a share of the prediction requests: each of
    them still gets exactly the upstream's answer, the sampling rate gauge falls below 1, and
    requests sent = source_dropped{reason="sampled"} + rows monitored (nothing else dropped)."""
    sent = 0
    answers: dict[int, tuple[int, bytes]] = {}
    async with (
        upstream_server(routes=[web.post(PREDICT, digest_model)]) as upstream,
        running_proxy(tmp_path, baseline, upstream.port, cpu_budget=0.0001) as proxy,
        ClientSession(timeout=ClientTimeout(total=30)) as session,
    ):
        metrics_port = proxy.sidecar.config.metrics.listen[1]

        async def one(index: int) -> None:
            async with session.post(proxy.url + PREDICT, data=request_body(index)) as response:
                answers[index] = (response.status, await response.read())

        def rate_and_sampled() -> tuple[float, float]:
            samples = scrape(metrics_port)
            return (
                samples[series("driftgauge_sampling_rate")],
                samples[series("driftgauge_source_dropped_total", reason="sampled")],
            )

        rate, sampled = await asyncio.to_thread(rate_and_sampled)
        assert (rate, sampled) == (1.0, 0.0)
        # Rounds of concurrent requests until the sampler has cut the rate, then a few more.
        after = 0
        for _ in range(400):
            await asyncio.gather(*(one(sent + i) for i in range(40)))
            sent += 40
            rate, sampled = await asyncio.to_thread(rate_and_sampled)
            after += rate < 1.0 and sampled > 0
            if after == 5:
                break
        assert after == 5, f"no sampling after {sent} requests (rate {rate})"

        monitor, router = proxy.sidecar.monitor, proxy.sidecar.batcher

        def accounted() -> bool:
            return monitor.rows_total + router.dropped["sampled"] == sent

        await until(accounted, what="every request monitored or counted")
        samples = await asyncio.to_thread(scrape, metrics_port)
    assert sorted(answers) == list(range(sent))
    for index, (status, body) in answers.items():
        assert (status, body) == (200, answer_for(request_body(index))), index
    dropped_sampled = samples[series("driftgauge_source_dropped_total", reason="sampled")]
    rows = samples[series("driftgauge_rows_total", model="wine")]
    rate = samples[series("driftgauge_sampling_rate")]
    print(f"sent {sent}, sampled out {dropped_sampled:.0f}, monitored {rows:.0f}, rate {rate:.4f}")
    assert dropped_sampled + rows == sent
    assert dropped_sampled > 0 and rows > 0
    assert rate < 1.0
    assert router.dropped.keys() <= {"sampled"}
    assert not monitor.dropped
    assert not monitor.parse_errors


async def test_cloudevents_pairs_are_sampled_under_a_tiny_cpu_budget() -> None:
    """The CloudEvents source with a sampler over 0.0001 cores, each record costing 0.5 ms of
    CPU: every event is answered 200, and pairs handed over + pairs sampled out = pairs sent."""
    config = CloudEventsConfig(listen=("127.0.0.1", 0), cpu_budget=0.0001)
    records: list[Record] = []
    dropped: Counter[str] = Counter()

    def on_records(batch: list[Record]) -> None:
        burn(0.0005 * len(batch))
        records.extend(batch)

    def count(reason: str, n: int = 1) -> None:
        dropped[reason] += n

    sampler = Sampler(config.cpu_budget, lambda: source.backlog(), count)
    source = CloudEventsSource(config, on_records, count, on_dropped=count, sampler=sampler)
    port = await source.start()
    task = asyncio.create_task(source.run())
    url = f"http://127.0.0.1:{port}/"
    pairs = 0
    try:
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:

            async def pair(i: int) -> None:
                for kind, body in (
                    ("request", {"instances": [[i]]}),
                    ("response", {"predictions": [1]}),
                ):
                    assert (
                        await send(session, url, binary(kserve_event(kind, f"p{i}", body))) == 200
                    )

            after = 0
            for _ in range(400):
                await asyncio.gather(*(pair(pairs + i) for i in range(20)))
                pairs += 20
                after += sampler.rate < 1.0 and dropped["sampled"] > 0
                if after == 5:
                    break
            assert after == 5, f"no sampling after {pairs} pairs"
        await source.close()  # hands over what is paired and reports the last sampled out
        assert len(records) + dropped["sampled"] == pairs
        assert dropped.keys() == {"sampled"}
        assert 0 < len(records) < pairs
        assert sampler.rate < 1.0
    finally:
        await source.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("queue_size", "per_second", "streams"), [(4, 100, 1), (10, 400, 4), (10_000, 400, 4)]
)
async def test_a_modest_steady_rate_is_never_sampled_with_a_small_queue(
    tmp_path: Path, baseline: Path, queue_size: int, per_second: int, streams: int
) -> None:
    """Requests at a steady 100/s with queue_size 4 (one at a time), 400/s with 10 or 10,000
    (four at a time), a budget of 2 cores: every one of 2 s of requests is monitored, none
    sampled out or dropped, and the sampling rate gauge never leaves 1.  (A queue of a few
    records must not read as a consumer behind: the records it gathers to batch are its own.)
    Each stream keeps its own pace after a stall of this loop (the proxy's), as a client of a
    modest rate does, rather than sending what the stall held back at once: under two CPU
    hogs a one-record observe at times spans 120-200 ms (charged 64-99 ms of thread CPU, no
    garbage collection run), and the 12-20 requests then due, back to back, filled a queue
    of 4 within the consumer's next pause: a burst, which the queue is there to drop."""
    total = 2 * per_second
    lowest = 1.0
    async with (
        upstream_server(routes=[web.post(PREDICT, digest_model)]) as upstream,
        running_proxy(
            tmp_path, baseline, upstream.port, queue_size=queue_size, cpu_budget=2.0
        ) as proxy,
        ClientSession(timeout=ClientTimeout(total=10)) as session,
    ):
        started = time.perf_counter()

        async def stream(first: int) -> None:
            nonlocal lowest
            due = started + first / per_second
            for i in range(first, total, streams):
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due = max(due, time.perf_counter()) + streams / per_second
                async with session.post(proxy.url + PREDICT, data=request_body(i)) as response:
                    assert (response.status, await response.read()) == (
                        200,
                        answer_for(request_body(i)),
                    )
                lowest = min(lowest, proxy.source_sample("driftgauge_sampling_rate"))

        await asyncio.gather(*(stream(first) for first in range(streams)))
        monitor, router = proxy.sidecar.monitor, proxy.sidecar.batcher
        await until(lambda: monitor.rows_total + sum(router.dropped.values()) >= total)
        assert dict(router.dropped) == dict(monitor.dropped) == {}
        assert monitor.rows_total == total
        assert lowest == proxy.source_sample("driftgauge_sampling_rate") == 1.0
