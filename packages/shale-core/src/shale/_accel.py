"""Pick the compiled or the pure-Python twin of an accelerated module.

Each accelerated module is a triplet beside its domain: ``x.py`` (facade), ``_x_py.py`` (the
readable reference) and ``_x_c.pyx`` (Cython), e.g. ``shale/sst/block.py``,
``shale/sst/_block_py.py``, ``shale/sst/_block_c.pyx``. The facade calls :func:`load` once at
import time. The compiled twin is used unless ``SHALE_NO_EXTENSIONS`` is set or it was not built.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from shale import env

#: Accelerated module name -> (its package, its facade module).
_WHERE = {
    "block": ("shale.sst", "shale.sst.block"),
    "bloom": ("shale.sst", "shale.sst.bloom"),
    "datawriter": ("shale.sst", "shale.sst.datawriter"),
    "compact": ("shale.sst", "shale.sst.compact"),
    "merge": ("shale.merge", "shale.merge"),
    "blockmeta": ("shale.fbs", "shale.fbs.blockmeta"),
    "memtable": ("shale.engine", "shale.engine.memtable"),
    "cache": ("shale", "shale.cache"),
    "point": ("shale.engine", "shale.engine.point"),
    "commit": ("shale.engine", "shale.engine.commit"),
    "batch": ("shale", "shale.batch"),
}
#: Names of the accelerated modules, for ``python -m shale info`` and the tests.
ACCELERATED = tuple(_WHERE)


def twin_name(name: str, kind: str) -> str:
    """The module name of one twin: ``twin_name("block", "c") == "shale.sst._block_c"``."""
    return f"{_WHERE[name][0]}._{name}_{kind}"


def load(name: str) -> ModuleType:
    """Return ``<package>._<name>_c`` if usable, else ``<package>._<name>_py``."""
    if not env.flag(env.NO_EXTENSIONS):
        try:
            return importlib.import_module(twin_name(name, "c"))
        except ImportError:
            pass
    return importlib.import_module(twin_name(name, "py"))


def twins(name: str) -> dict[str, ModuleType]:
    """Both twins that can be imported here, keyed ``"py"`` and ``"c"`` (for tests and bench)."""
    out = {"py": importlib.import_module(twin_name(name, "py"))}
    try:
        out["c"] = importlib.import_module(twin_name(name, "c"))
    except ImportError:
        pass
    return out


def is_compiled(name: str) -> bool:
    """Whether the facade of ``name`` is using the compiled twin."""
    mod = importlib.import_module(_WHERE[name][1])
    impl: ModuleType = mod.IMPLEMENTATION
    return impl.__name__.endswith("_c")
