"""Pick the compiled or the pure-Python twin of an accelerated module.

Each accelerated module is a triplet: ``x.py`` (facade), ``_x_py.py`` (the readable reference)
and ``_x_c.pyx`` (Cython). The facade calls :func:`load` once at import time. The compiled twin
is used unless ``SHALE_NO_EXTENSIONS`` is set or it was not built.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from shale import env

#: Names of the accelerated modules, for ``python -m shale info`` and the tests.
ACCELERATED = ("block", "bloom", "merge", "blockmeta")


def load(name: str) -> ModuleType:
    """Return ``shale._<name>_c`` if usable, else ``shale._<name>_py``."""
    if not env.flag(env.NO_EXTENSIONS):
        try:
            return importlib.import_module(f"shale._{name}_c")
        except ImportError:
            pass
    return importlib.import_module(f"shale._{name}_py")


def twins(name: str) -> dict[str, ModuleType]:
    """Both twins that can be imported here, keyed ``"py"`` and ``"c"`` (for tests and bench)."""
    out = {"py": importlib.import_module(f"shale._{name}_py")}
    try:
        out["c"] = importlib.import_module(f"shale._{name}_c")
    except ImportError:
        pass
    return out


def is_compiled(name: str) -> bool:
    """Whether the facade ``shale.<name>`` is using the compiled twin."""
    mod = importlib.import_module(f"shale.{name}")
    impl: ModuleType = mod.IMPLEMENTATION
    return impl.__name__.endswith("_c")
