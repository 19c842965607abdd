"""The example configs in examples/: one per protocol, each valid, each in the README."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.cli import main
from driftgauge.config import ProtocolName, load_config, protocol_names
from tests.helpers import write_csv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
PROTOCOLS: tuple[ProtocolName, ...] = get_args(ProtocolName)


def test_every_protocol_has_an_example() -> None:
    """examples/<protocol>.yaml exists for each protocol and configures that protocol."""
    for protocol in PROTOCOLS:
        config = load_config(ROOT / "examples" / f"{protocol}.yaml")
        assert protocol_names(config.protocol) == (protocol,)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_passes_check_with_a_baseline_of_its_columns(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`driftgauge check` accepts the example against a baseline built from its columns by name."""
    path = tmp_path / example.name
    shutil.copy(example, path)
    shutil.copy(ROOT / "examples" / "feedback.token", tmp_path / "feedback.token")
    config = load_config(path)
    rng = np.random.default_rng(7)
    n = 500
    columns: dict[str, list[object]] = {}
    for spec in config.columns:
        if spec.type == "numeric":
            columns[spec.name] = rng.normal(10.0, 2.0, n).round(3).tolist()
        else:
            columns[spec.name] = rng.choice(["north", "south", "class_1"], n).tolist()
    baseline = build_baseline(config, [write_csv(tmp_path / "train.csv", columns)])
    save_baseline(baseline, config.baseline)
    assert main(["check", "-c", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {path}")


def _section(readme: str, protocol: str) -> str:
    start = re.search(rf"^### {re.escape(protocol)}(?: .*)?$", readme, re.MULTILINE)
    assert start is not None, protocol
    end = re.search(r"^##", readme[start.end() :], re.MULTILINE)
    return readme[start.end() : start.end() + (end.start() if end else len(readme))]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_readme_section_ends_with_the_example_config(protocol: str) -> None:
    """Each protocol's README section ends with its example config, verbatim."""
    section = _section((ROOT / "README.md").read_text(encoding="utf-8"), protocol)
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert blocks, protocol
    assert blocks[-1] == (ROOT / "examples" / f"{protocol}.yaml").read_text(encoding="utf-8")
    assert section.rstrip().endswith("```")


@pytest.mark.parametrize(
    ("heading", "example"),
    [
        ("The proxy", "wine-proxy.yaml"),
        ("The tail source", "wine-tail.yaml"),
        ("CloudEvents source", "wine-cloudevents.yaml"),
    ],
)
def test_readme_section_of_each_source_holds_its_example_config(heading: str, example: str) -> None:
    """The proxy, tail and CloudEvents sections each show their complete example config, verbatim."""
    section = _section((ROOT / "README.md").read_text(encoding="utf-8"), heading)
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert (ROOT / "examples" / example).read_text(encoding="utf-8") in blocks
