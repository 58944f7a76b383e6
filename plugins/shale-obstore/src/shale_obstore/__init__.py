"""shale_obstore: shale's object store for GCS, Azure Blob Storage and S3, on obstore.

- :class:`ObstoreStore` -- the store; ``open_store("gs://bucket/prefix")`` opens one through the
  plugin in :mod:`shale_obstore.plugin`.
- :mod:`shale_obstore.config` -- the URL schemes and options.
- :mod:`shale_obstore.errors` -- how obstore's errors map to shale's.
"""

from __future__ import annotations

from shale import (
    __version__,  # the project's one version: every distribution has it
    lazy_exports,
)

# Imported on first use: every shale process loads the plugin, only some open its URLs.
_LAZY = {
    "ObstoreConfig": "shale_obstore.config",
    "parse_url": "shale_obstore.config",
    "resolve_config": "shale_obstore.config",
    "ObstoreStore": "shale_obstore.store",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = ["ObstoreConfig", "ObstoreStore", "parse_url", "resolve_config", "__version__"]
