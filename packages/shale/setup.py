"""The umbrella's version, dependencies and extras: its sibling distributions in this checkout.

``pip install ./packages/shale`` must install shale-core, shale-compactor and shale-gc from the
same checkout (they are not on a package index), so each is a direct reference to its folder
beside this one. An editable build (``-e ./packages/shale`` in requirements-dev.txt, next to the
editable siblings) and a build somewhere without the siblings (a wheel built from the sdist, as
``nox -s wheels`` does) depend on them by name and version instead: pip refuses an editable and
a direct reference to one project in the same environment, and a published wheel cannot point
into a checkout.

Extras: ``shale[s3]`` adds shale-minio (``s3://`` URLs); ``shale[compactor]`` and ``shale[gc]``
name the two the umbrella always installs (so the usual spelling works); ``shale[all]`` is every
component.

The version is the project's one version: ``__version__`` in shale-core's
``src/shale/__init__.py``, read from the checkout, or from ``PKG-INFO`` in an unpacked sdist.
"""

import pathlib
import re
import sys

from setuptools import setup

HERE = pathlib.Path(__file__).resolve().parent
CORE_INIT = HERE.parent / "shale-core" / "src" / "shale" / "__init__.py"
SIBLINGS = ("shale-core", "shale-compactor", "shale-gc")
EXTRAS = {
    "s3": ("shale-minio",),
    "compactor": ("shale-compactor",),
    "gc": ("shale-gc",),
    "all": ("shale-compactor", "shale-gc", "shale-minio"),
}


def _version() -> str:
    sources = ((CORE_INIT, r'^__version__ = "([^"]+)"$'), (HERE / "PKG-INFO", r"^Version: (\S+)$"))
    for path, pattern in sources:
        if path.is_file():
            found = re.search(pattern, path.read_text(), re.M)
            if found:
                return found.group(1)
    raise RuntimeError(f"no version: neither {CORE_INIT} nor {HERE / 'PKG-INFO'} has one")


VERSION = _version()


def _editable() -> bool:
    backend = sys.modules.get("shale_umbrella_backend")
    return bool(getattr(backend, "EDITABLE", False))


def _requirement(name: str) -> str:
    folder = HERE.parent / name
    if not _editable() and (folder / "pyproject.toml").is_file():
        return f"{name} @ {folder.as_uri()}"
    return f"{name}=={VERSION}"


setup(
    version=VERSION,
    install_requires=[_requirement(name) for name in SIBLINGS],
    extras_require={extra: [_requirement(n) for n in names] for extra, names in EXTRAS.items()},
)
