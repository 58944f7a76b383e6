"""Lazy module attributes: a package's public names imported on first use.

Plugins keep ``import plugin`` (which pluggy does for every installed plugin, at every start)
light by importing their heavy modules only when a name is first used::

    from shale import lazy_exports

    _LAZY = {"S3Store": "shale_minio.store", "S3Config": "shale_minio.config"}
    __getattr__ = lazy_exports(__name__, _LAZY)

A name is looked up once: its value is stored in the package's namespace, so later uses do
not reach ``__getattr__`` again. Type checkers and API documentation do not run
``__getattr__``: import the same names under ``if TYPE_CHECKING:`` too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``names[name]`` (a module path)
    and returns its attribute ``name`` (PEP 562).

    :param package: the package's ``__name__``.
    :param names: public name -> the module that defines it.
    :return: the function to assign to the package's ``__getattr__``; it raises
        :class:`AttributeError` for any other name.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
