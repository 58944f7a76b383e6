"""Build shale-otel. Its version is the project's one version: ``__version__`` in shale-core's
``src/shale/__init__.py``, read from the checkout, or from ``PKG-INFO`` when this is an unpacked
sdist (built from the checkout, so it carries that version).
"""

import pathlib
import re

from setuptools import setup

HERE = pathlib.Path(__file__).resolve().parent
CORE_INIT = HERE.parent.parent / "packages" / "shale-core" / "src" / "shale" / "__init__.py"


def version() -> str:
    for path, pattern in (
        (CORE_INIT, r'^__version__ = "([^"]+)"$'),
        (HERE / "PKG-INFO", r"^Version: (\S+)$"),
    ):
        if path.is_file():
            found = re.search(pattern, path.read_text(), re.M)
            if found:
                return found.group(1)
    raise RuntimeError(f"no version: neither {CORE_INIT} nor {HERE / 'PKG-INFO'} has one")


setup(version=version())
