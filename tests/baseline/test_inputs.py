"""Data inputs: local globs, S3 (a real moto server), GCS (a real emulator), HTTPS with a private CA."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import itertools
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq
import pytest

from driftgauge.baseline import Baseline, build_baseline, load_baseline, local, resolve_inputs
from driftgauge.cli import main
from driftgauge.config import Config
from driftgauge.exceptions import DataError
from driftgauge.sketches import NumericSummary
from driftgauge.starter import sample_data
from tests.baseline.cluster_support import RUNNERS, our_lines
from tests.baseline.test_csvfiles import BAD_FILES, HEADER
from tests.baseline.test_csvfiles import ROWS as CSV_ROWS
from tests.baseline.test_datafiles import BAD_JSON_FILES
from tests.helpers import free_port, serving, training_rows, wait_for, write_csv

PARTS = 3
ROWS = 1_000  # 3,000 rows in all: fewer than the edge sketch holds exactly, so edges are exact


@pytest.fixture
def parts(tmp_path: Path) -> dict[str, list[Path]]:
    """The same three parts of a training set as Parquet and as CSV, in tmp_path/local."""
    local = tmp_path / "local"
    local.mkdir()
    written: dict[str, list[Path]] = {"parquet": [], "csv": []}
    for part in range(PARTS):
        columns = training_rows(ROWS, seed=part)
        path = local / f"part-{part}.parquet"
        pq.write_table(pa.table(columns), path, row_group_size=300)
        written["parquet"].append(path)
        written["csv"].append(write_csv(local / f"part-{part}.csv", columns))
    return written


def assert_same_baseline(a: Baseline, b: Baseline, rows: int = PARTS * ROWS) -> None:
    """Same rows, counts, edges, categories and exact bin counts in every field."""
    assert a.rows == b.rows == rows
    assert a.fields.keys() == b.fields.keys()
    for name, held in a.fields.items():
        one, other = held.summary, b.fields[name].summary
        assert (one.count, one.missing) == (other.count, other.missing), name
        assert np.array_equal(one.bins, other.bins), name
        if isinstance(one, NumericSummary):
            assert isinstance(other, NumericSummary)
            assert np.array_equal(one.binning.edges, other.binning.edges), name
        else:
            assert one.binning == other.binning, name


# --- servers ------------------------------------------------------------------------------------


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _process(
    what: str, args: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A server process on 127.0.0.1:``port``, stopped (then killed) on the way out."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            args, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:

            def up() -> bool:
                assert process.poll() is None, f"{what} exited: {log.read_text()[-2000:]}"
                return _listening(port)

            wait_for(up, timeout=60, what=f"{what} on port {port}")
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _moto(log: Path, env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return _process("moto", args, port, log, env)


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server (a real process) for the module's tests."""
    with _moto(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> Callable[[str, dict[str, Path]], None]:
    """The AWS variables pointing at the moto server, and an uploader: ``s3(bucket, {key: file})``."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    store = pa_fs.S3FileSystem(
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        endpoint_override=s3_endpoint,
        allow_bucket_creation=True,
    )

    def upload(bucket: str, objects: dict[str, Path]) -> None:
        store.create_dir(bucket)
        for key, path in objects.items():
            with store.open_output_stream(f"{bucket}/{key}") as out:
                out.write(path.read_bytes())

    return upload


@pytest.fixture(scope="module")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Google Cloud Storage emulator (gcp-storage-emulator, a real process)."""
    port = free_port()
    args = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--in-memory"]
    with _process(
        "gcp-storage-emulator", args, port, tmp_path_factory.mktemp("gcs") / "gcs.log"
    ) as endpoint:
        yield endpoint


class _FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, ranges: bool, authorization: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.root = root
        self.ranges = ranges
        self.authorization = authorization  # the Authorization header asked for, if any


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves the files under the server's root, answering ``Range: bytes=a-b`` unless told not to."""

    server: _FileServer

    def do_GET(self) -> None:
        if self.server.authorization not in (None, self.headers.get("Authorization")):
            self.send_error(401)
            return
        path = self.server.root / urllib.parse.unquote(urllib.parse.urlsplit(self.path).path[1:])
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted and self.server.ranges:
            start = int(wanted[1])
            end = min(int(wanted[2]) if wanted[2] else len(data) - 1, len(data) - 1)
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the reader hangs up after a seek: expected
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def https_server(pki: Path) -> Iterator[Callable[..., str]]:
    """Start HTTPS file servers (a certificate from the test CA) on 127.0.0.1; stopped after."""
    with contextlib.ExitStack() as stack:

        def start(root: Path, ranges: bool = True, authorization: str | None = None) -> str:
            server = _FileServer(root, ranges, authorization)
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(pki / "server.pem", pki / "server.key")
            server.socket = tls.wrap_socket(server.socket, server_side=True)
            stack.enter_context(serving(server))
            return f"https://127.0.0.1:{server.server_address[1]}"

        yield start


# --- local --------------------------------------------------------------------------------------


def test_local_globs_directories_and_paths_resolve_in_order(
    tmp_path: Path, parts: dict[str, list[Path]]
) -> None:
    """``*`` within a folder, ``**`` across folders, a directory's data files, sorted."""
    nested = tmp_path / "local" / "more" / "deep.csv"
    nested.parent.mkdir()
    nested.write_bytes(parts["csv"][0].read_bytes())
    (tmp_path / "local" / "README.txt").write_text("not data")
    local = tmp_path / "local"

    names = [i.name for i in resolve_inputs([f"{local}/*.csv"])]
    assert names == [str(p) for p in parts["csv"]]
    deep = resolve_inputs([f"{local}/**/*.csv"])
    assert [i.name for i in deep] == sorted([*map(str, parts["csv"]), str(nested)])
    assert [i.size for i in deep] == [Path(i.name).stat().st_size for i in deep]
    everything = resolve_inputs([str(local)])
    assert len(everything) == 2 * PARTS + 1  # README.txt is not a data file
    assert {i.format for i in everything} == {"csv", "parquet"}
    single = resolve_inputs([str(parts["parquet"][1]), f"file://{parts['csv'][2]}"])
    assert [(i.name, i.format) for i in single] == [
        (str(parts["parquet"][1]), "parquet"),
        (str(parts["csv"][2]), "csv"),
    ]
    by_host = resolve_inputs([f"file://localhost{local}"])
    assert [i.name for i in by_host] == [i.name for i in everything]


def test_a_folder_skips_the_hidden_and_underscored_files_under_it(
    tmp_path: Path, parts: dict[str, list[Path]]
) -> None:
    """A Spark job's _temporary/ left by a failed attempt, an editor's or macOS's dot files:
    not the data, and Spark, Dask and pyarrow's datasets skip them; so does a folder here."""
    local = tmp_path / "local"
    (local / "_temporary" / "0").mkdir(parents=True)
    (local / "_temporary" / "0" / "part-0.csv").write_bytes(parts["csv"][0].read_bytes())
    (local / "._part-0.csv").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (local / "_part-9.csv").write_bytes(parts["csv"][0].read_bytes())
    names = [i.name for i in resolve_inputs([str(local)])]
    assert names == sorted(map(str, parts["csv"] + parts["parquet"]))


def test_a_glob_skips_what_a_folder_skips_unless_it_names_it(
    tmp_path: Path, parts: dict[str, list[Path]]
) -> None:
    """Spark writes out/_SUCCESS beside its parts, and a failed attempt's _temporary/:
    ``out/*`` and ``out/**/*.csv`` read the parts only; ``out/_*.csv`` names its files."""
    out = tmp_path / "out"
    (out / "_temporary" / "0").mkdir(parents=True)
    for i, source in enumerate(parts["csv"][:2]):
        (out / f"part-{i}.csv").write_bytes(source.read_bytes())
    (out / "_temporary" / "0" / "part-9.csv").write_bytes(parts["csv"][2].read_bytes())
    (out / "_SUCCESS").write_bytes(b"")
    (out / "_extra.csv").write_bytes(parts["csv"][2].read_bytes())
    wanted = [str(out / "part-0.csv"), str(out / "part-1.csv")]
    assert [i.name for i in resolve_inputs([f"{out}/*"])] == wanted
    assert [i.name for i in resolve_inputs([f"{out}/**/*.csv"])] == wanted
    assert [i.name for i in resolve_inputs([f"{out}/_*.csv"])] == [str(out / "_extra.csv")]


def test_a_file_named_twice_by_the_data_arguments_is_refused(
    tmp_path: Path, parts: dict[str, list[Path]]
) -> None:
    """A glob and a file inside it (data/*.csv data/part-1.csv, a folder and a glob) read
    the file twice, its rows counted twice in every bin; it is one line naming the file and
    both arguments."""
    local = tmp_path / "local"
    one = parts["csv"][1]
    for specs in (
        [f"{local}/*.csv", str(one)],
        [str(local), f"{local}/*.parquet"],
        [str(one), f"file://{one}"],
        [str(one), str(one)],  # the same argument twice
    ):
        with pytest.raises(DataError) as caught:
            resolve_inputs(specs)
        message = str(caught.value)
        assert message.endswith(
            f": named by --data {specs[0]} and by {specs[1]}: each file is read once"
        )
        assert "\n" not in message
    assert len(resolve_inputs([str(p) for p in parts["csv"]])) == PARTS


def test_a_local_glob_builds_the_baseline_of_its_files(
    tmp_path: Path, parts: dict[str, list[Path]], make_config: Callable[..., Config]
) -> None:
    """A glob is the same as listing its files."""
    config = make_config()
    globbed = build_baseline(config, resolve_inputs([f"{tmp_path}/local/*.parquet"]))
    assert_same_baseline(globbed, build_baseline(config, parts["csv"]))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{tmp}/nothing/*.csv", "{tmp}/nothing/*.csv: no file matches"),
        ("{tmp}/absent.csv", "{tmp}/absent.csv: no such data file"),
        ("{tmp}/t.xlsx", "{tmp}/t.xlsx: unknown data file type '.xlsx'"),
        (
            "ftp://host/t.csv",
            "ftp://host/t.csv: unknown scheme 'ftp' (known: file, gcs, gs, http, https, s3)",
        ),
        ("s3:///t.csv", "s3:///t.csv: no bucket in the URL"),
        (
            "file:/{tmp}/t.csv",
            "file:/{tmp}/t.csv: a file URL's host must be empty or localhost, not",
        ),
    ],
)
def test_local_and_scheme_errors_are_one_line_naming_the_input(
    tmp_path: Path, spec: str, message: str
) -> None:
    """A glob matching nothing, a missing file, an unknown type or scheme, a file URL naming a
    host (file://data/t.csv, read as /t.csv): one line, the input."""
    with pytest.raises(DataError) as caught:
        resolve_inputs([spec.format(tmp=tmp_path)])
    assert str(caught.value).startswith(message.format(tmp=tmp_path))
    assert "\n" not in str(caught.value)


# --- S3 -----------------------------------------------------------------------------------------


def test_an_s3_glob_builds_the_same_baseline_as_the_local_files(
    s3: Callable[[str, dict[str, Path]], None],
    parts: dict[str, list[Path]],
    make_config: Callable[..., Config],
) -> None:
    """``s3://bucket/prefix/*.parquet`` reads the uploaded parts: same rows and bin counts."""
    s3("training", {f"wine/{p.name}": p for p in parts["parquet"]})
    decoys = {"wine/_SUCCESS": parts["csv"][0], "wine/old/part-8.parquet": parts["parquet"][0]}
    s3("training", {**decoys, "other/part-9.parquet": parts["parquet"][0]})  # `*` stays in wine/
    config = make_config()
    inputs = resolve_inputs(["s3://training/wine/*.parquet"])
    assert [(i.name, i.size, i.format) for i in inputs] == [
        (f"s3://training/wine/{p.name}", p.stat().st_size, "parquet") for p in parts["parquet"]
    ]
    assert_same_baseline(build_baseline(config, inputs), build_baseline(config, parts["parquet"]))
    # `*` alone skips _SUCCESS, as a prefix does.
    assert [i.name for i in resolve_inputs(["s3://training/wine/*"])] == [i.name for i in inputs]


def test_s3_csv_parts_a_prefix_and_one_object(
    s3: Callable[[str, dict[str, Path]], None],
    parts: dict[str, list[Path]],
    make_config: Callable[..., Config],
) -> None:
    """CSV objects read like local CSV; a prefix takes its data files; one key is one file."""
    s3("csvs", {f"train/2024/{p.name}": p for p in parts["csv"]})
    s3("csvs", {"train/_SUCCESS": parts["csv"][0]})
    config = make_config()
    local = build_baseline(config, parts["csv"])
    assert_same_baseline(
        build_baseline(config, resolve_inputs(["s3://csvs/train/**/*.csv"])), local
    )
    # A failed attempt's leftovers under the prefix are not the data (Spark skips them too).
    s3("csvs", {"train/_temporary/0/part-0.csv": parts["csv"][0]})
    s3("csvs", {"train/2024/.part-0.csv": parts["csv"][0]})
    assert [i.name for i in resolve_inputs(["s3://csvs/train/"])] == [
        f"s3://csvs/train/2024/{p.name}" for p in parts["csv"]
    ]
    assert_same_baseline(build_baseline(config, resolve_inputs(["s3://csvs/train/"])), local)
    (one,) = resolve_inputs(["s3://csvs/train/2024/part-1.csv"])
    assert (one.name, one.size) == (
        "s3://csvs/train/2024/part-1.csv",
        parts["csv"][1].stat().st_size,
    )


def test_the_generic_endpoint_variable_is_used_without_the_s3_one(
    s3: Callable[[str, dict[str, Path]], None],
    parts: dict[str, list[Path]],
    monkeypatch: pytest.MonkeyPatch,
    s3_endpoint: str,
) -> None:
    """``AWS_ENDPOINT_URL`` names the server when ``AWS_ENDPOINT_URL_S3`` is unset."""
    s3("generic", {"t.parquet": parts["parquet"][0]})
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    (found,) = resolve_inputs(["s3://generic/t.parquet"])
    assert found.size == parts["parquet"][0].stat().st_size
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")  # the S3 one comes first
    with pytest.raises(DataError, match=r"^s3://generic/t.parquet: .*(connect|Connect)"):
        resolve_inputs(["s3://generic/t.parquet"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("s3://no-such-bucket/t.parquet", "no such bucket 'no-such-bucket'"),
        ("s3://no-such-bucket/*.parquet", "no such bucket 'no-such-bucket'"),
        ("s3://errors/absent.parquet", "no such object or prefix"),
        ("s3://errors/train/*.csv", "no object matches"),
        ("s3://errors/train/notes.txt", "unknown data file type '.txt'"),
    ],
)
def test_missing_s3_buckets_and_keys_are_one_line_naming_the_url(
    s3: Callable[[str, dict[str, Path]], None],
    parts: dict[str, list[Path]],
    spec: str,
    message: str,
) -> None:
    """Each missing thing is named, after the URL, on one line."""
    s3("errors", {"train/t.parquet": parts["parquet"][0], "train/notes.txt": parts["csv"][0]})
    with pytest.raises(DataError) as caught:
        resolve_inputs([spec])
    assert str(caught.value) == f"{spec}: {message}" or (
        "unknown" in message and str(caught.value).startswith(f"{spec}: {message}")
    )


def test_an_object_whose_key_holds_glob_characters_is_read_as_named(
    s3: Callable[[str, dict[str, Path]], None], parts: dict[str, list[Path]]
) -> None:
    """A key such as data[1].csv names that object, as a local file of that name does;
    it was taken for a glob ('[1]' matching '1') and said 'no object matches'."""
    s3("literal", {"t/data[1].csv": parts["csv"][0], "t/data1.csv": parts["csv"][1]})
    (one,) = resolve_inputs(["s3://literal/t/data[1].csv"])
    assert (one.name, one.size) == ("s3://literal/t/data[1].csv", parts["csv"][0].stat().st_size)
    globbed = resolve_inputs(["s3://literal/t/data[0-9].csv"])
    assert [i.name for i in globbed] == ["s3://literal/t/data1.csv"]


def test_refused_s3_credentials_are_one_line_naming_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server checking keys (moto with authentication on) refuses unknown ones."""
    with _moto(tmp_path / "moto-auth.log", {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as endpoint:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        for spec in ("s3://secret/t.parquet", "s3://secret/*.parquet"):
            with pytest.raises(DataError) as caught:
                resolve_inputs([spec])
            text = str(caught.value)
            assert text.startswith(f"{spec}: ") and "\n" not in text
            assert re.search(r"ACCESS_DENIED|INVALID_ACCESS_KEY_ID", text), text


def test_the_cli_builds_from_s3_and_reports_a_missing_object_in_one_line(
    s3: Callable[[str, dict[str, Path]], None],
    parts: dict[str, list[Path]],
    make_config: Callable[..., Config],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``driftgauge baseline --data s3://...`` writes the baseline; a missing key exits 4."""
    s3("cli", {f"p/{p.name}": p for p in parts["parquet"]})
    config = make_config()
    out = tmp_path / "s3.dgb"
    argv = ["baseline", "-c", str(tmp_path / "config.yaml"), "-o", str(out), "--data"]
    assert main([*argv, "s3://cli/p/*.parquet"]) == 0
    assert_same_baseline(load_baseline(out), build_baseline(config, parts["parquet"]))
    capsys.readouterr()
    assert main([*argv, "s3://cli/p/part-7.parquet"]) == 4
    err = capsys.readouterr().err
    assert err == "driftgauge: s3://cli/p/part-7.parquet: no such object or prefix\n"


# --- GCS ----------------------------------------------------------------------------------------


def _gcs_bucket(endpoint: str, bucket: str) -> Any:
    """A new ``bucket`` in the emulator at ``endpoint``, and a pyarrow filesystem of it."""
    create = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project=test",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(create, timeout=10) as answer:
        assert answer.status == 200
    return pa_fs.GcsFileSystem(
        anonymous=True, scheme="http", endpoint_override=endpoint.removeprefix("http://")
    )


def test_a_gs_glob_builds_the_same_baseline_as_the_local_files(
    gcs_endpoint: str,
    parts: dict[str, list[Path]],
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``gs://bucket/prefix/*.parquet`` through the emulator ``STORAGE_EMULATOR_HOST`` names."""
    store = _gcs_bucket(gcs_endpoint, "gtrain")
    for path in parts["parquet"]:
        with store.open_output_stream(f"gtrain/wine/{path.name}") as out:
            out.write(path.read_bytes())
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    config = make_config()
    inputs = resolve_inputs(["gs://gtrain/wine/*.parquet"])
    assert [i.name for i in inputs] == [f"gs://gtrain/wine/{p.name}" for p in parts["parquet"]]
    assert_same_baseline(build_baseline(config, inputs), build_baseline(config, parts["parquet"]))
    with pytest.raises(DataError, match=r"^gs://gtrain/wine/absent.csv: no such object or prefix$"):
        resolve_inputs(["gs://gtrain/wine/absent.csv"])


# --- HTTPS --------------------------------------------------------------------------------------


def test_https_files_with_a_private_ca_build_the_same_baseline(
    https_server: Callable[..., str],
    parts: dict[str, list[Path]],
    pki: Path,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parquet (ranged reads) and CSV over HTTPS, the CA trusted through ``SSL_CERT_FILE``."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    base = https_server(parts["parquet"][0].parent)
    config = make_config()
    for fmt in ("parquet", "csv"):
        inputs = resolve_inputs([f"{base}/{p.name}" for p in parts[fmt]])
        assert [i.size for i in inputs] == [p.stat().st_size for p in parts[fmt]]
        assert_same_baseline(build_baseline(config, inputs), build_baseline(config, parts[fmt]))


def test_a_user_and_password_in_an_https_url_are_sent_and_never_shown(
    https_server: Callable[..., str],
    parts: dict[str, list[Path]],
    pki: Path,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """https://user:token@host/file (an artifact server's usual form) authenticates with HTTP
    Basic; it was 'cannot reach the server: Name or service not known', the token printed in
    the line. Messages and input names now show the user, never the password."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    base = https_server(parts["csv"][0].parent, authorization="Basic bWw6czNjciV0IQ==")
    host = base.removeprefix("https://")
    config = make_config()
    for fmt in ("csv", "parquet"):
        (found,) = resolve_inputs([f"https://ml:s3cr%25t!@{host}/part-0.{fmt}"])
        assert found.name == f"https://ml:***@{host}/part-0.{fmt}"
        assert build_baseline(config, [found]).rows == ROWS
    with pytest.raises(DataError) as caught:
        resolve_inputs([f"https://ml:wrong@{host}/part-0.csv"])
    assert (
        str(caught.value)
        == f"https://ml:***@{host}/part-0.csv: the server answered 401 Unauthorized"
    )


def test_https_errors_are_one_line_naming_the_url(
    https_server: Callable[..., str],
    parts: dict[str, list[Path]],
    pki: Path,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An untrusted certificate, a 404, a refused connection; Parquet from a server without ranges."""
    root = parts["parquet"][0].parent
    base = https_server(root)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "server.pem"))  # not the CA: untrusted
    url = f"{base}/part-0.csv"
    with pytest.raises(
        DataError, match=rf"^{re.escape(url)}: cannot reach the server: .*CERTIFICATE_VERIFY_FAILED"
    ):
        resolve_inputs([url])
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    with pytest.raises(
        DataError, match=rf"^{re.escape(base)}/absent.csv: the server answered 404 Not Found$"
    ):
        resolve_inputs([f"{base}/absent.csv"])
    closed = f"https://127.0.0.1:{free_port()}/t.csv"
    with pytest.raises(DataError, match=rf"^{re.escape(closed)}: cannot reach the server: "):
        resolve_inputs([closed])

    plain = https_server(root, ranges=False)
    config = make_config()
    (csv_input,) = resolve_inputs([f"{plain}/part-0.csv"])  # read from the start: no range needed
    assert build_baseline(config, [csv_input]).rows == ROWS
    parquet_url = f"{plain}/part-0.parquet"
    with pytest.raises(DataError) as caught:
        build_baseline(config, resolve_inputs([parquet_url]))
    assert str(caught.value) == (
        f"{parquet_url}: cannot read PARQUET data: "
        "the server does not answer Range requests (Parquet needs them)"
    )


def test_a_large_csv_from_a_server_without_ranges_is_read_in_one_get(
    https_server: Callable[..., str],
    tmp_path: Path,
    pki: Path,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CSV large enough to split (past the reader's 1 MiB buffer) is one part when its
    server ignores Range (it failed: "the server does not answer Range requests (Parquet
    needs them)", exit 1)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    monkeypatch.setattr(local, "PART_BYTES", 400_000)
    monkeypatch.setattr(local, "MIN_PART_BYTES", 100_000)
    path = write_csv(tmp_path / "large.csv", training_rows(60_000, seed=7))
    assert path.stat().st_size > 1 << 20
    plain = https_server(tmp_path, ranges=False)
    (csv_input,) = resolve_inputs([f"{plain}/large.csv"])
    assert [p.whole for p in local.split_parts([csv_input], 2)] == [True]
    config = make_config()
    remote = build_baseline(config, [csv_input], workers=2)
    assert_same_baseline(remote, build_baseline(config, [path], workers=2), 60_000)


def test_init_samples_the_data_baseline_reads_from_s3_and_https(
    s3: Callable[[str, dict[str, Path]], None],
    https_server: Callable[..., str],
    parts: dict[str, list[Path]],
    pki: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`init --data` takes what `baseline --data` takes: an object, a prefix (its first file
    read, the config's baseline command naming the prefix) and an HTTPS file, Parquet and CSV;
    it said 's3:/bucket/...: no such data file', its URL mangled into a local path."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    s3("init", {f"train/{p.name}": p for p in parts["parquet"] + parts["csv"]})
    base = https_server(parts["csv"][0].parent)
    local = sample_data(parts["csv"][0])
    expected = [(c.name, c.type) for c in local.columns]
    for spec in (
        "s3://init/train/part-0.csv",
        "s3://init/train/part-0.parquet",
        f"{base}/part-0.csv",
        f"{base}/part-0.parquet",
    ):
        sample = sample_data(spec)
        assert (sample.path, sample.source) == (spec, "")
        assert [(c.name, c.type) for c in sample.columns] == expected
    prefix = sample_data("s3://init/train/")
    assert (prefix.path, prefix.source) == ("s3://init/train/part-0.csv", "s3://init/train/")
    config = parts["csv"][0].parent.parent / "init.yaml"
    assert main(["init", "--data", "s3://init/train/", "-o", str(config)]) == 0
    assert "--data s3://init/train/ -o BASELINE" in config.read_text(encoding="utf-8")
    with pytest.raises(DataError, match=r"^s3://init/train/absent\.csv: no such object"):
        sample_data("s3://init/train/absent.csv")


# --- the first-line checks on every runner -------------------------------------------------------

# Files the local build refuses on their first lines, and the line it says ({path}: the URL).
FIRST_LINE_FILES = {
    name: BAD_FILES[name] for name in ("empty.csv", "blank-first-line.csv", "semicolons.csv")
} | {
    "latin-header.csv": (
        b"alcohol,ash,r\xe9gion,class\n13.1,2.1,north,a\n",
        "{path}: cannot read CSV data: not UTF-8 text (byte 0xe9): save the file as UTF-8",
    ),
    "array.json": BAD_JSON_FILES["array.json"],
}


_BUCKETS = itertools.count()


@pytest.fixture
def stored(
    s3: Callable[[str, dict[str, Path]], None],
    gcs_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Callable[[str, str, bytes], str]:
    """An uploader: ``stored("s3" or "gs", name, data)`` is the URL of a new object holding it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)

    def store(scheme: str, name: str, data: bytes) -> str:
        bucket = f"first-lines-{next(_BUCKETS)}"  # the servers are the module's
        path = tmp_path / name
        path.write_bytes(data)
        if scheme == "s3":
            s3(bucket, {f"t/{name}": path})
        else:
            gcs = _gcs_bucket(gcs_endpoint, bucket)
            with gcs.open_output_stream(f"{bucket}/t/{name}") as out:
                out.write(data)
        return f"{scheme}://{bucket}/t/{name}"

    return store


@pytest.mark.parametrize("name", FIRST_LINE_FILES)
@pytest.mark.parametrize("scheme", ["s3", "gs"])
@pytest.mark.parametrize("runner", RUNNERS)
def test_every_runner_refuses_a_bad_first_line_in_an_object_store_as_in_a_local_file(
    tmp_path: Path,
    runner: str,
    scheme: str,
    name: str,
    runners: dict[str, list[str]],
    stored: Callable[[str, str, bytes], str],
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An empty CSV object, one whose first line is blank, is split by ';' or is not UTF-8,
    and a .json object holding one JSON array: Spark and Dask were given them unchecked
    (the local build's first checks were of local files only), taking the next line as the
    header or the array's objects as rows where they read the store; they now say what a
    local build of the object, or of the same file on disk, says."""
    make_config()
    data, said = FIRST_LINE_FILES[name]
    assert data is not None
    url = stored(scheme, name, data)
    output = tmp_path / "out.dgb"
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", url]
    code = main([*arguments, "-o", str(output), *runners[runner]])
    ours = our_lines(capsys.readouterr().err)
    assert (code, ours) == (DataError.exit_code, ["driftgauge: " + said.format(path=url)])
    assert not output.exists()


@pytest.mark.parametrize(
    ("runner", "spec", "said"),
    [
        (
            "spark",
            "nosuch://bucket/t.csv",
            'Spark cannot read it: No FileSystem for scheme "nosuch"',
        ),
        (
            "spark",
            "nosuch://bucket/t.parquet",
            'Spark cannot read it: No FileSystem for scheme "nosuch"',
        ),
        ("dask", "s3://{bucket}/t.csv", "cannot read CSV data: Install s3fs to access S3"),
        ("dask", "s3://{bucket}/*.csv", "cannot read CSV data: No module named 's3fs'"),
    ],
)
def test_a_scheme_spark_or_dask_cannot_read_is_one_line(
    tmp_path: Path,
    runner: str,
    spec: str,
    said: str,
    runners: dict[str, list[str]],
    stored: Callable[[str, str, bytes], str],
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A good CSV object in S3 given to Dask without s3fs, and a URL of a scheme Spark has no
    Hadoop file system for (as s3:// without hadoop-aws), ended in tracebacks (Dask's
    ImportError, Spark's UnsupportedFileSystemException); each is one line naming the
    input and what is missing."""
    if runner == "dask" and importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed: Dask reads S3")
    make_config()
    bucket = stored("s3", "t.csv", HEADER + CSV_ROWS).split("/")[2]
    location = spec.format(bucket=bucket)
    output = tmp_path / "out.dgb"
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", location]
    code = main([*arguments, "-o", str(output), *runners[runner]])
    ours = our_lines(capsys.readouterr().err)
    assert (code, ours) == (DataError.exit_code, [f"driftgauge: {location}: {said}"])
