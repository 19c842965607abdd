"""Where training data comes from: local files and globs, object stores, HTTP(S) URLs.

``resolve_inputs`` turns what the user gave ``--data`` into a list of
:class:`DataInput`, each one file with its name (the path or URL error
messages show), its size in bytes (for the progress bar) and its format.
Every problem found while resolving (a glob matching nothing, a missing
object, refused credentials, an unknown scheme, an unreachable URL) is one
:class:`DataError` line naming the input.

- Local paths, globs (``data/*.csv``, ``data/**/*.parquet``) and
  directories (every data file under them, but hidden or ``_`` names), and
  ``file://`` URLs.
- ``s3://bucket/key``, ``s3://bucket/prefix/`` (every data file under the
  prefix) and ``s3://bucket/prefix/*.parquet`` (``*`` and ``?`` within one
  level, ``**`` across levels), read through pyarrow's ``S3FileSystem``.
  Credentials come from the AWS SDK's usual chain (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``~/.aws``, instance
  metadata).  ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, names an
  S3-compatible server (MinIO, Ceph, a test server) as the AWS SDKs do; we
  read them here because pyarrow's ``S3FileSystem`` constructor does not.
- ``gs://`` (or ``gcs://``) the same way through pyarrow's
  ``GcsFileSystem`` with Google's default credentials
  (``GOOGLE_APPLICATION_CREDENTIALS``, the metadata server);
  ``STORAGE_EMULATOR_HOST`` names an emulator, as for Google's clients.
- ``https://`` and ``http://``: one file per URL, read with the standard
  library (no new dependency): one streamed GET for reading from the start,
  a ranged GET after each seek (Parquet reads its footer first, so its
  server must answer ``Range`` requests, as object stores and static file
  servers do).  Certificates are checked against the system's CAs, or the
  file ``SSL_CERT_FILE`` names.
"""

from __future__ import annotations

import base64
import datetime
import glob
import io
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from driftgauge.exceptions import DataError, first_line

__all__ = [
    "FORMATS",
    "DataInput",
    "as_input",
    "data_format",
    "is_glob",
    "location_format",
    "not_found",
    "readable",
    "resolve_inputs",
    "split_credentials",
]

try:
    import pyarrow as pa
    import pyarrow.fs as pa_fs
except ImportError:  # pragma: no cover - exercised only without the extra
    pa = None

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
HTTP_TIMEOUT = 30.0
_BUFFER = 1 << 20
_GLOB_CHARS = re.compile(r"[*?\[]")
# Google's client retries transient errors for 15 minutes by default: too long for a command.
_GCS_RETRIES = datetime.timedelta(seconds=60)


def data_format(name: str, suffix: str) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from a file name's ``suffix``, or a DataError naming ``name``."""
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"{name}: unknown data file type {suffix!r} (known: {known})")
    return fmt


def location_format(location: str, reader: str) -> str:
    """The format of a path, glob or URL that ``reader`` (Spark, Dask) reads itself, by extension."""
    name = location.rstrip("/")
    suffix = os.path.splitext(urllib.parse.urlsplit(name).path)[1]
    if not suffix:
        raise DataError(
            f"{location}: {reader} reads --data by its extension: name the files "
            f"(such as {name}/*.parquet)"
        )
    return data_format(location, suffix)


class _Location(Protocol):
    def open(self) -> IO[bytes]: ...

    def open_arrow(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class DataInput:
    """One training-data file, local or remote, ready to be opened for reading."""

    name: str  # the path or URL, as messages show it
    size: int  # bytes; 0 when an HTTP server does not say
    format: str  # csv, jsonl or parquet
    location: _Location = field(repr=False, compare=False)
    delimiter: str = ","  # tab for .tsv files
    ranged: bool = True  # False: an HTTP server that ignores Range, read from the start only

    def open(self) -> IO[bytes]:
        """A buffered binary file (seekable, iterable by line; ``tell()`` counts bytes read)."""
        return self.location.open()

    def open_arrow(self) -> Any:
        """The same file as a pyarrow random-access ``NativeFile`` (needs pyarrow)."""
        return self.location.open_arrow()


def _delimiter(suffix: str) -> str:
    return "\t" if suffix.lower() == ".tsv" else ","


def _input(
    name: str, suffix: str, size: int, location: _Location, ranged: bool = True
) -> DataInput:
    fmt = data_format(name, suffix)
    return DataInput(name, size, fmt, location, _delimiter(suffix), ranged)


# --- local files --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LocalFile:
    path: Path

    def open(self) -> IO[bytes]:
        return self.path.open("rb")

    def open_arrow(self) -> Any:
        return pa.OSFile(str(self.path), "rb")


def _local(path: Path) -> DataInput:
    name = str(path)
    fmt = data_format(name, path.suffix)  # first: "t.xlsx" is of the wrong type, absent or not
    if not path.is_file():
        raise DataError(f"{name}: no such data file")
    return DataInput(name, path.stat().st_size, fmt, _LocalFile(path), _delimiter(path.suffix))


def is_glob(location: str) -> bool:
    """Whether ``location`` is a glob (has a ``*``, ``?`` or ``[``)."""
    return _GLOB_CHARS.search(location) is not None


def not_found(location: str) -> DataError:
    """The error of a path or glob that names no file, as the local build and the Spark and
    Dask readers say it."""
    if is_glob(location):
        return DataError(f"{location}: no file matches")
    return DataError(f"{location}: no such data file")


def as_input(source: DataInput | Path) -> DataInput:
    """``source`` itself, or the local file at a path (a DataError if it is not a data file)."""
    return source if isinstance(source, DataInput) else _local(source)


def _data_file(relative: str) -> bool:
    """Whether a file under a folder or prefix is data: a data file's suffix, and no part of
    its path hidden (``.x``) or private (``_temporary/``, ``_SUCCESS``), as Spark and pyarrow's
    datasets read a folder."""
    return Path(relative).suffix.lower() in FORMATS and not _private(relative)


def _private(relative: str) -> bool:
    """Whether a relative path has a hidden (``.x``) or private (``_x``) part."""
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def _glob_keeps(pattern: str, relative: str) -> bool:
    """Whether a match of a glob is data: a path under its fixed folder (``relative``) with
    a hidden or private part is skipped, as under a folder (``out/*`` over Spark output is
    not ``out/_SUCCESS``), unless the glob's own ``pattern`` there has one (``out/_*.csv``)."""
    return _private(pattern) or not _private(relative)


def _glob_base(spec: str, at: int) -> str:
    """The fixed folder of a glob whose first glob character is at ``at``, ``/``-ended."""
    return spec[: spec.rfind("/", 0, at) + 1]


def _under(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and _data_file(p.relative_to(directory).as_posix())
    )


def _resolve_local(spec: str) -> list[DataInput]:
    path = Path(spec)
    if path.is_dir():
        found = _under(path)
        if not found:
            raise DataError(
                f"{spec}: no data files ({', '.join(sorted(FORMATS))}) in the directory"
            )
        return [_local(p) for p in found]
    glob_at = _GLOB_CHARS.search(spec)
    if not path.exists() and glob_at is not None:
        base = _glob_base(spec, glob_at.start())
        matches = sorted(
            Path(m)
            for m in glob.glob(spec, recursive=True)
            if _glob_keeps(spec[len(base) :], m[len(base) :])
        )
        files = [m for m in matches if m.is_file()]
        if not files:
            raise not_found(spec)
        return [_local(p) for p in files]
    return [_local(path)]


# --- object stores (pyarrow filesystems) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _StoredObject:
    filesystem: Any
    path: str  # bucket/key

    def open(self) -> IO[bytes]:
        return io.BufferedReader(self.open_arrow(), _BUFFER)

    def open_arrow(self) -> Any:
        return self.filesystem.open_input_file(self.path)


def _s3(bucket: str) -> Any:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return pa_fs.S3FileSystem(endpoint_override=endpoint, region=region)
    # From the URI, pyarrow asks AWS for the bucket's region: no AWS_REGION to match.
    return pa_fs.FileSystem.from_uri(f"s3://{bucket}")[0]


def _gcs(bucket: str) -> Any:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        parsed = urllib.parse.urlsplit(emulator if "://" in emulator else f"http://{emulator}")
        return pa_fs.GcsFileSystem(
            anonymous=True,
            scheme=parsed.scheme,
            endpoint_override=parsed.netloc,
            retry_time_limit=_GCS_RETRIES,
        )
    return pa_fs.GcsFileSystem(retry_time_limit=_GCS_RETRIES)


_STORES: dict[str, Callable[[str], Any]] = {"s3": _s3, "gs": _gcs, "gcs": _gcs}


def _pattern(key: str) -> re.Pattern[str]:
    """A key glob as a regular expression: ``*``, ``?`` and ``[...]`` within a level, ``**`` across."""
    out, i = [], 0
    while i < len(key):
        char = key[i]
        if key.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif key.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and (end := key.find("]", i + 2)) != -1:
            body = key[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out))


def _resolve_store(spec: str, scheme: str, bucket: str, key: str) -> list[DataInput]:
    if pa is None:
        raise DataError(
            f"{spec}: reading {scheme}:// needs pyarrow: pip install 'driftgauge[parquet]'"
        )
    filesystem = _STORES[scheme](bucket)
    prefix = f"{scheme}://{bucket}/"

    def stored(path: str, size: int) -> DataInput:
        suffix = Path(path).suffix
        return _input(
            prefix + path.partition("/")[2], suffix, size, _StoredObject(filesystem, path)
        )

    info = filesystem.get_file_info(f"{bucket}/{key}".rstrip("/"))
    if info.type == pa_fs.FileType.File:  # first, as for a local path: data[1].csv is a name
        return [stored(info.path, info.size)]
    glob_at = _GLOB_CHARS.search(key)
    if glob_at is not None:
        base = _glob_base(key, glob_at.start())
        pattern = _pattern(key)
        listed = _listing(filesystem, f"{bucket}/{base}".rstrip("/"))
        matches = [
            info
            for info in listed
            if pattern.fullmatch(name := info.path.partition("/")[2])
            and _glob_keeps(key[len(base) :], name[len(base) :])
        ]
        if not matches:
            _check_bucket(spec, filesystem, bucket)
            raise DataError(f"{spec}: no object matches")
        return [stored(info.path, info.size) for info in matches]
    if info.type == pa_fs.FileType.Directory:
        found = [
            i
            for i in _listing(filesystem, info.path)
            if _data_file(i.path.removeprefix(info.path).lstrip("/"))
        ]
        if not found:
            raise DataError(
                f"{spec}: no data files ({', '.join(sorted(FORMATS))}) under the prefix"
            )
        return [stored(i.path, i.size) for i in found]
    _check_bucket(spec, filesystem, bucket)
    raise DataError(f"{spec}: no such object or prefix")


def _check_bucket(spec: str, filesystem: Any, bucket: str) -> None:
    if filesystem.get_file_info(bucket).type == pa_fs.FileType.NotFound:
        raise DataError(f"{spec}: no such bucket {bucket!r}")


def _listing(filesystem: Any, base: str) -> list[Any]:
    """The files under ``base`` (bucket/prefix), sorted; none when it does not exist."""
    selector = pa_fs.FileSelector(base, recursive=True, allow_not_found=True)
    infos = filesystem.get_file_info(selector)
    return sorted((i for i in infos if i.type == pa_fs.FileType.File), key=lambda i: i.path)


# --- HTTP(S) ------------------------------------------------------------------------------------


class _HttpReader(io.RawIOBase):
    """A remote file read by one GET from the position; a seek elsewhere starts a ranged GET."""

    def __init__(self, url: str, size: int) -> None:
        super().__init__()
        self._url = url
        self._size = size
        self._position = 0
        self._response: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END and self._size <= 0:
            raise OSError("the server does not say the file's size (Parquet needs it)")
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        target = start + offset
        if target != self._position:
            self._drop()
            self._position = target
        return target

    def readinto(self, buffer: Any) -> int:
        if 0 < self._size <= self._position:
            return 0
        if self._response is None:
            self._response = _get(self._url, self._position)
        count = int(self._response.readinto(buffer))
        self._position += count
        return count

    def close(self) -> None:
        self._drop()
        super().close()

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None


def split_credentials(url: str) -> tuple[str, dict[str, str], str]:
    """``url`` without its user and password, the HTTP Basic header they make, and ``url``
    as messages show it (the password hidden); urllib would take them for the host name."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, {}, url
    user, colon, password = userinfo.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
    header = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    shown = parts._replace(netloc=f"{user}{':***' if colon else ''}@{host}")
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), header, shown.geturl()


def _get(url: str, start: int, end: int | None = None) -> Any:
    """The answer to a GET of ``url`` from byte ``start`` (to ``end``, inclusive)."""
    url, headers, _ = split_credentials(url)
    if start or end is not None:
        headers["Range"] = f"bytes={start}-{'' if end is None else end}"
    response = urllib.request.urlopen(
        urllib.request.Request(url, headers=headers), timeout=HTTP_TIMEOUT
    )
    if start and response.status != 206:
        response.close()
        raise OSError("the server does not answer Range requests (Parquet needs them)")
    return response


@dataclass(frozen=True, slots=True)
class _HttpFile:
    url: str
    size: int

    def open(self) -> IO[bytes]:
        return io.BufferedReader(_HttpReader(self.url, self.size), _BUFFER)

    def open_arrow(self) -> Any:
        return pa.PythonFile(self.open(), mode="r")


_CONTENT_RANGE = re.compile(r"bytes \d+-\d+/(\d+)")


def _resolve_http(url: str) -> DataInput:
    shown = split_credentials(url)[2]
    suffix = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).suffix
    data_format(shown, suffix)
    # A one-byte GET rather than HEAD: pre-signed URLs are often signed for GET only.
    try:
        with _get(url, 0, 0) as response:
            ranged = response.status == 206
            total = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            length = response.headers.get("Content-Length")
            size = (
                int(total.group(1)) if total else int(length) if length and length.isdigit() else 0
            )
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DataError(f"{shown}: the server answered {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or exc.reason
        raise DataError(f"{shown}: cannot reach the server: {reason}") from None
    except OSError as exc:  # a timeout, a dropped connection
        raise DataError(f"{shown}: cannot reach the server: {exc}") from None
    return _input(shown, suffix, size, _HttpFile(url, size), ranged)


# --- all of them --------------------------------------------------------------------------------

_SCHEMES = ("file", "gcs", "gs", "http", "https", "s3")


def readable(location: str) -> bool:
    """Whether :func:`resolve_inputs` reads ``location``: a path, or a URL of a scheme it
    knows (Spark's ``s3a://`` and ``hdfs://`` are others)."""
    return "://" not in location or urllib.parse.urlsplit(location).scheme.lower() in _SCHEMES


def resolve_inputs(specs: Sequence[str]) -> list[DataInput]:
    """The data files ``specs`` (paths, globs, directories, URLs) name, in the order given;
    a file two of them name (a glob and a file in it) is an error: its rows would count twice."""
    found: list[DataInput] = []
    named_by: dict[str, int] = {}
    for index, spec in enumerate(specs):
        for item in _resolve(spec):
            key = (
                str(item.location.path.resolve())
                if isinstance(item.location, _LocalFile)
                else item.name
            )
            first = named_by.setdefault(key, index)
            if first != index:
                raise DataError(
                    f"{item.name}: named by --data {specs[first]} and by {spec}: "
                    "each file is read once"
                )
            found.append(item)
    return found


def _resolve(spec: str) -> list[DataInput]:
    if "://" not in spec:
        return _resolve_local(spec)
    parsed = urllib.parse.urlsplit(spec)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return [_resolve_http(spec)]
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):  # file://data/t.csv is /t.csv on host data
            raise DataError(
                f"{spec}: a file URL's host must be empty or localhost, not {parsed.netloc!r} "
                "(file:///absolute/path, or the path itself)"
            )
        return _resolve_local(urllib.parse.unquote(parsed.path))
    if scheme in _STORES:
        bucket, _, key = spec.split("://", 1)[1].partition("/")
        if not bucket:
            raise DataError(f"{spec}: no bucket in the URL")
        try:
            return _resolve_store(spec, scheme, bucket, key)
        except DataError:
            raise
        except (OSError, ValueError) as exc:  # pyarrow's errors: a missing bucket, refused keys
            raise DataError(f"{spec}: {first_line(exc)}") from None
    raise DataError(f"{spec}: unknown scheme {scheme!r} (known: {', '.join(_SCHEMES)})")
