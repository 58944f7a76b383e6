"""Prefix bloom filters: SlateDB's ``BloomFilterPolicy`` with a prefix extractor (FORMAT.md §3.9).

A bloom filter can hash, besides (or instead of) every row's key, the *extracted prefix* of each
key, so that a scan of one prefix skips SSTs that hold no key with it. The policy object is
:class:`shale.sst.filters.BloomFilterPolicy` (``prefix_extractor=``, ``whole_key_filtering=``);
this module holds what the prefix variant adds: its stored name, its hash list, its reader, and
the prefix a key range lies in.

Invariants and why:

* **The name says which hashes are stored.** ``"_bf"``, then ``":p=<extractor name>"`` when an
  extractor is set, then ``":wh=0"`` when whole-key filtering is off (SlateDB's
  ``compose_name``). A reader trusts a stored filter only when one of *its* policies has exactly
  that name (:func:`shale.sst.filters.open_readers`), so a filter built with another extractor,
  or without the whole keys, is never asked a question it cannot answer.
* **Hash list, in SST order** (:func:`hash_inputs`): for every row, the hash of the key's
  extracted prefix unless it equals the last prefix hashed (SlateDB's builder keeps the last
  hashed prefix; rows without a prefix neither add a hash nor forget it), then the whole key's
  hash when whole-key filtering is on. Duplicate versions of a key hash again. SipHash-1-3 as for
  ``"_bf"``; sizing and probing are those of :mod:`shale.sst.bloom`.
* **Queries never hide a present key.** A point lookup tests the whole key when the filter
  holds whole keys, else the key's extracted prefix; a key without a prefix is "maybe". A
  prefix query asks the extractor with ``scan_prefix=True`` (SlateDB's ``PrefixTarget::Prefix``),
  which promises the same prefix for every extension of the scan prefix, or ``None``: "maybe".
* An extractor returning a length that is not an int in ``[0, len(key)]`` is an
  :class:`~shale.errors.InvalidError` (SlateDB panics), never a silently wrong filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shale.errors import InvalidError
from shale.keys import prefix_end
from shale.sst import bloom

if TYPE_CHECKING:
    from shale.meta.segments import PrefixExtractor

__all__ = [
    "BLOOM_NAME",
    "PrefixBloomReader",
    "WholeKeyPrefixBloomReader",
    "check_bloom_extractor",
    "check_extractor",
    "extracted_len",
    "hash_inputs",
    "parse_policy_name",
    "policy_name",
    "range_prefix",
]

#: SlateDB's ``BloomFilterPolicy::NAME``: the name of the whole-key bloom and the stem of the rest.
BLOOM_NAME = "_bf"
_P = ":p="
_NO_WHOLE = ":wh=0"


def policy_name(extractor_name: str | None, whole_key_filtering: bool) -> str:
    """The stored name of a bloom policy (SlateDB's ``compose_name``): ``"_bf"``,
    ``"_bf:p=fixed4"``, ``"_bf:p=fixed4:wh=0"``."""
    name = BLOOM_NAME
    if extractor_name is not None:
        name += _P + extractor_name
    if not whole_key_filtering:
        name += _NO_WHOLE
    return name


def parse_policy_name(name: str) -> tuple[str | None, bool] | None:
    """``(extractor name or None, whole_key_filtering)`` of a bloom policy name, or ``None``
    when ``name`` is not one (:func:`policy_name` inverted)."""
    whole = not name.endswith(_NO_WHOLE)
    stem = name if whole else name[: -len(_NO_WHOLE)]
    if stem == BLOOM_NAME:
        return None, whole
    if stem.startswith(BLOOM_NAME + _P) and len(stem) > len(BLOOM_NAME + _P):
        return stem[len(BLOOM_NAME + _P) :], whole
    return None


def check_extractor(extractor: Any) -> PrefixExtractor:
    """``extractor`` if it looks like a prefix extractor (SlateDB's ``PrefixExtractor``, for
    segments and prefix blooms alike): a non-empty ``str`` ``name`` (an attribute, as
    :class:`shale.meta.segments.PrefixExtractor` has it) and a callable ``prefix_len``.

    :raises InvalidError: otherwise.
    """
    name = getattr(extractor, "name", None)
    if callable(name):  # an official-style ``name()`` method
        raise InvalidError(
            "a prefix extractor's name is an attribute or property, not a method",
            type=type(extractor).__name__,
        )
    if not isinstance(name, str) or not name:
        raise InvalidError(
            "a prefix extractor needs a non-empty str name", type=type(extractor).__name__
        )
    if not callable(getattr(extractor, "prefix_len", None)):
        raise InvalidError("a prefix extractor needs prefix_len(key)", name=name)
    return extractor  # type: ignore[no-any-return]


def check_bloom_extractor(extractor: Any) -> PrefixExtractor:
    """:func:`check_extractor`, and a name that does not end with ``":wh=0"`` (the policy
    name would be ambiguous).

    :raises InvalidError: otherwise.
    """
    checked = check_extractor(extractor)
    if checked.name.endswith(_NO_WHOLE):
        raise InvalidError(
            "a prefix extractor's name must not end with ':wh=0' (filter names would clash)",
            name=checked.name,
        )
    return checked


def extracted_len(extractor: PrefixExtractor, key: bytes, scan_prefix: bool = False) -> int | None:
    """``extractor.prefix_len`` of ``key`` (a whole key, or with ``scan_prefix`` a scan prefix),
    checked.

    :raises InvalidError: the extractor returned anything but ``None`` or an int in
        ``[0, len(key)]``.
    """
    n = extractor.prefix_len(key, scan_prefix=True) if scan_prefix else extractor.prefix_len(key)
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(key):
        raise InvalidError(
            "the prefix extractor returned an invalid prefix length",
            extractor=extractor.name,
            prefix_len=n,
            key_len=len(key),
        )
    return n


def hash_inputs(
    keys: Sequence[bytes], extractor: PrefixExtractor, whole_key_filtering: bool
) -> list[bytes]:
    """The byte strings a prefix bloom filter hashes, in order, for the rows' ``keys`` (every
    row's key in SST order): each new extracted prefix, then (``whole_key_filtering``) the key.

    :raises InvalidError: the extractor returned an invalid length (:func:`extracted_len`).
    """
    out: list[bytes] = []
    append = out.append
    last: bytes | None = None
    for key in keys:
        n = extracted_len(extractor, key)
        if n is not None:
            prefix = bytes(key[:n])
            if prefix != last:
                append(prefix)
                last = prefix
        if whole_key_filtering:
            append(key)
    return out


class PrefixBloomReader:
    """A decoded prefix bloom filter whose whole keys are not stored (``":wh=0"``).

    ``may_contain(key)`` tests the key's extracted prefix; ``may_contain_prefix(prefix)`` tests a
    scan prefix. Both answer ``True`` ("maybe") when the extractor gives no prefix.
    """

    __slots__ = ("_extractor", "_filter")

    def __init__(self, data: bytes, extractor: PrefixExtractor) -> None:
        self._filter = bloom.BloomFilter(data)
        self._extractor = extractor

    def may_contain(self, key: bytes) -> bool:
        """``False`` only if no row of the SST has ``key``'s extracted prefix."""
        n = extracted_len(self._extractor, key)
        return True if n is None else bool(self._filter.may_contain_hash(bloom.siphash13(key[:n])))

    def may_contain_prefix(self, prefix: bytes) -> bool:
        """``False`` only if no key of the SST starts with ``prefix``."""
        n = extracted_len(self._extractor, prefix, scan_prefix=True)
        if n is None:
            return True
        return bool(self._filter.may_contain_hash(bloom.siphash13(prefix[:n])))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extractor.name!r}, {self._filter!r})"


class WholeKeyPrefixBloomReader(PrefixBloomReader):
    """A decoded prefix bloom filter that stores the whole keys too: point lookups test the
    whole key's hash (:meth:`bloom_probe` lets them do it without a Python frame)."""

    __slots__ = ()

    def may_contain(self, key: bytes) -> bool:
        """``False`` only if ``key`` is surely not in the SST."""
        return bool(self._filter.may_contain_hash(bloom.siphash13(key)))

    def bloom_probe(self) -> tuple[Any, Any]:
        """``(bloom, hash_fn)``: :meth:`may_contain` is ``bloom.may_contain_hash(hash_fn(key))``."""
        return self._filter, bloom.siphash13


def range_prefix(start: bytes | None, end: bytes | None) -> bytes | None:
    """The longest ``p`` such that every key in ``[start, end)`` starts with ``p`` (``None``:
    only the empty one, or an empty range): a scan of that range may skip every SST whose
    prefix filter rules ``p`` out. ``scan_prefix(p)`` gives back ``p``.
    """
    if start is None or not start or (end is not None and end <= start):
        return None
    if end is None:
        common = 0
    else:
        common = 0
        limit = min(len(start), len(end))
        while common < limit and start[common] == end[common]:
            common += 1
    # start[:n] qualifies iff end <= start[:n]++ (``None``: unbounded); every n <= common
    # does (end extends start[:n] then), and qualifying is monotone in n
    n = common
    while n < len(start):
        after = prefix_end(start[: n + 1])
        if after is not None and (end is None or end > after):
            break
        n += 1
    return start[:n] if n else None
