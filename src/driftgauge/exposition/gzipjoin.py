"""gzip bodies joined from pieces, some of them compressed ahead of time.

A gzip member is a header, raw deflate blocks and a trailer holding the
CRC-32 and length of the uncompressed data.  Deflate blocks that end with a
sync flush end on a byte boundary and refer back only to their own data, so
blocks compressed at different times can follow one another in one stream.
``/metrics`` uses this to compress its snapshot part (most of the body) once
per recompute, while each scrape compresses only its live part.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Deflated", "gzip_join"]

# Magic, deflate, no flags, no modification time, no extra flags, unknown OS (RFC 1952).
_HEADER = struct.pack("<BBBBIBB", 0x1F, 0x8B, zlib.DEFLATED, 0, 0, 0, 255)


def _raw_compressor(level: int) -> zlib._Compress:
    return zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)


@dataclass(frozen=True, slots=True)
class Deflated:
    """``raw`` and its deflate blocks, sync-flushed so that more blocks may follow."""

    raw: bytes
    blocks: bytes

    @classmethod
    def of(cls, raw: bytes, level: int = 6) -> Deflated:
        compressor = _raw_compressor(level)
        return cls(raw, compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH))

    @classmethod
    def pair(cls, text: bytes, openmetrics: bytes) -> tuple[Deflated, Deflated]:
        """Both formats of one part, compressed once when they are the same bytes."""
        deflated = cls.of(text)
        return deflated, (deflated if openmetrics == text else cls.of(openmetrics))


def gzip_join(pieces: Sequence[bytes | Deflated], level: int) -> bytes:
    """One gzip member holding the pieces one after the other.

    ``bytes`` pieces are compressed now, at ``level`` (adjacent ones together);
    :class:`Deflated` pieces reuse their blocks, and only their CRC is computed.
    """
    out = [_HEADER]
    crc, size = 0, 0
    compressor: zlib._Compress | None = None
    for piece in pieces:
        raw = piece.raw if isinstance(piece, Deflated) else piece
        crc = zlib.crc32(raw, crc)
        size += len(raw)
        if isinstance(piece, Deflated):
            if compressor is not None:
                out.append(compressor.flush(zlib.Z_SYNC_FLUSH))
                compressor = None
            out.append(piece.blocks)
            continue
        if compressor is None:
            compressor = _raw_compressor(level)
        out.append(compressor.compress(piece))
    # The final block (empty when the last piece was precompressed) ends the stream.
    out.append((compressor or _raw_compressor(level)).flush(zlib.Z_FINISH))
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(out)
