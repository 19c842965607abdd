"""The proxy's native forwarding core (_native.c); see sources/proxy/native.py."""

from collections.abc import Callable

N_COUNTERS: int

Exchange = tuple[int, float, float, float, int, int]
CapturedRecord = tuple[float, bytes, bytes, bytes, bytes | None, bytes, bytes]

class Core:
    def __init__(
        self,
        *,
        listen_fd: int,
        upstream_host: str,
        upstream_port: int,
        host_header: bytes,
        matches: Callable[[str], bool],
        status_lines: tuple[bytes | None, ...],
        timeout: float,
        connect_timeout: float,
        client_timeout: float,
        idle_timeout: float,
        max_body_bytes: int,
        request_id_header: bytes,
        id_prefix: bytes | None,
        rewrite_host: bool,
        scheme: bytes,
        queue_capacity: int,
        queue_bytes: int,
    ) -> None: ...
    @property
    def wake_fd(self) -> int: ...
    @property
    def accept_errno(self) -> int: ...
    def start(self) -> None: ...
    def drain(self) -> None: ...
    def set_upstream(self, host: str, port: int, /) -> None: ...
    def stop(self) -> None: ...
    def in_flight(self) -> int: ...
    def answered(self) -> int: ...
    def set_rate(self, rate: float, /) -> None: ...
    def take(
        self,
    ) -> tuple[list[CapturedRecord], list[Exchange], tuple[int, ...], list[tuple[int, bytes]]]: ...
