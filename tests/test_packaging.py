"""The distributions agree on one version, and each is described for an index.

The builds themselves are checked by ``nox -s wheels`` (``tools/check_dist.py``) and the
no-compiler sdist install by ``nox -s sdist_no_compiler``: both need minutes and a package index.
"""

from __future__ import annotations

import importlib
import pathlib
import tomllib

import pytest

import shale

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECTS = sorted(ROOT.glob("packages/*/pyproject.toml")) + sorted(
    ROOT.glob("plugins/*/pyproject.toml")
)
PACKAGES = [
    "shale_compactor",
    "shale_gc",
    "shale_minio",
    "shale_demo",
    "shale_template",
    "shale_faults",
    "shale_example_filter",
]


@pytest.mark.parametrize("path", PROJECTS, ids=[p.parent.name for p in PROJECTS])
def test_the_version_is_not_written_in_any_pyproject(path: pathlib.Path) -> None:
    project = tomllib.loads(path.read_text())["project"]
    assert "version" not in project, "the version lives in shale/__init__.py only"
    assert "version" in project["dynamic"]
    for field in ("readme", "license", "classifiers", "urls", "requires-python"):
        assert project.get(field), field


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_reports_shale_s_version(name: str) -> None:
    module = importlib.import_module(name)
    assert getattr(module, "__version__", shale.__version__) == shale.__version__


def test_the_umbrella_offers_the_extras() -> None:
    text = (ROOT / "packages/shale/setup.py").read_text()
    for extra in ("s3", "compactor", "gc", "all"):
        assert f'"{extra}": (' in text, extra
