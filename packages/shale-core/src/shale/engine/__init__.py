"""The engine's components (private): what :class:`shale.db.Db` wires together.

Nothing outside shale-core imports from here; the public handles (:mod:`shale.db`,
:mod:`shale._reader`, :mod:`shale.aio`) are built on these components.
"""
