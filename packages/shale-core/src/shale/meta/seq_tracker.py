"""The sequence tracker: a bounded map between seqs and wall-clock seconds (RFC-0012).

It lets Admin answer "which seq was current at time T" and back. The manifest stores it as
``sequence_tracker`` bytes (FORMAT.md section 7)::

    u8 version = 1 ‖ u32le n ‖ G(seqs) ‖ G(timestamps)

where ``G`` is a Gorilla delta-of-delta bitstream (MSB first, each stream padded to a byte):
a 32-bit count, the first value in 64 bits, then per value a prefix-coded delta-of-delta
(``0`` | ``10``+7 | ``110``+9 | ``1110``+12 | ``1111``+32 bits). Arithmetic wraps like Rust's
release build (i64), and the 32-bit branch keeps only the low 32 bits of the delta-of-delta,
exactly as SlateDB does, so :meth:`SequenceTracker.encode` reproduces SlateDB's bytes.

Invariants: both arrays are non-decreasing and equally long; at most :data:`DEFAULT_CAPACITY`
entries (on overflow every other entry is kept: indices 0, 2, 4, ...); a new pair is recorded
only if at least ``interval_s`` seconds passed since the last one recorded *by this instance*.
Lookups use Rust's ``slice::binary_search`` algorithm so that, with duplicate keys, they pick
the same entry SlateDB does.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence

from shale.errors import DataError, InvalidError

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_INTERVAL_S",
    "EMPTY_ENCODED",
    "SequenceTracker",
]

logger = logging.getLogger(__name__)

#: Maximum number of (seq, ts) pairs kept.
DEFAULT_CAPACITY = 8192
#: Minimum seconds between two recorded pairs.
DEFAULT_INTERVAL_S = 60
#: The encoding of an empty tracker (13 bytes).
EMPTY_ENCODED = b"\x01" + bytes(12)

_VERSION = 1
_M64 = (1 << 64) - 1
_PAYLOAD_BITS = {1: 7, 2: 9, 3: 12, 4: 32}


def _wrap_i64(v: int) -> int:
    v &= _M64
    return v - (1 << 64) if v >> 63 else v


def _gorilla_encode(values: Sequence[int], out: list[str]) -> None:
    """Append the bit string of ``G(values)`` (values are i64) to ``out``, byte-padded."""
    bits: list[str] = [format(len(values), "032b")]
    if values:
        bits.append(format(values[0] & _M64, "064b"))
        prev = values[0]
        prev_delta = 0
        for v in values[1:]:
            delta = _wrap_i64(v - prev)
            dod = _wrap_i64(delta - prev_delta)
            if dod == 0:
                bits.append("0")
            elif -63 <= dod <= 63:
                bits.append("10" + format(dod & 0x7F, "07b"))
            elif -255 <= dod <= 255:
                bits.append("110" + format(dod & 0x1FF, "09b"))
            elif -2047 <= dod <= 2047:
                bits.append("1110" + format(dod & 0xFFF, "012b"))
            else:
                bits.append("1111" + format(dod & 0xFFFF_FFFF, "032b"))
            prev = v
            prev_delta = delta
    s = "".join(bits)
    out.append(s + "0" * (-len(s) % 8))


def _gorilla_decode(bits: str, pos: int) -> tuple[list[int], int]:
    """Decode one ``G`` stream from bit string ``bits`` at bit ``pos``.

    Returns the i64 values and the bit position after the stream's byte padding.
    """
    end = len(bits)
    if pos + 32 > end:
        raise DataError("sequence tracker truncated: no count")
    count = int(bits[pos : pos + 32], 2)
    pos += 32
    values: list[int] = []
    if count:
        # Each further value takes at least one bit: reject impossible counts up front.
        if pos + 64 + (count - 1) > end:
            raise DataError("sequence tracker truncated", count=count)
        prev = int(bits[pos : pos + 64], 2)
        prev = prev - (1 << 64) if prev >> 63 else prev
        pos += 64
        values.append(prev)
        prev_delta = 0
        for _ in range(count - 1):
            if pos >= end:
                raise DataError("sequence tracker truncated in a prefix")
            if bits[pos] == "0":
                pos += 1
                dod = 0
            else:
                ones = 1
                pos += 1
                while ones < 4:
                    if pos >= end:
                        raise DataError("sequence tracker truncated in a prefix")
                    bit = bits[pos]
                    pos += 1
                    if bit == "1":
                        ones += 1
                    else:
                        break
                n = _PAYLOAD_BITS[ones]
                if pos + n > end:
                    raise DataError("sequence tracker truncated in a delta", bits=n)
                raw = int(bits[pos : pos + n], 2)
                pos += n
                dod = raw - (1 << n) if raw >> (n - 1) else raw
            delta = _wrap_i64(prev_delta + dod)
            prev = _wrap_i64(prev + delta)
            values.append(prev)
            prev_delta = delta
    pos += -pos % 8
    return values, pos


def _rust_binary_search(arr: Sequence[int], x: int) -> tuple[bool, int]:
    """Rust ``slice::binary_search`` (1.82+): ``(found, index)``, deterministic on ties."""
    size = len(arr)
    if size == 0:
        return False, 0
    base = 0
    while size > 1:
        half = size // 2
        mid = base + half
        if not arr[mid] > x:
            base = mid
        size -= half
    v = arr[base]
    if v == x:
        return True, base
    return False, base + (1 if v < x else 0)


class SequenceTracker:
    """Paired, non-decreasing arrays of seqs (u64) and timestamps (i64 Unix seconds)."""

    __slots__ = ("_capacity", "_interval_s", "_last_recorded_ts", "_seqs", "_timestamps")

    def __init__(
        self,
        seqs: Sequence[int] = (),
        timestamps: Sequence[int] = (),
        *,
        capacity: int = DEFAULT_CAPACITY,
        interval_s: int = DEFAULT_INTERVAL_S,
    ) -> None:
        """Build a tracker holding the given pairs (validated) with the given policy.

        :raises InvalidError: arrays of different lengths, out of range or decreasing.
        """
        seqs = list(seqs)
        timestamps = list(timestamps)
        if len(seqs) != len(timestamps):
            raise InvalidError("seqs and timestamps differ in length")
        if capacity < 1 or interval_s < 0:
            raise InvalidError("bad tracker policy", capacity=capacity, interval_s=interval_s)
        for i, (s, t) in enumerate(zip(seqs, timestamps, strict=True)):
            if not 0 <= s <= _M64 or not -(1 << 63) <= t < (1 << 63):
                raise InvalidError("seq or timestamp out of range", seq=s, ts=t)
            if i and (s < seqs[i - 1] or t < timestamps[i - 1]):
                raise InvalidError("seqs and timestamps must be non-decreasing", index=i)
        self._seqs = seqs
        self._timestamps = timestamps
        self._capacity = capacity
        self._interval_s = interval_s
        self._last_recorded_ts: int | None = None

    # -- contents --------------------------------------------------------------------------

    @property
    def seqs(self) -> tuple[int, ...]:
        return tuple(self._seqs)

    @property
    def timestamps(self) -> tuple[int, ...]:
        return tuple(self._timestamps)

    def __len__(self) -> int:
        return len(self._seqs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SequenceTracker):
            return NotImplemented
        return self._seqs == other._seqs and self._timestamps == other._timestamps

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SequenceTracker(n={len(self._seqs)})"

    # -- updates ---------------------------------------------------------------------------

    def insert(self, seq: int, ts_s: int) -> None:
        """Record ``(seq, ts_s)`` unless less than ``interval_s`` passed since the last one
        this instance recorded; then halve the arrays if over capacity.

        :raises InvalidError: ``seq`` or ``ts_s`` smaller than the last entry.
        """
        last = self._last_recorded_ts
        if last is not None and ts_s - last < self._interval_s:
            return
        if self._seqs and seq < self._seqs[-1]:
            raise InvalidError("sequence numbers must be monotonic", seq=seq, last=self._seqs[-1])
        if self._timestamps and ts_s < self._timestamps[-1]:
            raise InvalidError("timestamps must be monotonic", ts=ts_s, last=self._timestamps[-1])
        if not 0 <= seq <= _M64:
            raise InvalidError("seq out of u64 range", seq=seq)
        self._seqs.append(seq)
        self._timestamps.append(ts_s)
        self._last_recorded_ts = ts_s
        if len(self._seqs) > self._capacity:
            self._seqs = self._seqs[::2]
            self._timestamps = self._timestamps[::2]

    def extend_from(self, other: SequenceTracker) -> None:
        """Insert every pair of ``other`` in order (how an L0 flush merges a memtable's)."""
        for s, t in zip(other._seqs, other._timestamps, strict=True):
            self.insert(s, t)

    # -- lookups ---------------------------------------------------------------------------

    def find_ts(self, seq: int, round_up: bool) -> int | None:
        """The timestamp (s) recorded for ``seq``; without an exact match, that of the next
        higher (``round_up``) or next lower seq; ``None`` if there is none."""
        found, idx = _rust_binary_search(self._seqs, seq)
        if found:
            return self._timestamps[idx]
        if round_up:
            return self._timestamps[idx] if idx < len(self._seqs) else None
        return self._timestamps[idx - 1] if idx > 0 else None

    def find_seq(self, ts_s: int, round_up: bool) -> int | None:
        """The seq recorded at ``ts_s``; without an exact match, that of the next later
        (``round_up``) or next earlier timestamp; ``None`` if there is none."""
        found, idx = _rust_binary_search(self._timestamps, ts_s)
        if found:
            return self._seqs[idx]
        if round_up:
            return self._seqs[idx] if idx < len(self._timestamps) else None
        return self._seqs[idx - 1] if idx > 0 else None

    # -- bytes -----------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The RFC-0012 bytes SlateDB stores in the manifest."""
        parts: list[str] = []
        _gorilla_encode([_wrap_i64(s) for s in self._seqs], parts)
        _gorilla_encode(self._timestamps, parts)
        bits = "".join(parts)
        body = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
        return bytes([_VERSION]) + struct.pack("<I", len(self._seqs)) + body

    @classmethod
    def decode(
        cls,
        data: bytes,
        *,
        capacity: int = DEFAULT_CAPACITY,
        interval_s: int = DEFAULT_INTERVAL_S,
    ) -> SequenceTracker:
        """Parse RFC-0012 bytes. Trailing bytes after the timestamp stream are ignored, as
        SlateDB does.

        :raises DataError: unknown version, truncated streams, or counts that disagree.
        """
        data = bytes(data)
        if not data:
            raise DataError("sequence tracker is empty")
        if data[0] != _VERSION:
            raise DataError("unsupported sequence tracker version", version=data[0])
        if len(data) < 5:
            raise DataError("sequence tracker too short for its length", size=len(data))
        n = struct.unpack_from("<I", data, 1)[0]
        rest = data[5:]
        bits = format(int.from_bytes(rest, "big"), f"0{8 * len(rest)}b") if rest else ""
        seqs, pos = _gorilla_decode(bits, 0)
        if len(seqs) != n:
            raise DataError("sequence tracker seq count mismatch", expected=n, got=len(seqs))
        timestamps, _ = _gorilla_decode(bits, pos)
        if len(timestamps) != n:
            raise DataError("sequence tracker ts count mismatch", expected=n, got=len(timestamps))
        tracker = cls.__new__(cls)
        tracker._seqs = [s & _M64 for s in seqs]
        tracker._timestamps = timestamps
        tracker._capacity = capacity
        tracker._interval_s = interval_s
        tracker._last_recorded_ts = None
        return tracker
