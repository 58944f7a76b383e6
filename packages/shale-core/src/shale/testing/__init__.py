"""Test kit for shale and its plugins.

- :mod:`shale.testing.plugin` -- the pytest plugin (entry point ``pytest11: shale``), loaded
  automatically wherever shale-core is installed: fixtures ``memory_store`` and ``local_store``.
- :mod:`shale.testing.objstore_contract` -- :class:`ObjectStoreContract`, the behaviour every
  object store must have; a backend's test module subclasses it and provides a ``store``
  fixture.

This package stays cheap to import (pytest loads the plugin in every session), so the contract
is only imported when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shale.testing.objstore_contract import ObjectStoreContract

__all__ = ["ObjectStoreContract"]


def __getattr__(name: str) -> Any:
    if name == "ObjectStoreContract":
        from shale.testing.objstore_contract import ObjectStoreContract

        return ObjectStoreContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
