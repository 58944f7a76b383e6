"""shale's pytest plugin (entry point ``pytest11: shale``): object-store fixtures.

- ``memory_store`` -- a fresh :class:`~shale.objstore.memory.MemoryStore`;
- ``local_store`` -- a fresh :class:`~shale.objstore.local.LocalStore` in ``tmp_path/"store"``,
  opened with ``fsync=False``: tests check behaviour, not power-loss durability, and fsync
  would make every durable put cost milliseconds.

pytest imports this module in every session where shale-core is installed, so it imports no
shale module at load time; the fixtures import what they need.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from shale.objstore.local import LocalStore
    from shale.objstore.memory import MemoryStore


@pytest.fixture
def memory_store() -> Iterator[MemoryStore]:
    """A fresh, empty in-memory store."""
    from shale.objstore.memory import MemoryStore

    store = MemoryStore()
    yield store
    store.close()


@pytest.fixture
def local_store(tmp_path: Path) -> Iterator[LocalStore]:
    """A fresh, empty local-directory store under ``tmp_path`` (``fsync=False``)."""
    from shale.objstore.local import LocalStore

    store = LocalStore(tmp_path / "store", fsync=False)
    yield store
    store.close()
