"""What the generated rules cost a real Prometheus to evaluate: these rules against a reference's.

``bench.rules`` times writing the rules; this reads how long Prometheus takes to
evaluate them, group by group and rule by rule, with the reference's rules loaded
in the same Prometheus beside them, so both see the same series, load and cache.

Setup (all on 127.0.0.1, free ports): a ``driftgauge serve`` of the config under
traffic, a Prometheus scraping it every 15s, and two rule files in its
``rule_files``: this checkout's ``driftgauge rules`` output, and the reference
checkout's renamed so that its recording rules, alerts and groups do not collide
with these::

    PYTHONPATH=src .venv/bin/python -m driftgauge rules -c wide.yaml -o new/
    PYTHONPATH=../main/src .venv/bin/python -m driftgauge rules -c wide.yaml -o old/
    .venv/bin/python -m bench.rules_eval rename old/driftgauge.rules.yml old.rules.yml
    prometheus --config.file=prom.yml ...     # rule_files: [new/driftgauge.rules.yml, old.rules.yml]
    .venv/bin/python -m bench.rules_eval read http://127.0.0.1:PORT --polls 20
    .venv/bin/python -m bench.rules_eval query http://127.0.0.1:PORT new/driftgauge.rules.yml old.rules.yml

``read`` polls ``/api/v1/rules`` every 15 s, keeps each group's and rule's
``evaluationTime`` once per evaluation (``lastEvaluation``), and prints their
means for both sets and the ratio (these over the reference's), rules matched by
name (and ``z``): a rule only one side has shows on its own. ``query`` runs each
rule's expression of both files through ``/api/v1/query`` (``stats=all``), the
files' rules taking turns running first, and prints each one's best
``execTotalTime`` of ``--repeat`` runs. On a loaded machine both move by 2-3x
from one rule to its unchanged twin: read the rules that changed, and the groups.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

import yaml

from bench._common import print_table

# What the reference's names take, so that both sets can be loaded at once.
PREFIX = "old"


def rename(source: Path, target: Path) -> None:
    """``source``'s rules with every recording rule, alert and group renamed (``PREFIX``)."""
    text = source.read_text(encoding="utf-8")
    text = text.replace("driftgauge:", f"driftgauge{PREFIX}:")
    text = text.replace("alert: Driftgauge", f"alert: {PREFIX.title()}Driftgauge")
    text = text.replace("name: driftgauge-", f"name: {PREFIX}-driftgauge-")
    target.write_text(text, encoding="utf-8")


def _key(group: str, rule: str) -> tuple[bool, str, str]:
    """(the reference's, group, rule) with the reference's renaming undone."""
    old = group.startswith(f"{PREFIX}-")
    group = group.removeprefix(f"{PREFIX}-")
    rule = rule.replace(f"driftgauge{PREFIX}:", "driftgauge:").removeprefix(PREFIX.title())
    return old, group, rule


def read(url: str, polls: int, every: float) -> dict[tuple[bool, str, str], list[float]]:
    """Each group's ('' rule) and rule's evaluation times, once per evaluation."""
    times: dict[tuple[bool, str, str], list[float]] = defaultdict(list)
    last: dict[tuple[bool, str, str], str] = {}
    for poll in range(polls):
        with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=30) as response:
            groups = json.load(response)["data"]["groups"]
        for group in groups:
            entries = [("", group)] + [
                (rule["name"] + " " + rule.get("labels", {}).get("z", ""), rule)
                for rule in group["rules"]
            ]
            for name, entry in entries:
                key = _key(group["name"], name.strip())
                if last.get(key) != entry["lastEvaluation"]:
                    last[key] = entry["lastEvaluation"]
                    times[key].append(entry["evaluationTime"])
        if poll < polls - 1:
            time.sleep(every)
    return times


def report(times: dict[tuple[bool, str, str], list[float]]) -> None:
    def mean(key: tuple[bool, str, str]) -> float | None:
        values = times.get(key)
        return sum(values) / len(values) if values else None

    rows = []
    names = sorted({(group, rule) for _, group, rule in times})
    for group, rule in names:
        new, old = mean((False, group, rule)), mean((True, group, rule))
        rows.append(
            [
                group,
                rule or "(group)",
                "-" if new is None else f"{1000 * new:.1f}",
                "-" if old is None else f"{1000 * old:.1f}",
                f"{new / old:.2f}" if new is not None and old else "-",
                len(times.get((False, group, rule), [])),
            ]
        )
    totals = [
        sum(mean((old, group, rule)) or 0 for group, rule in names if rule) for old in (False, True)
    ]
    rows.append(
        [
            "all rules",
            "",
            f"{1000 * totals[0]:.1f}",
            f"{1000 * totals[1]:.1f}",
            f"{totals[0] / totals[1]:.2f}",
            "",
        ]
    )
    print_table(
        "time (ms; a mean of evaluations, or a query's best): these rules against the reference's",
        ["group", "rule", "these", "reference", "ratio", "evaluations"],
        rows,
    )


def _rules(path: Path) -> list[tuple[str, str, str]]:
    """(group, rule name and z, expression) of each rule of a rules file."""
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return [
        (
            group["name"],
            (rule.get("record") or rule["alert"]) + " " + rule.get("labels", {}).get("z", ""),
            rule["expr"],
        )
        for group in groups
        for rule in group["rules"]
    ]


def query(url: str, files: list[Path], repeat: int) -> dict[tuple[bool, str, str], list[float]]:
    """Each rule's best query time of ``repeat``, the files' rules taking turns."""
    times: dict[tuple[bool, str, str], list[float]] = defaultdict(list)
    rules = [rule for path in files for rule in _rules(path)]
    for turn in range(repeat):
        for group, name, expr in rules if turn % 2 == 0 else rules[::-1]:
            arguments = urllib.parse.urlencode({"query": expr, "stats": "all"})
            with urllib.request.urlopen(f"{url}/api/v1/query?{arguments}", timeout=120) as response:
                timings = json.load(response)["data"]["stats"]["timings"]
            times[_key(group, name.strip())].append(timings["execTotalTime"])
    return {key: [min(values)] for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    renaming = commands.add_parser("rename", help="rename a reference's rules file")
    renaming.add_argument("source", type=Path)
    renaming.add_argument("target", type=Path)
    reading = commands.add_parser("read", help="read both sets' evaluation times")
    reading.add_argument("url", help="the Prometheus, e.g. http://127.0.0.1:9090")
    reading.add_argument("--polls", type=int, default=20)
    reading.add_argument("--every", type=float, default=15.0, help="seconds between polls")
    querying = commands.add_parser("query", help="time each rule's expression of both files")
    querying.add_argument("url", help="the Prometheus, e.g. http://127.0.0.1:9090")
    querying.add_argument(
        "files", type=Path, nargs="+", help="these rules, the renamed reference's"
    )
    querying.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.command == "rename":
        rename(args.source, args.target)
    elif args.command == "read":
        report(read(args.url.rstrip("/"), args.polls, args.every))
    else:
        report(query(args.url.rstrip("/"), args.files, args.repeat))


if __name__ == "__main__":
    main()
