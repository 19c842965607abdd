"""Fleet-wide PSI from Prometheus' recording rules equals the PSI of one sidecar that saw everything.

Setup: three ``driftgauge serve`` processes in tail mode share one config
and one baseline and differ only in their ports, request log and ``model``.
A and B each get alternate requests (as a round-robin load balancer would
split them) of one drifted stream; C gets all of it.  The fleet recording
rule sums ``driftgauge_bin_observations_total`` over every series with the
same ``model`` label, so C is labelled ``model: wine-all`` to stay out of
A and B's fleet ``wine``; nothing else about it differs.  One real
Prometheus scrapes all three every second and evaluates the project's
``driftgauge-fleet`` group, copied with the rate range ``[5m]`` shortened
to ``[30s]`` and the group interval to 1s, expressions otherwise unchanged.

The stream is fed once Prometheus has scraped the zero counters for 22 s
(the fleet counts a sidecar scraped a range ago), and compared a few seconds later: then C's 1m window and
the 30s rate range both hold exactly the rows fed (the test checks that the
range still reaches back to the zero counters), and what is compared is
the rules' arithmetic, not two windows that hold different rows.  The
figures are also checked against PSI computed with numpy from the raw
values and the training data, in the baseline's bins.

Tolerance: fleet vs C within 2% relative for PSI ≥ 0.1 (within 0.001 for
the undrifted fields).  With the same rows in both, what is left is
``rate()``'s extrapolation to the ends of the range: it scales A's and B's
counts by factors that differ by up to about one scrape interval over the
range (1s/30s), which weights the two halves 50 ± 1%.  The halves' bin
shares differ only by sampling noise (about 0.7 points at 4,000 rows), so a
bin's fleet share moves by about 1e-4 and PSI by at most about 1e-3, 0.3%
of the drifted fields' PSI.  Both sides floor shares at 1e-4, so smoothing
adds nothing.  C against numpy is exact up to float rounding.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from driftgauge.baseline import build_baseline, load_baseline, save_baseline
from driftgauge.config import load_config
from driftgauge.sketches.summary import NumericBinning
from tests.e2e_support import (
    RULES,
    masked,
    rules_by_name,
    sidecars,
    wait_all,
    wait_ready,
    write_baseline,
    write_config,
    write_test_rules,
)
from tests.helpers import base_config, write_csv
from tests.servers import Prometheus, prometheus, wait_for

pytestmark = pytest.mark.integration


ROWS = 8_000
ROWS_PER_REQUEST = 50
RELATIVE_TOLERANCE = 0.02
FLOOR = 1e-4
REGIONS = ["north", "south", "east"]


def _psi(live: np.ndarray[Any, Any], base: np.ndarray[Any, Any]) -> float:
    p = np.maximum(live / live.sum(), FLOOR)
    q = np.maximum(base / base.sum(), FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


def _exact_psi(
    name: str, fed: dict[str, list[Any]], train: dict[str, list[Any]], baseline: Path
) -> float:
    """PSI of the fed values against the training values, in the baseline's bins, by numpy."""
    binning = load_baseline(baseline).fields[name].summary.binning
    if isinstance(binning, NumericBinning):
        edges = np.asarray(binning.edges)
        size = len(edges) + 1

        def count(values: list[Any]) -> np.ndarray[Any, Any]:
            index = np.searchsorted(edges, np.asarray(values, dtype=float), side="right")
            return np.bincount(index, minlength=size)

        return _psi(count(fed[name]), count(train[name]))
    labels = list(binning.categories)  # every training category is a bin; none fed is new
    assert set(fed[name]) | set(train[name]) <= set(labels)

    def tally(values: list[Any]) -> np.ndarray[Any, Any]:
        return np.array([values.count(label) for label in labels], dtype=float)

    return _psi(tally(fed[name]), tally(train[name]))


def _drifted_stream(n: int, seed: int = 5) -> dict[str, list[Any]]:
    """``training_rows``' population with alcohol moved by 0.6 sd and a different region mix."""
    rng = np.random.default_rng(seed)
    return {
        "alcohol": (rng.normal(13.0, 0.8, n) + 0.48).round(4).tolist(),
        "ash": rng.lognormal(0.8, 0.2, n).round(4).tolist(),
        "region": rng.choice(REGIONS, n, p=[0.25, 0.3, 0.45]).tolist(),
        "class": rng.choice(["a", "b"], n).tolist(),
    }


def _lines(columns: dict[str, list[Any]]) -> list[str]:
    """One KServe v1 request/response log line per ``ROWS_PER_REQUEST`` rows."""
    lines = []
    size = len(columns["class"])
    for start in range(0, size, ROWS_PER_REQUEST):
        rows = range(start, min(size, start + ROWS_PER_REQUEST))
        request = {
            "instances": [[columns[f][i] for f in ("alcohol", "ash", "region")] for i in rows]
        }
        response = {"predictions": [columns["class"][i] for i in rows]}
        lines.append(json.dumps({"request": request, "response": response}) + "\n")
    return lines


def _by_feature(prom: Prometheus, expr: str) -> dict[str, float]:
    return {s["metric"]["feature"]: float(s["value"][1]) for s in prom.query(expr)}


@pytest.mark.timeout(120)
def _scraped_before_the_feed(prom: Prometheus, sidecars: int) -> None:
    """Wait until each sidecar's zero counters have been scraped for 22 s: the fleet counts a
    sidecar once it was scraped a range (30s) ago (:func:`_fleet_of`), and rate() needs zero
    counters in the range, so the comparison, a few seconds after the feed and no earlier
    than 30 s after the first scrape, still finds them."""
    wait_for(
        lambda: len(prom.query("count_over_time(driftgauge_rows_total[1m]) >= 22")) == sidecars,
        timeout=60,
        what="22 s of scrapes of each sidecar before the feed",
    )


def _fleet_of(prom: Prometheus, fields: int) -> bool:
    """Whether Prometheus holds the fleet PSI of ``fields`` fields."""
    return len(prom.query('driftgauge:fleet_psi:rate5m{model="wine"}')) == fields


def test_fleet_psi_of_two_halves_matches_one_sidecar_fed_everything(tmp_path: Path) -> None:
    """driftgauge:fleet_psi over sidecars fed alternate halves equals the PSI of a sidecar fed all, and numpy's."""
    rules = tmp_path / "rules.yml"
    document = write_test_rules(
        rules,
        windows={},
        range_="30s",
        for_="2s",
        interval="1s",
        groups=("driftgauge-fleet",),
    )
    original = rules_by_name(yaml.safe_load(RULES.read_text()))
    for name, rule in rules_by_name(document).items():
        assert masked(rule["expr"]) == masked(original[name]["expr"]), name

    configs, logs = {}, {}
    for name, model in (("a", "wine"), ("b", "wine"), ("c", "wine-all")):
        logs[name] = tmp_path / f"{name}.jsonl"
        logs[name].touch()
        raw = base_config(
            tmp_path,
            model=model,
            source={"tail": {"path": str(logs[name]), "poll_interval": 0.05}},
            windows=["1m"],
            window_slices=30,
            min_observations=100,
        )
        configs[name] = write_config(tmp_path / f"{name}.yaml", raw)
    train = write_baseline(configs["a"], 10_000)
    fed = _drifted_stream(ROWS)
    lines = _lines(fed)

    with (
        sidecars(*((configs[n], tmp_path / f"{n}.log") for n in "abc"), ready=False) as abc,
        prometheus(tmp_path / "prometheus", [s.target for s in abc], [rules]) as prom,
    ):
        wait_ready(abc)
        a, b, _ = abc
        _scraped_before_the_feed(prom, 3)
        handles = {name: path.open("a", encoding="utf-8") for name, path in logs.items()}
        try:
            for index, line in enumerate(lines):  # about 4 s of traffic
                handles["a" if index % 2 == 0 else "b"].write(line)
                handles["c"].write(line)
                if index % 8 == 7:
                    for handle in handles.values():
                        handle.flush()
                    time.sleep(0.2)
        finally:
            for handle in handles.values():
                handle.close()
        fed_at = time.time()

        def rows(model: str, expected: int) -> bool:
            result = prom.query(f'sum(driftgauge_rows_total{{model="{model}"}})')
            return bool(result) and float(result[0]["value"][1]) == expected

        def recomputed(model: str) -> bool:
            result = prom.query(
                f'min(driftgauge_stats_computed_timestamp_seconds{{model="{model}"}})'
            )
            return bool(result) and float(result[0]["value"][1]) > fed_at

        wait_all(
            [
                lambda: rows("wine", ROWS),
                lambda: rows("wine-all", ROWS),
                lambda: recomputed("wine"),
                lambda: recomputed("wine-all"),
                lambda: _fleet_of(prom, len(fed)),
            ],
            timeout=20,
            what="every row scraped and recomputed, and the fleet's PSI",
        )
        time.sleep(2.5)  # two more rule evaluations on the final counts
        fleet = _by_feature(prom, 'driftgauge:fleet_psi:rate5m{model="wine"}')
        single = _by_feature(prom, 'driftgauge_psi{model="wine-all", window="1m"}')
        halves = {
            name: _by_feature(prom, f'driftgauge_psi{{instance="{s.target}", window="1m"}}')
            for name, s in (("a", a), ("b", b))
        }
        # The rule's 30s range still reached back to every sidecar's zero counters.
        zeros = prom.query("min_over_time(driftgauge_rows_total[30s]) == 0")
        assert len(zeros) == 3, "the comparison ran too late for the 30s rate range"

    baseline = load_config(configs["a"]).baseline
    exact = {name: _exact_psi(name, fed, train, baseline) for name in fed}
    report = {
        name: {"fleet": fleet[name], "single": single[name], "numpy": exact[name]} for name in exact
    }
    assert set(fleet) == set(single) == set(exact), report
    assert exact["alcohol"] > 0.1 and exact["region"] > 0.1, report
    assert exact["ash"] < 0.01 and exact["class"] < 0.01, report
    for name in exact:
        assert single[name] == pytest.approx(exact[name], rel=1e-9, abs=1e-12), report
        if exact[name] >= 0.1:
            assert fleet[name] == pytest.approx(single[name], rel=RELATIVE_TOLERANCE), report
        else:  # undrifted: both read sampling noise; absolute agreement well under the 0.1 band
            assert fleet[name] == pytest.approx(single[name], abs=1e-3), report
    # Each half alone reads the same drift, but noisier: the fleet is not just one of them.
    for name in ("alcohol", "region"):
        assert halves["a"][name] != halves["b"][name]


@pytest.mark.timeout(120)
def test_fleet_psi_keeps_replicas_of_different_baselines_apart(tmp_path: Path) -> None:
    """Replicas of one model on two baselines get one fleet PSI per baseline_id, each numpy's."""
    rules = tmp_path / "rules.yml"
    write_test_rules(
        rules, windows={}, range_="30s", for_="2s", interval="1s", groups=("driftgauge-fleet",)
    )
    configs, logs, trains = {}, {}, {}
    # A keeps the old training set; B was rebuilt on data like the live stream (a roll-out).
    for name in "ab":
        logs[name] = tmp_path / f"{name}.jsonl"
        logs[name].touch()
        raw = base_config(
            tmp_path,
            source={"tail": {"path": str(logs[name]), "poll_interval": 0.05}},
            baseline=str(tmp_path / f"{name}.dgb"),
            windows=["1m"],
            window_slices=30,
            min_observations=100,
        )
        configs[name] = write_config(tmp_path / f"{name}.yaml", raw)
    trains["a"] = write_baseline(configs["a"], 10_000)
    retrained = _drifted_stream(10_000, seed=9)
    data = write_csv(tmp_path / "retrained.csv", retrained)
    b_config = load_config(configs["b"])
    save_baseline(build_baseline(b_config, [data]), b_config.baseline)
    trains["b"] = retrained
    fed = _drifted_stream(ROWS)
    halves = {"a": {f: v[0::2] for f, v in fed.items()}, "b": {f: v[1::2] for f, v in fed.items()}}

    with (
        sidecars(*((configs[n], tmp_path / f"{n}.log") for n in "ab"), ready=False) as ab,
        prometheus(tmp_path / "prometheus", [s.target for s in ab], [rules]) as prom,
    ):
        wait_ready(ab)
        _scraped_before_the_feed(prom, 2)
        for name in "ab":
            with logs[name].open("a", encoding="utf-8") as handle:
                handle.writelines(_lines(halves[name]))
        wait_all(
            [
                lambda: len(prom.query("driftgauge_rows_total == 4000")) == 2,
                lambda: _fleet_of(prom, 2 * len(fed)),  # one fleet a baseline
            ],
            timeout=20,
            what="every row scraped, and the fleets' PSI",
        )
        time.sleep(2.5)  # two more rule evaluations on the final counts
        ids = {
            s["metric"]["instance"]: s["metric"]["baseline_id"]
            for s in prom.query('driftgauge_baseline_info{model="wine"}')
        }
        fleet = {
            (s["metric"].get("baseline_id"), s["metric"]["feature"]): float(s["value"][1])
            for s in prom.query('driftgauge:fleet_psi:rate5m{model="wine"}')
        }
    exact = {
        (ids[s.target], f): _exact_psi(f, halves[n], trains[n], load_config(configs[n]).baseline)
        for n, s in zip("ab", ab, strict=True)
        for f in fed
    }
    assert exact[(ids[ab[0].target], "alcohol")] > 0.1 > exact[(ids[ab[1].target], "alcohol")]
    assert set(fleet) == set(exact), (fleet, exact)
    for key, value in exact.items():
        assert fleet[key] == pytest.approx(value, rel=RELATIVE_TOLERANCE, abs=1e-3), (fleet, exact)
