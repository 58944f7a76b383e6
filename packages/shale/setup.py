"""The umbrella's dependencies: its sibling distributions in this checkout.

``pip install ./packages/shale`` must install shale-core, shale-compactor and shale-gc from the
same checkout (they are not on a package index), so each is a direct reference to its folder
beside this one. An editable build (``-e ./packages/shale`` in requirements-dev.txt, next to the
editable siblings) and a build somewhere without the siblings depend on them by name and version
instead: pip refuses an editable and a direct reference to one project in the same environment.
"""

import pathlib
import sys

from setuptools import setup

HERE = pathlib.Path(__file__).resolve().parent
VERSION = "0.1.0"
SIBLINGS = ("shale-core", "shale-compactor", "shale-gc")


def _editable() -> bool:
    backend = sys.modules.get("shale_umbrella_backend")
    return bool(getattr(backend, "EDITABLE", False))


def _requirement(name: str) -> str:
    folder = HERE.parent / name
    if not _editable() and (folder / "pyproject.toml").is_file():
        return f"{name} @ {folder.as_uri()}"
    return f"{name}=={VERSION}"


setup(install_requires=[_requirement(name) for name in SIBLINGS])
