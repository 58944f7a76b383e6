"""Tests for shale.meta.compactions_store that shale-compactor's test_state.py does not cover:
the names the specialisation of :mod:`shale.meta.versioned` keeps (the protocol itself is
tested there and in test_state.py)."""

from __future__ import annotations

import dataclasses

import pytest

from shale.errors import ClosedError
from shale.meta.compactions_store import (
    CompactionsStore,
    FenceableCompactions,
    StoredCompactions,
)
from shale.objstore.memory import MemoryStore


def test_compactions_specialisation_keeps_its_names() -> None:
    cs = CompactionsStore(MemoryStore(), "db")
    assert repr(cs) == "CompactionsStore(root='db', format_version=2)"
    stored = StoredCompactions.create_or_load(cs)
    assert stored.cs is cs is stored.versions
    assert stored.compactions is stored.value and stored.compactions.compactor_epoch == 0
    assert repr(stored) == "StoredCompactions(id=1, root='db')"
    fc = FenceableCompactions.init_with_epoch(stored, 3)
    assert fc.compactions is fc.value is stored.compactions
    assert (fc.id, fc.compactions.compactor_epoch, fc.role) == (2, 3, "compactor")
    assert repr(fc) == "FenceableCompactions(epoch=3, id=2)"


def test_a_newer_compactor_fences_the_older() -> None:
    cs = CompactionsStore(MemoryStore(), "db")
    old = FenceableCompactions.init_with_epoch(StoredCompactions.create_or_load(cs), 1)
    FenceableCompactions.init_with_epoch(StoredCompactions.load(cs), 2)
    with pytest.raises(ClosedError, match="detected newer compactor") as info:
        old.update(lambda c: dataclasses.replace(c))
    assert info.value.reason == "fenced" and info.value.detail["role"] == "compactor"
    assert old.fenced and cs.list_ids() == [1, 2, 3]
