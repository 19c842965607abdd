"""gzip bodies joined from precompressed and fresh pieces decode to the pieces' concatenation."""

from __future__ import annotations

import gzip
import zlib

from hypothesis import given
from hypothesis import strategies as st

from driftgauge.exposition.gzipjoin import Deflated, gzip_join

TEXT = b"".join(
    b'driftgauge_bin_observations_total{bin="%d",feature="f"} %d.0\n' % (i, i * 7)
    for i in range(5_000)
)


def _one_member(body: bytes) -> bytes:
    """Decode as a single gzip member, the way aiohttp's and Go's readers see it."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = decoder.decompress(body) + decoder.flush()
    assert decoder.eof
    assert decoder.unused_data == b""
    return data


pieces = st.lists(
    st.tuples(st.binary(max_size=3_000) | st.sampled_from([b"", TEXT]), st.booleans()),
    max_size=6,
)


@given(pieces, st.sampled_from([1, 6, 9]))
def test_joined_pieces_decode_to_their_concatenation(
    parts: list[tuple[bytes, bool]], level: int
) -> None:
    """Any mix of fresh and precompressed pieces (empty ones too) is one valid gzip member."""
    joined = gzip_join([Deflated.of(raw) if pre else raw for raw, pre in parts], level)
    expected = b"".join(raw for raw, _ in parts)
    assert _one_member(joined) == expected
    assert gzip.decompress(joined) == expected


def test_precompressed_blocks_are_reused_not_recompressed() -> None:
    """A precompressed piece's blocks appear verbatim in the joined body."""
    snapshot = Deflated.of(TEXT * 3)
    joined = gzip_join([b"live part\n", snapshot, b"# EOF\n"], 1)
    assert snapshot.blocks in joined
    assert _one_member(joined) == b"live part\n" + TEXT * 3 + b"# EOF\n"


def test_precompressed_level_is_the_default_and_compresses() -> None:
    """Deflated.of compresses a repetitive exposition well (the cached snapshot part)."""
    assert len(Deflated.of(TEXT).blocks) < len(TEXT) / 5
