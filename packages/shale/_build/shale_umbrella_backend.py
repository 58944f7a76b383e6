"""The umbrella's build backend: setuptools, told whether the build is editable.

``setup.py`` makes the sibling distributions (shale-core, shale-compactor, shale-gc) direct
references to their folders, so that ``pip install ./packages/shale`` works on a fresh machine
(they are not on any package index). An editable install is the monorepo's development setup
(``requirements-dev.txt``), which installs those siblings editable too; pip refuses an editable
and a direct reference to the same project in one environment, so an editable build depends on
them by name instead, and the editable siblings satisfy the names.
"""

from __future__ import annotations

from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (the PEP 517 hooks we do not change)
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_wheel,
)

#: True while an editable build runs (read by setup.py, which runs in this process).
EDITABLE = False


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: Any = None) -> str:
    global EDITABLE
    EDITABLE = True
    return _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_editable(
    wheel_directory: str, config_settings: Any = None, metadata_directory: str | None = None
) -> str:
    global EDITABLE
    EDITABLE = True
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
