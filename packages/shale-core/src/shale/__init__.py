"""shale: SlateDB's cloud-native embedded LSM key-value store, in Python with Cython.

The public surface is what ``__all__`` lists.
"""

from __future__ import annotations

import pluggy

from shale.errors import (
    ClosedError,
    CloseReason,
    DataError,
    InternalError,
    InvalidError,
    ShaleError,
    TransactionError,
    UnavailableError,
)

__version__ = "0.1.0"

#: Marker for hook implementations in plugins: ``@shale.hookimpl``.
hookimpl = pluggy.HookimplMarker("shale")
#: Marker for hook specifications (used by packages that add hooks).
hookspec = pluggy.HookspecMarker("shale")

__all__ = [
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
    "__version__",
]
