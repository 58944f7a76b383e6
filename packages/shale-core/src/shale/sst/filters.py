"""Filter policies and the composite filter block of an SST (FORMAT.md §3.9).

A *filter policy* turns the keys of a new compacted SST into one opaque filter and later answers
"may this key be in the SST?" from those bytes. An SST stores every filter it carries in one
*composite* payload, each under its policy's name::

    u16be num_filters
    repeat num_filters:  u16be name_len ‖ name (UTF-8) ‖ u64be data_len ‖ data

Invariants and why:

* **Names are the compatibility contract.** A reader consults a stored filter only when it has a
  policy of exactly that name; anything else is skipped, never guessed at. This is how a shale
  reader survives SSTs written by newer SlateDB versions, other plugins, or other prefix
  extractors: a ``"_bf:p=fixed4:wh=0"`` filter is ignored by a reader configured with
  ``"_bf:p=fixed4"`` or ``"_bf"``, so the lookup falls back to reading blocks. The SST layer
  does this with :func:`policies_by_name` (or :func:`open_readers`).
* **A filter may say "maybe", never "no" for a present key.** A key is surely absent from an SST
  iff *some* known filter says so.
* :class:`BloomFilterPolicy` (``"_bf"``) is byte-for-byte SlateDB's bloom: SipHash-1-3 hashes,
  one per row (duplicate versions of a key hash again), 10 bits per key by default. With a
  ``prefix_extractor`` it is SlateDB's *prefix* bloom (``"_bf:p=<extractor name>"``, plus
  ``":wh=0"`` without whole-key filtering): it also hashes each key's extracted prefix, and its
  readers answer ``may_contain_prefix(prefix)``, which lets scans inside one prefix skip SSTs
  (:mod:`shale.sst.prefix_bloom` has the exact hash list and queries).
* :class:`Mmh3BloomFilterPolicy` (``"shale.mmh3_bloom"``) is shale's own: the same encoding and
  probing with the MurmurHash3 hash described on the class. SlateDB does not know its name and
  skips it. Its name deliberately does not start with ``"_bf"``.
* ``bits_per_key`` is not part of any name: it changes the false-positive rate, not the
  encoding, and every reader decodes every ``bits_per_key`` (``num_probes`` is stored).

The built-in policies are offered through the ``shale_filter_policy`` hook; this module is
registered by :mod:`shale.plugins` as the built-in plugin ``"shale.filters"``. Prefix bloom
names in ``Settings.filter_policies`` are resolved by the plugin host, which finds the extractor
through ``shale_prefix_extractor`` (:meth:`shale.plugins.PluginHost.configured_filter_policies`).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import mmh3

import shale
from shale.errors import DataError, InvalidError
from shale.sst import bloom, prefix_bloom

if TYPE_CHECKING:
    from shale.meta.segments import PrefixExtractor

__all__ = [
    "DEFAULT_BITS_PER_KEY",
    "DEFAULT_POLICY_NAMES",
    "BloomFilterPolicy",
    "FilterPolicy",
    "FilterReader",
    "Mmh3BloomFilterPolicy",
    "decode_composite",
    "encode_composite",
    "mmh3_hash",
    "open_readers",
    "policies_by_name",
    "shale_filter_policy",
]

log = logging.getLogger(__name__)

#: SlateDB's default bits per key for its bloom filter (6 probes, about 0.8 % false positives).
DEFAULT_BITS_PER_KEY = 10
#: Names of the policies written to new SSTs unless the settings choose otherwise.
DEFAULT_POLICY_NAMES: tuple[str, ...] = ("_bf",)

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_U16_MAX = 0xFFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


@runtime_checkable
class FilterReader(Protocol):
    """A decoded filter that answers membership queries for whole keys.

    A reader that can also rule out a whole key *prefix* (a prefix bloom's) has
    ``may_contain_prefix(prefix) -> bool`` as well: ``False`` only if no key of the SST starts
    with ``prefix``. Scans inside one prefix skip the SSTs it rules out; its policy then has a
    ``prefix_extractor`` attribute that is not ``None``.
    """

    def may_contain(self, key: bytes) -> bool:
        """``False`` only if ``key`` is surely not in the SST; ``True`` means "maybe"."""
        ...


@runtime_checkable
class FilterPolicy(Protocol):
    """A named way to build and read one filter of an SST; the plugin-facing interface.

    Plugins return instances from the ``shale_filter_policy`` hook.

    ``name`` identifies the encoding and everything that changes which keys a filter answers
    for (it is stored next to the data in the composite block). It must be non-empty, at most
    65535 UTF-8 bytes, and must not start with ``"_bf"`` unless it is SlateDB's bloom. Two
    policies with the same name must be able to read each other's data.
    """

    @property
    def name(self) -> str:
        """The stored name of this policy's filters."""
        ...

    def build(self, keys: Sequence[bytes]) -> bytes:
        """Build the filter data for a new SST.

        :param keys: every row's key in SST order (several versions of a key appear several
            times, and a policy that hashes per row hashes each occurrence).
        :return: the filter data stored under :attr:`name`.
        """
        ...

    def reader(self, data: bytes) -> FilterReader:
        """Decode filter data once for many queries.

        :raises DataError: when ``data`` is malformed.
        """
        ...


class _HashedBloomReader:
    """A :class:`FilterReader` over a parsed bloom filter and the hash its policy uses."""

    __slots__ = ("_filter", "_hash")

    def __init__(self, data: bytes, hash_fn: Any) -> None:
        self._filter = bloom.BloomFilter(data)
        self._hash = hash_fn

    def may_contain(self, key: bytes) -> bool:
        return bool(self._filter.may_contain_hash(self._hash(key)))

    def bloom_probe(self) -> tuple[Any, Any]:
        """``(bloom, hash_fn)``: :meth:`may_contain` is ``bloom.may_contain_hash(hash_fn(key))``
        (point lookups call these two directly)."""
        return self._filter, self._hash

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._filter!r})"


def _check_bits_per_key(bits_per_key: int) -> int:
    if (
        not isinstance(bits_per_key, int)
        or isinstance(bits_per_key, bool)
        or not 1 <= bits_per_key <= 0xFFFF_FFFF
    ):
        raise InvalidError("bits_per_key must be an int in [1, 2**32)", bits_per_key=bits_per_key)
    return bits_per_key


class _BloomPolicyBase:
    """Shared configuration of the bloom policies: ``bits_per_key``, equality and repr."""

    name: str

    def __init__(self, bits_per_key: int = DEFAULT_BITS_PER_KEY) -> None:
        self.bits_per_key = _check_bits_per_key(bits_per_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits_per_key={self.bits_per_key})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _BloomPolicyBase) or type(other) is not type(self):
            return NotImplemented
        return other.bits_per_key == self.bits_per_key

    def __hash__(self) -> int:
        return hash((type(self), self.bits_per_key))


class BloomFilterPolicy(_BloomPolicyBase):
    """SlateDB's bloom filter policy (byte-compatible), optionally with a prefix extractor.

    Without options it is SlateDB's default whole-key bloom, named ``"_bf"``. With a
    ``prefix_extractor`` it is SlateDB's ``BloomFilterPolicy::with_prefix_extractor`` (the
    official package's ``FilterPolicy.bloom_with_options``): named ``"_bf:p=<extractor name>"``,
    plus ``":wh=0"`` when ``whole_key_filtering`` is off, its filters also hold each key's
    extracted prefix, and their readers answer ``may_contain_prefix``. A prefix bloom is built
    from the keys, so it has no :attr:`build_hashed` (the compaction kernel, which keeps only
    whole-key hashes, then leaves the job to the row pipeline).

    :param bits_per_key: filter bits per hash (SlateDB's default is 10, i.e. 6 probes).
    :param prefix_extractor: a :class:`shale.meta.segments.PrefixExtractor` (for example
        ``FixedPrefixExtractor(4)``, named ``"fixed4"``); its name becomes part of this policy's.
    :param whole_key_filtering: hash the whole keys too (the default; point lookups then test
        the whole key). Off, point lookups test the key's extracted prefix.
    :raises InvalidError: unless ``1 <= bits_per_key < 2**32``; on a malformed extractor; when
        whole-key filtering is off without an extractor (the filter would hold nothing).
    """

    def __init__(
        self,
        bits_per_key: int = DEFAULT_BITS_PER_KEY,
        *,
        prefix_extractor: Any = None,
        whole_key_filtering: bool = True,
    ) -> None:
        super().__init__(bits_per_key)
        if not isinstance(whole_key_filtering, bool):
            raise InvalidError(
                "whole_key_filtering must be a bool", whole_key_filtering=whole_key_filtering
            )
        if prefix_extractor is not None:
            prefix_extractor = prefix_bloom.check_bloom_extractor(prefix_extractor)
        elif not whole_key_filtering:
            raise InvalidError(
                "a bloom filter without whole-key filtering needs a prefix extractor"
            )
        self.prefix_extractor: PrefixExtractor | None = prefix_extractor
        self.whole_key_filtering = whole_key_filtering
        self.name = prefix_bloom.policy_name(
            None if prefix_extractor is None else prefix_extractor.name, whole_key_filtering
        )

    def __repr__(self) -> str:
        if self.prefix_extractor is None:
            return super().__repr__()
        return (
            f"{type(self).__name__}(bits_per_key={self.bits_per_key}, "
            f"prefix_extractor={self.prefix_extractor!r}, "
            f"whole_key_filtering={self.whole_key_filtering})"
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, BloomFilterPolicy)
        return (other.bits_per_key, other.name) == (self.bits_per_key, self.name)

    def __hash__(self) -> int:
        return hash((type(self), self.bits_per_key, self.name))

    def build(self, keys: Sequence[bytes]) -> bytes:
        """SipHash-1-3 the hash list of the rows' keys, in order, and encode the bloom filter
        (FORMAT.md §3.9; with an extractor, :func:`shale.sst.prefix_bloom.hash_inputs`)."""
        extractor = self.prefix_extractor
        if extractor is None:
            items = list(keys)
        else:
            items = prefix_bloom.hash_inputs(keys, extractor, self.whole_key_filtering)
        return bloom.build_filter(bloom.hash_keys(items), self.bits_per_key)

    @property
    def build_hashed(self) -> Callable[[Sequence[int]], bytes]:
        """:meth:`build` from the keys' SipHash-1-3 hashes (:func:`shale.sst.bloom.hash_keys`),
        computed by whoever wrote the rows (the compaction kernel hashes while it writes).

        Only the whole-key ``"_bf"`` has it: a prefix bloom needs the keys themselves, so for
        one this attribute is absent (``hasattr`` is false) rather than wrong.
        """
        if self.prefix_extractor is not None:
            raise AttributeError("a prefix bloom filter is built from keys, not key hashes")
        return self._build_hashed

    def _build_hashed(self, hashes: Sequence[int]) -> bytes:
        return bloom.build_filter(hashes, self.bits_per_key)

    def reader(self, data: bytes) -> FilterReader:
        """Parse a filter of this policy's name; any ``bits_per_key`` is readable.

        :raises DataError: when ``data`` is shorter than its 2-byte header.
        """
        extractor = self.prefix_extractor
        if extractor is None:
            return _HashedBloomReader(data, bloom.siphash13)
        if self.whole_key_filtering:
            return prefix_bloom.WholeKeyPrefixBloomReader(data, extractor)
        return prefix_bloom.PrefixBloomReader(data, extractor)


def mmh3_hash(key: bytes) -> int:
    """The key hash of :class:`Mmh3BloomFilterPolicy`.

    The low 64 bits of MurmurHash3_x64_128 with seed 0, i.e. the first word of
    ``mmh3.hash64(key, seed=0, x64arch=True, signed=False)``, as an unsigned int.
    """
    return int(mmh3.hash64(key, seed=0, x64arch=True, signed=False)[0])


class Mmh3BloomFilterPolicy(_BloomPolicyBase):
    """shale's own bloom filter, policy name ``"shale.mmh3_bloom"``.

    The encoding, ``num_probes`` and probe sequence are those of SlateDB's bloom (FORMAT.md §3.9);
    only the hash differs: :func:`mmh3_hash` (low 64 bits of MurmurHash3_x64_128, seed 0)
    instead of SipHash-1-3. SlateDB skips this filter because it does not know the name.

    :param bits_per_key: filter bits per row key.
    :raises InvalidError: unless ``1 <= bits_per_key < 2**32``.
    """

    name = "shale.mmh3_bloom"

    def build(self, keys: Sequence[bytes]) -> bytes:
        """Hash every key, in order, with :func:`mmh3_hash` and encode the bloom filter."""
        h64 = mmh3.hash64
        hashes = [h64(k, seed=0, x64arch=True, signed=False)[0] for k in keys]
        return bloom.build_filter(hashes, self.bits_per_key)

    def reader(self, data: bytes) -> FilterReader:
        """Parse a ``shale.mmh3_bloom`` filter.

        :raises DataError: when ``data`` is shorter than its 2-byte header.
        """
        return _HashedBloomReader(data, mmh3_hash)


def _encode_name(name: object) -> bytes:
    if not isinstance(name, str) or not name:
        raise InvalidError("a filter name must be a non-empty str", name=name)
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidError("a filter name must be valid UTF-8", name=name) from exc
    if len(raw) > _U16_MAX:
        raise InvalidError("a filter name must be at most 65535 UTF-8 bytes", length=len(raw))
    return raw


def encode_composite(filters: list[tuple[str, bytes]]) -> bytes:
    """Encode the composite filter payload (the chunk payload; the CRC is the SST layer's).

    :param filters: ``(policy name, filter data)`` pairs, in the order to store them.
    :return: ``u16be count ‖ (u16be name_len ‖ name ‖ u64be data_len ‖ data)*``.
    :raises InvalidError: on more than 65535 filters, an empty, non-str or over-long name, or a
        duplicate name.
    """
    if len(filters) > _U16_MAX:
        raise InvalidError("at most 65535 filters fit a composite block", count=len(filters))
    parts = [_U16.pack(len(filters))]
    seen: set[str] = set()
    for name, data in filters:
        raw = _encode_name(name)
        if name in seen:
            raise InvalidError("duplicate filter name in a composite block", name=name)
        seen.add(name)
        payload = bytes(data)
        parts += [_U16.pack(len(raw)), raw, _U64.pack(len(payload)), payload]
    return b"".join(parts)


def decode_composite(payload: bytes | bytearray | memoryview) -> list[tuple[str, bytes]]:
    """Decode a composite filter payload (after the chunk's CRC check and decompression).

    :param payload: the bytes :func:`encode_composite` (or SlateDB) wrote.
    :return: ``(policy name, filter data)`` pairs in stored order, unknown names included.
    :raises DataError: on truncation, trailing bytes, or a name that is not UTF-8.
    """
    view = memoryview(payload)
    size = len(view)
    if size < 2:
        raise DataError("composite filter block shorter than its count", length=size)
    (count,) = _U16.unpack_from(view, 0)
    pos = 2
    out: list[tuple[str, bytes]] = []
    for index in range(count):
        if pos + 2 > size:
            raise DataError("composite filter block truncated", index=index, offset=pos)
        (name_len,) = _U16.unpack_from(view, pos)
        pos += 2
        if pos + name_len + 8 > size:
            raise DataError("composite filter block truncated", index=index, offset=pos)
        try:
            name = bytes(view[pos : pos + name_len]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError("filter name is not UTF-8", index=index, offset=pos) from exc
        pos += name_len
        (data_len,) = _U64.unpack_from(view, pos)
        pos += 8
        if data_len > size - pos:
            raise DataError(
                "composite filter data truncated", name=name, data_len=data_len, offset=pos
            )
        out.append((name, bytes(view[pos : pos + data_len])))
        pos += data_len
    if pos != size:
        raise DataError("trailing bytes after composite filter block", offset=pos, length=size)
    return out


def policies_by_name(policies: Iterable[FilterPolicy]) -> dict[str, FilterPolicy]:
    """Index policies by :attr:`FilterPolicy.name` for reading.

    A reader looks up every stored filter's name here and *skips names that are missing*
    (filters from newer SlateDB versions, prefix blooms such as ``"_bf:p=fixed4"`` unless a
    policy of that very name is configured, or filters of plugins that are not installed).
    When two policies share a name the first one wins (a warning is logged): same-named
    policies must read each other's data anyway.

    :raises InvalidError: when a policy's name is not a non-empty str.
    """
    out: dict[str, FilterPolicy] = {}
    for policy in policies:
        name = policy.name
        _encode_name(name)
        if name in out:
            if out[name] != policy:
                log.warning(
                    "two filter policies share name=%r; keeping %r, ignoring %r",
                    name,
                    out[name],
                    policy,
                )
            continue
        out[name] = policy
    return out


def open_readers(
    filters: list[tuple[str, bytes]], known: Mapping[str, FilterPolicy]
) -> dict[str, FilterReader]:
    """Readers for the stored filters whose names are known; unknown names are skipped.

    :param filters: the output of :func:`decode_composite`. For a *legacy* SST
        (``filter_format`` absent) pass ``[("_bf", chunk_payload)]``: its payload is one raw
        SlateDB bloom filter.
    :param known: the result of :func:`policies_by_name`.
    :return: ``name -> reader``; a key is surely absent iff any reader says so.
    :raises DataError: when a known policy cannot decode its data.
    """
    out: dict[str, FilterReader] = {}
    for name, data in filters:
        policy = known.get(name)
        if policy is None:
            log.debug("skipping filter with unknown policy name=%r", name)
            continue
        if name not in out:
            out[name] = policy.reader(data)
    return out


@shale.hookimpl
def shale_filter_policy(settings: Any) -> list[FilterPolicy]:
    """Offer the built-in policies: SlateDB's ``"_bf"`` and shale's ``"shale.mmh3_bloom"``.

    :param settings: database settings or ``None``; ``filter_bits_per_key`` (default 10) sets
        the bits per key of both.

    Prefix blooms (``"_bf:p=<extractor>"``) are not offered here: they need an extractor, which
    the plugin host finds by name (:meth:`shale.plugins.PluginHost.configured_filter_policies`).
    """
    bits_per_key = getattr(settings, "filter_bits_per_key", DEFAULT_BITS_PER_KEY)
    if bits_per_key is None:
        bits_per_key = DEFAULT_BITS_PER_KEY
    return [BloomFilterPolicy(bits_per_key), Mmh3BloomFilterPolicy(bits_per_key)]
