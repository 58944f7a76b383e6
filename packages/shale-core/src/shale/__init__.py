"""shale: SlateDB's cloud-native embedded LSM key-value store, in Python with Cython.

The public surface is what ``__all__`` lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shale.errors import (
    ChangesGoneError,
    ClosedError,
    CloseReason,
    DataError,
    InternalError,
    InvalidError,
    ShaleError,
    TransactionError,
    UnavailableError,
)
from shale.lazy import lazy_exports
from shale.markers import hookimpl, hookspec

if TYPE_CHECKING:  # the real types for type checkers; at run time __getattr__ imports them
    from shale import aio as aio
    from shale import codecs as codecs
    from shale.admin import Admin
    from shale.batch import Ttl, WriteBatch
    from shale.change_stream import ChangeStream, changes
    from shale.db import CheckpointInfo, Db, DbIterator, DbSnapshot, KeyValue, WriteHandle
    from shale.mapping import DbMapping, ReadOnlyDbMapping
    from shale.namespace import (
        Namespace,
        NamespaceSnapshot,
        NamespaceTransaction,
        ReadOnlyNamespace,
    )
    from shale.reader import DbReader
    from shale.row import Row
    from shale.settings import (
        HistoryRetention,
        ObjectStoreCacheOptions,
        ReaderOptions,
        Settings,
    )
    from shale.store_env import store_from_env
    from shale.transaction import IsolationLevel, Transaction
    from shale.typed import TypedView
    from shale.wal_iterator import WalIterator, WalRows
    from shale.wal_reader import Change, WalFile, WalReader

__version__ = "0.1.0"

_LAZY = {
    "Admin": "shale.admin",
    "Db": "shale.db",
    "DbIterator": "shale.db",
    "DbSnapshot": "shale.db",
    "KeyValue": "shale.db",
    "WriteHandle": "shale.db",
    "CheckpointInfo": "shale.db",
    "DbReader": "shale.reader",
    "DbMapping": "shale.mapping",
    "ReadOnlyDbMapping": "shale.mapping",
    "Namespace": "shale.namespace",
    "NamespaceSnapshot": "shale.namespace",
    "NamespaceTransaction": "shale.namespace",
    "ReadOnlyNamespace": "shale.namespace",
    "HistoryRetention": "shale.settings",
    "ObjectStoreCacheOptions": "shale.settings",
    "ReaderOptions": "shale.settings",
    "WriteBatch": "shale.batch",
    "Ttl": "shale.batch",
    "Settings": "shale.settings",
    "Row": "shale.row",
    "Transaction": "shale.transaction",
    "IsolationLevel": "shale.transaction",
    "TypedView": "shale.typed",
    "Change": "shale.wal_reader",
    "WalFile": "shale.wal_reader",
    "WalReader": "shale.wal_reader",
    "WalIterator": "shale.wal_iterator",
    "WalRows": "shale.wal_iterator",
    "ChangeStream": "shale.change_stream",
    "changes": "shale.change_stream",
    "store_from_env": "shale.store_env",
}


_lazy_getattr = lazy_exports(__name__, _LAZY)


def __getattr__(name: str) -> object:
    """Import the heavier public classes on first use (keeps ``import shale`` light)."""
    if name in ("aio", "codecs"):  # submodules: ``shale.aio.AsyncDb``, ``shale.codecs.JSON``
        import importlib

        return importlib.import_module(f"shale.{name}")
    return _lazy_getattr(name)


__all__ = [
    "Admin",
    "Change",
    "ChangeStream",
    "ChangesGoneError",
    "WalFile",
    "WalIterator",
    "WalReader",
    "WalRows",
    "changes",
    "store_from_env",
    "CheckpointInfo",
    "Db",
    "DbIterator",
    "DbMapping",
    "DbReader",
    "DbSnapshot",
    "KeyValue",
    "Namespace",
    "NamespaceSnapshot",
    "NamespaceTransaction",
    "HistoryRetention",
    "ObjectStoreCacheOptions",
    "ReaderOptions",
    "ReadOnlyDbMapping",
    "ReadOnlyNamespace",
    "Row",
    "Settings",
    "IsolationLevel",
    "Transaction",
    "Ttl",
    "TypedView",
    "WriteBatch",
    "WriteHandle",
    "ClosedError",
    "CloseReason",
    "DataError",
    "InternalError",
    "InvalidError",
    "ShaleError",
    "TransactionError",
    "UnavailableError",
    "hookimpl",
    "hookspec",
    "lazy_exports",
    "__version__",
]
