"""The commit of a write (facade): :class:`Committer` turns a write's ops into rows with one seq
and one ``create_ts`` and commits them to the memtable and the WAL buffer under the write lock;
:class:`WriteHandle` is what a write returns.

The twin in use is ``shale.engine._commit_c`` (compiled) or ``_commit_py`` (the reference,
whose module docstring describes the steps); :mod:`shale.engine.batch_write` wires it.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from shale import _accel

__all__ = ["IMPLEMENTATION", "Committer", "WriteHandle"]

#: The twin in use: ``shale.engine._commit_c`` or ``_commit_py``.
IMPLEMENTATION: ModuleType = _accel.load("commit")
if TYPE_CHECKING:
    from shale.engine._commit_py import Committer, WriteHandle
else:
    Committer = IMPLEMENTATION.Committer
    WriteHandle = IMPLEMENTATION.WriteHandle
