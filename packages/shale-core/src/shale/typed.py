"""A typed view: keys and values as Python objects through :mod:`shale.codecs`.

``TypedView(db, key=codecs.TUPLE, value=codecs.JSON)`` reads and writes ``db`` with its keys
encoded by the key codec and its values by the value codec (docs/codecs.md). The source is
anything with shale's read (and, to write, write) methods: a ``Db``, a ``DbReader``, a
snapshot, a namespace, a transaction. Scans decode as they go, in the byte order of the
encoded keys -- which, for an order-preserving key codec, is the order of the values.
Options (``durable=``, ``ttl=``, ``durability=`` ...) pass through to the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from shale.codecs import BYTES, Codec, KeyCodec
from shale.errors import InvalidError

__all__ = ["TypedView"]

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


class TypedView(Generic[K, V]):
    """Keys and values of ``source`` as Python objects (see the module docstring).

    :param key: the key codec (order-preserving for meaningful scans): ``codecs.TUPLE``,
        ``codecs.Int()``, ``codecs.STR``, ``codecs.BYTES`` (the default).
    :param value: the value codec: ``codecs.JSON``, ``codecs.MSGPACK``, ``codecs.STR``,
        ``codecs.BYTES`` (the default) or any key codec.
    :raises InvalidError: a codec without ``encode``/``decode``.
    """

    def __init__(
        self, source: Any, *, key: KeyCodec[K] | Any = BYTES, value: Codec[V] | Any = BYTES
    ) -> None:
        for role, codec in (("key", key), ("value", value)):
            if not (callable(getattr(codec, "encode", None)) and callable(codec.decode)):
                raise InvalidError(
                    f"the {role} codec needs encode() and decode()", type=type(codec).__name__
                )
        self.source = source
        self.key_codec = key
        self.value_codec = value

    # -- reads ----------------------------------------------------------------------------

    def get(self, key: K, default: V | None = None, **options: Any) -> V | None:
        """The decoded value of ``key``, or ``default`` when it is absent."""
        raw = self.source.get(self.key_codec.encode(key), **options)
        return default if raw is None else self.value_codec.decode(raw)

    def __getitem__(self, key: K) -> V:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return self.source.get(self.key_codec.encode(key)) is not None  # type: ignore[arg-type]

    def scan(
        self,
        start: K | None = None,
        end: K | None = None,
        *,
        reverse: bool = False,
        **options: Any,
    ) -> Iterator[tuple[K, V]]:
        """Decoded ``(key, value)`` pairs over ``start <= key < end`` (by encoding; ``None``
        = unbounded)."""
        low = None if start is None else self.key_codec.encode(start)
        high = None if end is None else self.key_codec.encode(end)
        return self._decoded(self.source.scan(low, high, reverse=reverse, **options))

    def scan_prefix(
        self, prefix: Any, *, reverse: bool = False, **options: Any
    ) -> Iterator[tuple[K, V]]:
        """Every pair whose key starts with ``prefix`` as the key codec defines it (a tuple
        codec: the tuples whose first elements are ``prefix``'s).

        :raises InvalidError: the key codec has no ``prefix_range``.
        """
        ranger = getattr(self.key_codec, "prefix_range", None)
        if ranger is None:
            raise InvalidError(
                "the key codec has no prefix_range()", codec=type(self.key_codec).__name__
            )
        low, high = ranger(prefix)
        return self._decoded(self.source.scan(low, high, reverse=reverse, **options))

    def _decoded(self, rows: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[K, V]]:
        kdec, vdec = self.key_codec.decode, self.value_codec.decode
        for k, v in rows:
            yield kdec(k), vdec(v)

    # -- writes ---------------------------------------------------------------------------

    def put(self, key: K, value: V, **options: Any) -> Any:
        """Write ``value`` under ``key`` (encoded); options and result as the source's put."""
        return self.source.put(
            self.key_codec.encode(key), self.value_codec.encode(value), **options
        )

    def __setitem__(self, key: K, value: V) -> None:
        self.put(key, value)

    def delete(self, key: K, **options: Any) -> Any:
        """Delete ``key``; as the source's delete."""
        return self.source.delete(self.key_codec.encode(key), **options)

    def update(self, key: K, fn: Callable[[V | None], V | None], **options: Any) -> V | None:
        """Atomically set ``key`` to ``fn(current value or None)`` (``None`` deletes it), with
        the source's ``update`` (a ``Db`` or a namespace); returns the value written."""
        vcodec = self.value_codec

        def raw_fn(raw: bytes | None) -> bytes | None:
            new = fn(None if raw is None else vcodec.decode(raw))
            return None if new is None else vcodec.encode(new)

        raw = self.source.update(self.key_codec.encode(key), raw_fn, **options)
        return None if raw is None else vcodec.decode(raw)

    def __repr__(self) -> str:
        return (
            f"<shale TypedView key={getattr(self.key_codec, 'name', '?')} "
            f"value={getattr(self.value_codec, 'name', '?')} of {self.source!r}>"
        )
