"""Config validation: every problem reported with its key path, unknown keys rejected."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from driftgauge.config import (
    DEFAULT_METRICS_PORT,
    CloudEventsConfig,
    ProxyConfig,
    TailConfig,
    config_from_mapping,
    format_duration,
    load_config,
    parse_duration,
    parse_listen,
)
from driftgauge.exceptions import ConfigError, DriftgaugeError
from tests.helpers import base_config


def _error(tmp_path: Path, raw: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base=tmp_path)
    return str(caught.value)


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    """A minimal config gets working defaults and resolves relative paths."""
    path = tmp_path / "c.yaml"
    raw = base_config(tmp_path, baseline="b.dgb")
    del raw["metrics"]
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.baseline == tmp_path / "b.dgb"
    assert config.metrics.listen == ("0.0.0.0", DEFAULT_METRICS_PORT)
    assert [w.label for w in config.windows] == ["5m", "1h"]
    assert config.windows[0].slice_seconds == 30.0
    assert isinstance(config.source, TailConfig)
    assert [f.role for f in config.fields] == ["input", "input", "input", "prediction"]


def test_proxy_source_parses_listen_and_upstream(tmp_path: Path) -> None:
    """source.proxy takes host:port and an http URL."""
    raw = base_config(
        tmp_path,
        source={"proxy": {"listen": "127.0.0.1:18080", "upstream": "http://127.0.0.1:9000/"}},
    )
    config = config_from_mapping(raw, base=tmp_path)
    assert isinstance(config.source, ProxyConfig)
    assert config.source.listen == ("127.0.0.1", 18080)
    assert config.source.upstream == "http://127.0.0.1:9000"


def test_cpu_budget_defaults_to_half_a_core_and_takes_a_number_of_cores(tmp_path: Path) -> None:
    """source.proxy.cpu_budget and source.cloudevents.cpu_budget: 0.5 by default, any cores."""
    proxy = config_from_mapping(base_config(tmp_path, source={"proxy": {}}), base=tmp_path)
    assert isinstance(proxy.source, ProxyConfig)
    assert proxy.source.cpu_budget == 0.5
    raw = base_config(tmp_path, source={"cloudevents": {"cpu_budget": 2}})
    cloudevents = config_from_mapping(raw, base=tmp_path).source
    assert isinstance(cloudevents, CloudEventsConfig)
    assert cloudevents.cpu_budget == 2.0
    raw = base_config(tmp_path, source={"proxy": {"cpu_budget": 0.05}})
    assert config_from_mapping(raw, base=tmp_path).source == ProxyConfig(cpu_budget=0.05)


@pytest.mark.parametrize(
    ("source", "value"),
    [("proxy", 0), ("proxy", -1), ("proxy", "half"), ("proxy", True), ("cloudevents", 2000)],
)
def test_a_bad_cpu_budget_is_an_error_naming_the_key(
    tmp_path: Path, source: str, value: Any
) -> None:
    """A budget that is not a number of cores above 0 (up to 1024) names its key and value."""
    raw = base_config(tmp_path, source={source: {"cpu_budget": value}})
    message = _error(tmp_path, raw)
    assert f"source.{source}.cpu_budget: {value!r} is not a number of cores above 0" in message


def test_unknown_keys_are_errors_naming_the_path(tmp_path: Path) -> None:
    """A typo at any level is reported with its key path."""
    raw = base_config(tmp_path, windoes=["5m"])
    raw["features"][0]["typ"] = "numeric"
    message = _error(tmp_path, raw)
    assert "windoes: unknown key" in message
    assert "features[0].typ: unknown key" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Several bad values give one message listing each key."""
    raw = base_config(tmp_path, protocol="grpc", windows=["5x"], min_observations=0)
    raw["features"][1]["type"] = "numerc"
    raw["metrics"]["listen"] = "127.0.0.1:99999"
    message = _error(tmp_path, raw)
    for key in (
        "protocol:",
        "windows[0]:",
        "min_observations:",
        "features[1].type:",
        "metrics.listen:",
    ):
        assert key in message
    assert "\n" not in message


def test_duplicate_names_and_missing_keys(tmp_path: Path) -> None:
    """A name used twice and a missing required key are both named."""
    raw = base_config(tmp_path, predictions=[{"name": "alcohol", "type": "numeric"}])
    del raw["model"]
    message = _error(tmp_path, raw)
    assert "predictions[0].name: 'alcohol' is already the name of features[0]" in message
    assert "model: missing" in message


@pytest.mark.parametrize(
    ("features", "said"),
    [
        ("alcohol", "features: expected a list of {name, type} entries, got 'alcohol'"),
        ([5], "features[0]: expected a mapping"),
        ([], "features: expected at least one feature"),
        (None, "features: expected at least one feature"),
    ],
)
def test_features_that_are_no_list_of_fields_are_one_problem(
    tmp_path: Path, features: Any, said: str
) -> None:
    """'features: alcohol' was 'features: expected a list of {name, type} entries, got
    'alcohol'; features: expected at least one feature', the key named twice for one
    problem; an empty or null list is the second alone."""
    message = _error(tmp_path, base_config(tmp_path, features=features))
    assert message.startswith(said) and message.count("features") == 1, message


WINE_NAMES = ("od280/od315_of_diluted_wines", "sepal length (cm)", 'a"b\\c', "naïve", "{x}=y,z")


def test_any_utf8_name_without_control_characters_is_valid(tmp_path: Path) -> None:
    """Feature, prediction and model names are label values: any UTF-8 text is kept exactly."""
    features = [{"name": name, "type": "numeric"} for name in WINE_NAMES]
    raw = base_config(
        tmp_path,
        model="wine (v2) / ünïcode",
        features=features,
        predictions=[{"name": "class ✓", "type": "categorical"}],
    )
    config = config_from_mapping(raw, base=tmp_path)
    assert [f.name for f in config.features] == list(WINE_NAMES)
    assert config.predictions[0].name == "class ✓"
    assert config.model == "wine (v2) / ünïcode"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("a\tb", "U+0009"),
        ("line\nbreak", "U+000A"),
        ("nul\x00", "U+0000"),
        ("del\x7f", "U+007F"),
        ("c1\x85", "U+0085"),
        ("ls\u2028", "U+2028"),
        ("lone \ud800", "U+D800"),
    ],
)
def test_names_with_control_characters_are_refused(tmp_path: Path, name: str, code: str) -> None:
    """A control character or line separator in a name is an error naming the key and code point."""
    raw = base_config(tmp_path, model=name)
    raw["features"][1]["name"] = name
    message = _error(tmp_path, raw)
    assert "features[1].name:" in message
    assert "model:" in message
    assert code in message
    assert "\n" not in message and "\u2028" not in message  # one line: names quoted by repr


def test_empty_or_null_names_are_missing(tmp_path: Path) -> None:
    """An empty, null or absent name is an error; so is a null model."""
    raw = base_config(tmp_path, model=None)
    raw["features"][0]["name"] = ""
    raw["features"][1]["name"] = None
    del raw["features"][2]["name"]
    message = _error(tmp_path, raw)
    assert "features[0].name: '' is not a non-empty string" in message
    assert "features[1].name: missing" in message
    assert "features[2].name: missing" in message
    assert "model: missing" in message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_config_file_says_it_is_empty(tmp_path: Path, text: str) -> None:
    """A config file with no document (a new file, only comments) said 'expected a mapping of
    keys at the top, got NoneType'; it now says the file holds no settings."""
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: the file holds no settings (it is empty or only comments)"


def test_a_name_yaml_reads_as_another_type_says_to_quote_it(tmp_path: Path) -> None:
    """Unquoted, a column named yes, 1.50 or 2024-01-01 is a boolean, number or date to YAML:
    the error says so and to quote it, instead of 'True is not a non-empty string'."""
    path = tmp_path / "c.yaml"
    raw = base_config(tmp_path)
    names = "".join(f"  - {{name: {n}, type: numeric}}\n" for n in ("yes", "1.50", "2024-01-01"))
    text = yaml.safe_dump({k: v for k, v in raw.items() if k != "features"})
    path.write_text(text + "features:\n" + names, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "features[0].name: True is not a non-empty string: YAML read a boolean" in message
    assert "features[1].name: 1.5 is not a non-empty string: YAML read a number" in message
    assert "features[2].name: 2024-01-01 is not a non-empty string: YAML read a date" in message
    assert message.count("put it in quotes") == 3


def test_a_name_used_twice_within_one_list_names_both_positions(tmp_path: Path) -> None:
    """Two features of the same name are one error naming both."""
    raw = base_config(tmp_path)
    raw["features"][2]["name"] = "alcohol"
    assert "features[2].name: 'alcohol' is already the name of features[0]" in _error(tmp_path, raw)


def test_exactly_one_source(tmp_path: Path) -> None:
    """Two sources, or none, is an error."""
    message = "exactly one of source.proxy, source.tail or source.cloudevents"
    both = base_config(tmp_path, source={"proxy": {}, "tail": {"path": "x"}})
    assert message in _error(tmp_path, both)
    assert message in _error(
        tmp_path, base_config(tmp_path, source={"proxy": {}, "cloudevents": {}})
    )
    assert message in _error(tmp_path, base_config(tmp_path, source={}))


def test_jsonpath_needs_paths(tmp_path: Path) -> None:
    """The jsonpath protocol requires a path on every field."""
    message = _error(tmp_path, base_config(tmp_path, protocol="jsonpath"))
    assert "features[0].path: missing" in message


def test_invalid_jsonpaths_are_config_errors(tmp_path: Path) -> None:
    """A path that does not compile is refused at load time, with its key (fields and id_path)."""
    raw = base_config(
        tmp_path,
        protocol="jsonpath",
        features=[{"name": "x", "type": "numeric", "path": "$.xs[*"}],
        predictions=[{"name": "y", "type": "categorical", "path": "$.ys[*]"}],
        feedback={"id_path": "ids[*]"},
    )
    message = _error(tmp_path, raw)
    assert "features[0].path: invalid JSONPath '$.xs[*'" in message
    assert "feedback.id_path: invalid JSONPath 'ids[*]'" in message
    assert "predictions[0]" not in message


def test_tls_files_that_are_not_pem_are_config_errors(tmp_path: Path) -> None:
    """A certificate, key or CA file that does not load is refused at load time."""
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    raw = base_config(
        tmp_path,
        source={"proxy": {"ca_file": "junk.pem"}},
    )
    raw["metrics"]["tls"] = {"cert_file": "junk.pem", "key_file": "junk.pem"}
    message = _error(tmp_path, raw)
    assert "source.proxy.ca_file: cannot load" in message
    assert "metrics.tls: cannot load cert_file and key_file" in message


def test_bad_yaml_and_unreadable_file(tmp_path: Path) -> None:
    """Invalid YAML names the line; a missing file names the path; both are DriftgaugeErrors."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line \d+"):
        load_config(bad)
    with pytest.raises(DriftgaugeError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    """A list at the top is a clear error."""
    assert "expected a mapping" in _error(tmp_path, ["model"])


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    """Python object tags are refused by the safe loader."""
    path = tmp_path / "evil.yaml"
    path.write_text("model: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


UNITS = {"y": 31_536_000, "w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1, "ms": 0.001}


@given(st.dictionaries(st.sampled_from(list(UNITS)), st.integers(1, 10_000), min_size=1))
def test_durations_read_as_prometheus_reads_them(amounts: dict[str, int]) -> None:
    """Units from y to ms, each once and in order, add up; the formatted label reads back the same."""
    text = "".join(f"{amounts[unit]}{unit}" for unit in UNITS if unit in amounts)
    seconds = parse_duration(text)
    assert seconds == pytest.approx(sum(amount * UNITS[unit] for unit, amount in amounts.items()))
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "seconds", "label"),
    [
        ("1w", 604_800, "7d"),
        ("1y", 31_536_000, "365d"),
        ("1h30m", 5_400, "90m"),
        ("1s500ms", 1.5, "1500ms"),
    ],
)
def test_week_year_and_compound_durations(text: str, seconds: float, label: str) -> None:
    assert (parse_duration(text), format_duration(parse_duration(text))) == (seconds, label)


@pytest.mark.parametrize(
    "text", ["", "5", "5 m", "-5m", "0s", "0h0m", "m5", "5m1h", "1h1h", "1.5h", "1h 30m", "1M"]
)
def test_bad_durations_are_rejected(text: str) -> None:
    """Anything but positive counts of units, each once and largest first, is refused."""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "0h0m", "0ms"])
def test_a_zero_duration_is_refused_as_zero(text: str) -> None:
    """A zero timeout or window is a duration of the right form: the error says it is zero,
    instead of that it is not a duration like 30s."""
    with pytest.raises(ValueError, match=rf"^'{text}' is zero: not a duration above 0, like 30s"):
        parse_duration(text)


def test_parse_listen_forms() -> None:
    """host:port, :port, [::1]:port and a bare host with the default port."""
    assert parse_listen("127.0.0.1:9", 1) == ("127.0.0.1", 9)
    assert parse_listen(":9", 1) == ("0.0.0.0", 9)
    assert parse_listen("[::1]:9", 1) == ("::1", 9)
    with pytest.raises(ValueError, match="host:port"):
        parse_listen("host:http", 1)


@pytest.mark.parametrize("port", [10118, "10118"])
def test_a_bare_port_number_listens_on_every_address(tmp_path: Path, port: int | str) -> None:
    """`listen: 10118` is that port on all addresses, not a host named "10118" on the default
    port (which `check` accepted and `serve` failed to bind)."""
    raw = base_config(tmp_path)
    raw["metrics"]["listen"] = port
    raw["source"] = {"proxy": {"listen": int(port) + 1, "upstream": "http://127.0.0.1:9"}}
    config = config_from_mapping(raw)
    assert config.metrics.listen == ("0.0.0.0", 10118)
    assert isinstance(config.source, ProxyConfig)
    assert config.source.listen == ("0.0.0.0", 10119)


@pytest.mark.parametrize(
    ("upstream", "problem"),
    [
        ("http://[::1", "is not a URL: Invalid IPv6 URL"),
        ("http://127.0.0.1:99999", "is not a URL: Port out of range 0-65535"),
        ("http://model server:9", "is not an http:// or https:// URL"),
        # The proxy sends each request's own path and query: one here would be ignored.
        ("http://127.0.0.1:9000/v2", "has a path or query"),
        ("https://gateway/seldon/ns/wine", "has a path or query"),
        ("http://127.0.0.1:9000?x=1", "has a path or query"),
    ],
)
def test_a_malformed_upstream_is_refused_saying_why(
    tmp_path: Path, upstream: str, problem: str
) -> None:
    """An open bracket is not called a bad port, and a space in the host is refused."""
    raw = base_config(tmp_path, source={"proxy": {"upstream": upstream}})
    with pytest.raises(ConfigError) as refused:
        config_from_mapping(raw)
    assert f"source.proxy.upstream: {upstream!r} {problem}" in str(refused.value)


def test_an_ipv6_address_without_brackets_is_refused(tmp_path: Path) -> None:
    """`listen: "::1"` is refused naming the key, not read as host ":" and port 1."""
    raw = base_config(tmp_path)
    raw["metrics"]["listen"] = "::1"
    with pytest.raises(
        ConfigError, match=r"metrics\.listen: '::1': write an IPv6 address in brackets"
    ):
        config_from_mapping(raw)


@pytest.mark.parametrize("name", ["wine-proxy.yaml", "wine-tail.yaml"])
def test_example_configs_are_valid(name: str) -> None:
    """The example configs in examples/ load without a problem."""
    path = Path(__file__).resolve().parents[2] / "examples" / name
    config = load_config(path)
    assert config.model == "wine"
    assert config.feedback is not None


@pytest.mark.parametrize(
    ("state_file", "problem"),
    [
        ("taken/log.offset", "'taken/log.offset': {taken} is a file, not a folder"),
        ("offsets", "'offsets' is a directory, not the offset file"),
    ],
)
def test_a_tail_offset_file_that_cannot_be_written_is_refused(
    tmp_path: Path, state_file: str, problem: str
) -> None:
    """A state_file under a file passed check, then the tailer read nothing (a warning, rows 0)."""
    (tmp_path / "taken").write_text("a file\n")
    (tmp_path / "offsets").mkdir()
    raw = base_config(tmp_path, source={"tail": {"path": "r.jsonl", "state_file": state_file}})
    expected = problem.format(taken=tmp_path / "taken")
    assert _error(tmp_path, raw) == f"source.tail.state_file: {expected}"


def test_a_directory_to_follow_is_refused(tmp_path: Path) -> None:
    """source.tail.path or feedback.tail naming a directory passed check; serve then warned."""
    (tmp_path / "logs").mkdir()
    raw = base_config(tmp_path, source={"tail": {"path": "logs"}})
    raw["predictions"] = [{"name": "class", "type": "categorical"}]
    raw["feedback"] = {"prediction": "class", "tail": "logs"}
    message = _error(tmp_path, raw)
    assert "source.tail.path: 'logs' is a directory, not the file to follow" in message
    assert "feedback.tail: 'logs' is a directory, not the label file to follow" in message


def test_a_fifo_to_follow_or_keep_an_offset_in_is_refused(tmp_path: Path) -> None:
    """A FIFO at source.tail.path, its state_file or feedback.tail passed check; serve then
    waited on it for a writer (and, before it opened files non-blocking, never ended on
    SIGTERM) or read no line, the reason only logged and on /readyz."""
    os.mkfifo(tmp_path / "r.jsonl")
    os.mkfifo(tmp_path / "labels.jsonl")
    raw = base_config(tmp_path, source={"tail": {"path": "r.jsonl"}})
    raw["predictions"] = [{"name": "class", "type": "categorical"}]
    raw["feedback"] = {"prediction": "class", "tail": "labels.jsonl"}
    message = _error(tmp_path, raw)
    no_file = "is no regular file (a FIFO, socket or device), not"
    assert f"source.tail.path: 'r.jsonl' {no_file} the file to follow" in message
    assert f"feedback.tail: 'labels.jsonl' {no_file} the label file to follow" in message
    (tmp_path / "r.jsonl").unlink()
    os.mkfifo(tmp_path / "r.offset")
    raw = base_config(tmp_path, source={"tail": {"path": "r.jsonl", "state_file": "r.offset"}})
    assert _error(tmp_path, raw) == (
        f"source.tail.state_file: 'r.offset' {no_file} the offset file"
    )


def test_a_folder_where_the_tail_s_offset_goes_in_the_state_directory_is_refused(
    tmp_path: Path,
) -> None:
    """Without a state_file the tail's offset is <state.directory>/<log name>.offset: a folder
    there passed check, and serve then read no line ('cannot read logs/r.jsonl: [Errno 21] Is
    a directory: 'state/r.jsonl.offset'', at every poll)."""
    (tmp_path / "state" / "r.jsonl.offset").mkdir(parents=True)
    raw = base_config(tmp_path, source={"tail": {"path": "r.jsonl"}}, state={"directory": "state"})
    offset = tmp_path / "state" / "r.jsonl.offset"
    assert (
        _error(tmp_path, raw)
        == f"state.directory: 'state': {offset} (the tail's offset) is a folder"
    )


def test_a_folder_where_a_label_file_s_offset_goes_is_refused(tmp_path: Path) -> None:
    """feedback.tail keeps its offset in <file>.offset: a folder there passed check, and serve
    then read no label ('cannot read labels.jsonl: [Errno 21] Is a directory:
    'labels.jsonl.offset'', at every poll)."""
    (tmp_path / "labels.jsonl.offset").mkdir()
    raw = base_config(tmp_path)
    raw["predictions"] = [{"name": "class", "type": "categorical"}]
    raw["feedback"] = {"prediction": "class", "tail": "labels.jsonl"}
    assert _error(tmp_path, raw) == (
        "feedback.tail: 'labels.jsonl.offset', where its offset is kept, is a directory"
    )


@pytest.mark.parametrize("under", ["", "/state"])
def test_a_link_to_nothing_in_the_way_of_a_folder_is_an_error(tmp_path: Path, under: str) -> None:
    """A state.directory (or its parent) that is a link to nothing passed check, then every
    snapshot failed ('cannot write the state snapshot dangling/wine.state: [Errno 17] File
    exists: 'dangling''), as did the tail offset kept there."""
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    raw = base_config(tmp_path, state={"directory": f"dangling{under}"})
    raw["source"] = {"tail": {"path": "r.jsonl", "state_file": f"dangling{under}/r.offset"}}
    problem = f"{tmp_path / 'dangling'} is a link to nothing ({tmp_path / 'nowhere'}), not a folder"
    message = _error(tmp_path, raw)
    assert f"state.directory: 'dangling{under}': {problem}" in message
    assert f"source.tail.state_file: 'dangling{under}/r.offset': {problem}" in message
    # A log read there may yet appear at the link's target: waited for, as a missing folder.
    read = base_config(tmp_path, source={"tail": {"path": f"dangling{under}/r.jsonl"}})
    assert config_from_mapping(read, tmp_path).source.path == tmp_path / f"dangling{under}/r.jsonl"
    (tmp_path / "nowhere").mkdir()
    config_from_mapping(raw, tmp_path)


def test_a_file_to_follow_under_a_file_is_refused(tmp_path: Path) -> None:
    """source.tail.path or feedback.tail under a file passed check; serve then started ready,
    warned once ('[Errno 20] Not a directory') and read nothing."""
    (tmp_path / "taken").write_text("a file\n")
    raw = base_config(tmp_path, source={"tail": {"path": "taken/r.jsonl"}})
    raw["predictions"] = [{"name": "class", "type": "categorical"}]
    raw["feedback"] = {"prediction": "class", "tail": "taken/labels.jsonl"}
    message = _error(tmp_path, raw)
    taken = tmp_path / "taken"
    assert f"source.tail.path: 'taken/r.jsonl': {taken} is a file, not a folder" in message
    assert f"feedback.tail: 'taken/labels.jsonl': {taken} is a file, not a folder" in message


@pytest.mark.parametrize("directory", ["taken", "taken/state"])
def test_a_state_directory_a_file_stands_in_is_an_error(tmp_path: Path, directory: str) -> None:
    """A snapshot folder that a file is (or is inside) passed check, then every save failed."""
    (tmp_path / "taken").write_text("a file\n")
    message = _error(tmp_path, base_config(tmp_path, state={"directory": directory}))
    assert (
        message == f"state.directory: {directory!r}: {tmp_path / 'taken'} is a file, not a folder"
    )
    config = config_from_mapping(base_config(tmp_path, state={"directory": "new/state"}), tmp_path)
    assert config.state.directory == tmp_path / "new" / "state"
