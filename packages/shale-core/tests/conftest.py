"""Fixtures for shale-core's tests: both twins of every accelerated module.

A fixture such as ``block_impl`` is parametrized over ``py`` and ``c``. The compiled twin must
exist unless the pure twins were asked for (``--no-c-extensions`` or ``SHALE_NO_EXTENSIONS``):
a missing build fails loudly instead of silently testing only one twin.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from shale import _accel, env


def _pure_only(config: pytest.Config) -> bool:
    return bool(config.getoption("--no-c-extensions")) or env.flag(env.NO_EXTENSIONS)


def _twin(request: pytest.FixtureRequest, name: str) -> ModuleType:
    kind = request.param
    if kind == "c":
        if _pure_only(request.config):
            pytest.skip("compiled twins disabled")
        try:
            return importlib.import_module(_accel.twin_name(name, "c"))
        except ImportError as exc:
            pytest.fail(f"compiled twin {_accel.twin_name(name, 'c')} is not built: {exc}")
    return importlib.import_module(_accel.twin_name(name, "py"))


@pytest.fixture(params=["py", "c"])
def block_impl(request: pytest.FixtureRequest) -> ModuleType:
    """``shale.sst._block_py`` or ``shale.sst._block_c``."""
    return _twin(request, "block")


@pytest.fixture(params=["py", "c"])
def bloom_impl(request: pytest.FixtureRequest) -> ModuleType:
    """``shale.sst._bloom_py`` or ``shale.sst._bloom_c``."""
    return _twin(request, "bloom")


@pytest.fixture(params=["py", "c"])
def merge_impl(request: pytest.FixtureRequest) -> ModuleType:
    """``shale.merge._merge_py`` or ``shale.merge._merge_c``."""
    return _twin(request, "merge")


@pytest.fixture(params=["py", "c"])
def blockmeta_impl(request: pytest.FixtureRequest) -> ModuleType:
    """``shale.fbs._blockmeta_py`` or ``shale.fbs._blockmeta_c``."""
    return _twin(request, "blockmeta")


@pytest.fixture(params=["py", "c"])
def batch_impl(request: pytest.FixtureRequest) -> ModuleType:
    """``shale._batch_py`` or ``shale._batch_c``."""
    return _twin(request, "batch")


@pytest.fixture(params=["py", "c"])
def commit_impl(request: pytest.FixtureRequest) -> ModuleType:
    return _twin(request, "commit")


@pytest.fixture(params=["py", "c"])
def datawriter_impl(request: pytest.FixtureRequest) -> ModuleType:
    """``shale.sst._datawriter_py`` or ``shale.sst._datawriter_c``."""
    return _twin(request, "datawriter")


@pytest.fixture(params=["py", "c"])
def cache_impl(request: pytest.FixtureRequest) -> ModuleType:
    """``shale._cache_py`` or ``shale._cache_c``."""
    return _twin(request, "cache")


@pytest.fixture(params=["py", "c"])
def point_impl(request: pytest.FixtureRequest) -> ModuleType:
    """``shale.engine._point_py`` or ``shale.engine._point_c``."""
    return _twin(request, "point")


@pytest.fixture
def both_twins(request: pytest.FixtureRequest) -> object:
    """``both_twins("block")`` -> (py_module, c_module) for differential tests (skips if pure)."""

    def get(name: str) -> tuple[ModuleType, ModuleType]:
        if _pure_only(request.config):
            pytest.skip("compiled twins disabled")
        py = importlib.import_module(_accel.twin_name(name, "py"))
        try:
            c = importlib.import_module(_accel.twin_name(name, "c"))
        except ImportError as exc:
            pytest.fail(f"compiled twin {_accel.twin_name(name, 'c')} is not built: {exc}")
        return py, c

    return get
