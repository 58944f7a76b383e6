"""Block compression codecs and the chunk framing every SST section uses (FORMAT.md 3.2-3.3).

A chunk is ``T(C(payload)) || crc32(T(C(payload)))`` with the CRC as ``u32be``: compress, then
apply the optional block transformer, then checksum the stored bytes. Reading reverses it and
checks the CRC first, so corrupt bytes raise :class:`~shale.errors.DataError` before any
decompressor sees them.

Codecs, by the id stored in ``SsTableInfo.compression_format``:

===  ======  ==============================================================
id   name    framing (must match SlateDB's Rust writers)
===  ======  ==============================================================
0    none    the payload as is
1    snappy  raw snappy block (``python-snappy``; optional extra ``[snappy]``)
2    zlib    zlib stream, level 6 (stdlib)
3    lz4     ``u32le`` uncompressed size + one raw LZ4 block (``lz4.block``)
4    zstd    one zstd frame, level 3, content size recorded (``zstandard``;
             optional extra ``[zstd]``)
===  ======  ==============================================================
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Protocol

from shale.errors import DataError, InvalidError

NONE = 0
SNAPPY = 1
ZLIB = 2
LZ4 = 3
ZSTD = 4

CODEC_NAMES = {NONE: "none", SNAPPY: "snappy", ZLIB: "zlib", LZ4: "lz4", ZSTD: "zstd"}
CODEC_IDS = {name: cid for cid, name in CODEC_NAMES.items()}

#: Refuse to inflate a chunk beyond this (a corrupt size prefix must not allocate gigabytes).
MAX_UNCOMPRESSED = 1 << 31

_CRC = struct.Struct(">I")


class BlockTransformer(Protocol):
    """A reversible transform applied after compression (for example encryption).

    Every reader and writer of a database must be configured with the same transformer; the
    files do not record it.
    """

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


def codec_id(codec: int | str | None) -> int:
    """Normalise a codec given as id, name (case-insensitive) or ``None`` (no compression).

    :raises InvalidError: unknown codec.
    """
    if codec is None:
        return NONE
    if isinstance(codec, int) and not isinstance(codec, bool):
        if codec in CODEC_NAMES:
            return codec
    elif isinstance(codec, str) and codec.lower() in CODEC_IDS:
        return CODEC_IDS[codec.lower()]
    raise InvalidError(
        "unknown compression codec; use none, snappy, zlib, lz4 or zstd", codec=codec
    )


def _missing(name: str, extra: str) -> InvalidError:
    return InvalidError(
        f"the {name} codec needs an optional library: pip install 'shale-core[{extra}]'",
        codec=name,
    )


def _snappy() -> Any:
    try:
        import snappy
    except ImportError:
        raise _missing("snappy", "snappy") from None
    return snappy


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise _missing("zstd", "zstd") from None
    return zstandard


def check_available(codec: int | str | None) -> int:
    """The codec's id, once its library is known to import (writers call this when they open).

    Without it a missing optional extra is found only by the first background upload, which
    then fails the database.

    :raises InvalidError: unknown codec, or its library is not installed (naming the extra).
    """
    cid = codec_id(codec)
    if cid == SNAPPY:
        _snappy()
    elif cid == ZSTD:
        _zstd()
    elif cid == LZ4:
        try:
            import lz4.block  # noqa: F401
        except ImportError:
            raise InvalidError(
                "the lz4 codec needs the lz4 library (a shale-core dependency): pip install lz4",
                codec="lz4",
            ) from None
    return cid


def compress(codec: int, data: bytes) -> bytes:
    """Compress ``data`` the way SlateDB frames codec ``codec``."""
    if codec == NONE:
        return data
    if codec == LZ4:
        import lz4.block

        out: bytes = lz4.block.compress(data, store_size=True)
        return out
    if codec == ZLIB:
        return zlib.compress(data, 6)
    if codec == SNAPPY:
        out = _snappy().compress(data)
        return out
    if codec == ZSTD:
        out = _zstd().ZstdCompressor(level=3, write_content_size=True).compress(data)
        return out
    raise InvalidError("unknown compression codec", codec=codec)


def decompress(codec: int, data: bytes) -> bytes:
    """Inverse of :func:`compress`. :raises DataError: the bytes do not decode."""
    if codec == NONE:
        return data
    try:
        if codec == LZ4:
            import lz4.block

            if len(data) < 4:
                raise DataError("lz4 chunk shorter than its size prefix", length=len(data))
            size = int.from_bytes(data[:4], "little")
            if size > MAX_UNCOMPRESSED:
                raise DataError("lz4 chunk declares an implausible size", size=size)
            out: bytes = lz4.block.decompress(data)
            return out
        if codec == ZLIB:
            d = zlib.decompressobj()
            out = d.decompress(data, MAX_UNCOMPRESSED)
            if not d.eof or d.unused_data or d.unconsumed_tail:
                raise DataError("zlib chunk is truncated or has trailing bytes")
            return out
        if codec == SNAPPY:
            snappy = _snappy()
            out = snappy.decompress(data)
            return bytes(out)
        if codec == ZSTD:
            dctx = _zstd().ZstdDecompressor()
            parts = []
            rest = data
            while True:  # every frame, like SlateDB's streaming decoder
                dobj = dctx.decompressobj()
                parts.append(dobj.decompress(rest))
                if not dobj.eof:
                    raise DataError("zstd chunk is truncated")
                rest = dobj.unused_data
                if not rest:
                    return b"".join(parts)
    except (DataError, InvalidError):
        raise
    except Exception as exc:  # each library has its own error types
        raise DataError(
            "compressed chunk does not decode", codec=CODEC_NAMES.get(codec, codec), error=str(exc)
        ) from exc
    raise DataError("unknown compression codec in SST", codec=codec)


def frame_chunk(payload: bytes, codec: int, transformer: BlockTransformer | None = None) -> bytes:
    """``T(C(payload)) || u32be crc32`` -- one stored SST section."""
    stored = compress(codec, payload)
    if transformer is not None:
        stored = transformer.encode(stored)
    return stored + _CRC.pack(zlib.crc32(stored))


def unframe_chunk(
    chunk: bytes, codec: int, transformer: BlockTransformer | None = None, *, what: str = "block"
) -> bytes:
    """Check a chunk's CRC, un-transform and decompress it.

    :raises DataError: short chunk, checksum mismatch, or bytes that do not decode.
    """
    if len(chunk) < 4:
        raise DataError(f"SST {what} is shorter than its checksum", length=len(chunk))
    stored = chunk[:-4]
    (want,) = _CRC.unpack_from(chunk, len(chunk) - 4)
    got = zlib.crc32(stored)
    if got != want:
        raise DataError(
            f"SST {what} checksum mismatch", stored=f"{want:08x}", computed=f"{got:08x}"
        )
    if transformer is not None:
        try:
            stored = transformer.decode(stored)
        except Exception as exc:
            raise DataError(
                f"block transformer could not decode the {what}", error=str(exc)
            ) from exc
    return decompress(codec, stored)
