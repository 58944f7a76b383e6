"""Test kit for shale and its plugins.

- :mod:`shale.testing.plugin` -- the pytest plugin (entry point ``pytest11: shale``), loaded
  automatically wherever shale-core is installed: fixtures ``memory_store`` and ``local_store``.
- :mod:`shale.testing.objstore_contract` -- :class:`ObjectStoreContract`, the behaviour every
  object store must have; a backend's test module subclasses it and provides a ``store``
  fixture.
- :mod:`shale.testing.script_worker` -- run one request in a child Python process running a
  script (the interop tests drive the official package this way, outside the test process).
- :func:`crash` -- abandon an open :class:`shale.Db` the way a killed process would (an
  unclosed ``Db`` that is merely dropped is closed and flushed, with a ``ResourceWarning``).

This package stays cheap to import (pytest loads the plugin in every session), so the contract
is only imported when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shale.testing.objstore_contract import ObjectStoreContract

__all__ = ["ObjectStoreContract", "crash"]


def crash(db: Any) -> None:
    """Stop ``db`` as if its process had been killed: its background threads stop and are
    joined, nothing more is flushed or written to the object store (unflushed writes are lost,
    as in a crash) and the handle is closed with ``close_reason == "failed"``. Reopen the
    database to recover it."""
    db._crash()


def __getattr__(name: str) -> Any:
    if name == "ObjectStoreContract":
        from shale.testing.objstore_contract import ObjectStoreContract

        return ObjectStoreContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
