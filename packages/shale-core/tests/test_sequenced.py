"""Tests for shale.meta.versioned with a toy kind: what the kind parametrises, and the paths the
manifest and compactions specialisations do not reach (their own tests cover the protocol)."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest

from shale.errors import ClosedError, DataError, InternalError, InvalidError, ShaleError
from shale.fbs.manifest import Manifest
from shale.meta.manifest_store import FenceableManifest, ManifestStore, StoredManifest
from shale.meta.versioned import Fenceable, SequencedStore, SequenceKind, Stored
from shale.objstore.memory import MemoryStore

ROOT = "db"


@dataclasses.dataclass(frozen=True)
class Doc:
    a_epoch: int = 0
    b_epoch: int = 0
    items: tuple[str, ...] = ()


class DocConflict(ShaleError):
    kind = "conflict"


def _encode(d: Doc, version: int) -> bytes:
    return json.dumps([version, d.a_epoch, d.b_epoch, list(d.items)]).encode()


def _decode(data: bytes) -> tuple[int, Doc]:
    try:
        version, a, b, items = json.loads(data)
    except ValueError as exc:
        raise DataError("bad doc") from exc
    return version, Doc(a, b, tuple(items))


DOCS: SequenceKind[Doc] = SequenceKind(
    name="doc",
    noun="doc file",
    directory="docs",
    extension=".doc",
    boundary_file="docs.boundary",
    value_type=Doc,
    format_versions=(2, 3),
    encode=_encode,
    decode=_decode,
    epoch_fields=("a_epoch", "b_epoch"),
    conflict=DocConflict,
    logger=logging.getLogger("test.docs"),
)


class DocStore(SequencedStore[Doc]):
    kind = DOCS


class FenceableDoc(Fenceable[Doc]):
    _fenced_message = "detected newer doc owner"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def now() -> float:
    """A clock that never advances: update loops in these tests have all the time they need."""
    return 0.0


def _created(store: MemoryStore) -> Stored[Doc]:
    return Stored._create_or_load(DocStore(store, ROOT), Doc)


def test_the_kind_sets_layout_codec_and_messages(store: MemoryStore) -> None:
    ds = DocStore(store, ROOT, format_version=3)
    assert repr(ds) == "DocStore(root='db', format_version=3)"
    assert not ds.exists()
    stored = _created(store)
    assert repr(stored) == "Stored(id=1, root='db')"
    assert ds.path(1) == "db/docs/00000000000000000001.doc"
    assert store.get(ds.path(1)) == _encode(Doc(), 2)
    assert ds.exists() and ds.list_ids() == [1]
    with pytest.raises(DocConflict, match=r"doc version exists \(doc_id=1\)"):
        ds.try_write(1, Doc())
    with pytest.raises(InvalidError, match="doc ids start at 1"):
        ds.try_write(0, Doc())
    with pytest.raises(InvalidError, match="unsupported doc format version"):
        DocStore(store, ROOT, format_version=1)
    store.put(ds.path(2), b"{")
    with pytest.raises(DataError, match="corrupt doc file"):
        ds.read_latest()


def test_update_guards_every_epoch_field(store: MemoryStore) -> None:
    stored = _created(store)
    stored._update(lambda d, _n: dataclasses.replace(d, a_epoch=2, b_epoch=2), None, 5, now)
    for field in DOCS.epoch_fields:

        def lower(d: Doc, _n: int, field: str = field) -> Doc:
            changes: dict[str, Any] = {field: 1}
            return dataclasses.replace(d, **changes)

        with pytest.raises(InternalError, match=f"field='{field}'"):
            stored._update(lower, None, 5, now)
    with pytest.raises(InternalError, match="must return Doc or None"):
        stored._update(lambda d, _n: "nope", None, 5, now)  # type: ignore[arg-type,return-value]
    assert stored.id == 2


def test_fenceable_claims_checks_and_guards(store: MemoryStore) -> None:
    def claim(role: str) -> FenceableDoc:
        stored = Stored._load(DocStore(store, ROOT))
        epoch = FenceableDoc._claim(stored, role, "a_epoch", lambda e: e + 1, None, 5, now)
        return FenceableDoc(stored, epoch, role, "a_epoch")

    _created(store)
    old, new = claim("owner"), claim("owner")
    assert (old.epoch, new.epoch, new.value.a_epoch, new.id) == (1, 2, 2, 3)
    with pytest.raises(ClosedError, match="detected newer doc owner") as info:
        old.refresh()
    assert info.value.reason == "fenced" and old.fenced
    with pytest.raises(InternalError, match="may not change an epoch"):
        new._update(lambda d, _n: dataclasses.replace(d, b_epoch=9), 5, now)
    new._update(lambda d, _n: dataclasses.replace(d, items=("x",)), 5, now)
    assert new.refresh() == Doc(2, 0, ("x",))


def test_refresh_after_every_version_is_gone(store: MemoryStore) -> None:
    _created(store)
    stored = Stored(DocStore(store, ROOT), 1, Doc())  # a store with nothing cached
    store.delete(stored.versions.path(1))
    with pytest.raises(DataError, match="doc file disappeared"):
        stored.refresh()
    with pytest.raises(DataError, match="no doc file found"):
        Stored._load(DocStore(store, ROOT))


def test_gc_boundary_hides_versions_and_drops_the_cache(store: MemoryStore) -> None:
    ds = DocStore(store, ROOT)
    stored = Stored._create_or_load(ds, Doc)
    assert ds.read_latest() == (1, Doc())  # cached
    ds.advance_boundary(1)  # drops the cached latest, which it covers
    assert ds._latest is None
    assert store.get("db/gc/docs.boundary") == b"1"
    with pytest.raises(DataError, match="no doc file above the GC boundary"):
        ds.read_latest()
    store.delete(ds.path(1))  # GC
    with pytest.raises(DocConflict, match="behind the GC boundary"):
        stored.versions.try_write(1, Doc())  # a stale creator must not resurrect it
    store.put("db/gc/docs.boundary", b"\xff")
    with pytest.raises(DataError, match="malformed GC boundary file"):
        ds.read_boundary()
    with pytest.raises(InvalidError):
        ds.advance_boundary(-1)


def test_manifest_specialisation_keeps_its_names() -> None:
    ms = ManifestStore(MemoryStore(), ROOT)
    stored = StoredManifest.create_or_load(ms)
    assert stored.ms is ms is stored.versions
    assert stored.manifest is stored.value
    assert repr(stored) == "StoredManifest(id=1, root='db')"
    fm = FenceableManifest.init_writer(stored)
    assert fm.manifest is fm.value is stored.manifest and isinstance(fm.manifest, Manifest)
    assert repr(fm) == "FenceableManifest(role='writer', epoch=1, id=2)"
