"""What every ``shale`` command shares: option sets, argument types, settings, stores, logging.

The ``shale`` command and the subcommands plugins add through ``shale_cli`` (``shale compactor
...``, ``shale gc run``, ``shale demo``) take the same database options, parse them the same way
and fail the same way; this module is the one implementation.

* :func:`database_options` -- the parent parser of every command that opens a database: the
  ``URL`` argument, ``--settings FILE`` and repeatable ``--store-option NAME=VALUE``
  (``add_subparsers().add_parser(name, parents=[database_options()])``).
* :func:`cli_settings` / :func:`settings_from_args` -- the settings a command opens a database
  with: CLI defaults (no background compactor or GC), then the file, then ``SHALE_*``.
* :func:`open_store` / :func:`opened_store`, :func:`require_database` -- the store of
  ``args.url`` and "is there a database at all" (``error: data: no database at URL``).
* :func:`count`, :func:`duration`, :func:`positive_duration` -- argument types.
* :func:`verbose_logging` -- ``shale -v``: the records of ``shale`` and of every loaded plugin's
  package (``shale_compactor``, ``shale_gc``, ``shale_minio``, ...) to stderr.

Invariant: a command that refuses its input raises :class:`~shale.errors.ShaleError`; ``shale``'s
main prints it as one line and exits with :data:`EXIT_ERROR`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shale.errors import DataError, InvalidError
from shale.plugins import get_host

if TYPE_CHECKING:
    from shale.objstore.protocol import ObjectStore
    from shale.settings import Settings

__all__ = [
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "cli_settings",
    "count",
    "database_options",
    "duration",
    "no_database",
    "open_store",
    "opened_store",
    "parse_store_options",
    "positive_duration",
    "require_database",
    "settings_from_args",
    "verbose_logging",
    "verbosity_options",
]

#: Exit codes of every ``shale`` command.
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_ERROR = 2

URL_HELP = "database directory or URL (file://, memory://, s3://)"
SETTINGS_HELP = "a shale.json / shale.toml settings file (SHALE_* variables override it)"
STORE_OPTION_HELP = (
    "an object-store option (value parsed as JSON when it is JSON), e.g. fsync=false; repeatable"
)


# -- option sets --------------------------------------------------------------------------------


def database_options(
    *, url: bool = True, settings_help: str = SETTINGS_HELP
) -> argparse.ArgumentParser:
    """The parent parser of a command that opens a database.

    :param url: add the positional ``URL`` argument (``args.url``) first.
    :param settings_help: the help of ``--settings`` (say which settings the command reads).
    :return: a parser without ``-h`` holding ``URL``, and a "database options" group with
        ``--settings FILE`` (``args.settings``) and ``--store-option NAME=VALUE``
        (``args.store_option``, a list or ``None``). Add it with ``parents=[...]``.
    """
    p = argparse.ArgumentParser(add_help=False, parents=[verbosity_options()])
    if url:
        p.add_argument("url", metavar="URL", help=URL_HELP)
    g = p.add_argument_group("database options")
    g.add_argument("--settings", metavar="FILE", help=settings_help)
    g.add_argument("--store-option", action="append", metavar="NAME=VALUE", help=STORE_OPTION_HELP)
    return p


def verbosity_options() -> argparse.ArgumentParser:
    """``-v``/``--verbose`` after the subcommand (``shale get URL KEY -v``): counted in
    ``args.verbose_after`` and added to the top-level ``-v`` count. (A second ``verbose`` dest
    would overwrite the top-level count: argparse copies a subcommand's defaults over it.)"""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "-v",
        "--verbose",
        dest="verbose_after",
        action="count",
        default=0,
        help="log progress to stderr (-vv for debug); also accepted before the subcommand",
    )
    return p


# -- argument types -----------------------------------------------------------------------------


def count(value: str) -> int:
    """An argument type: a whole number ``>= 0``."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n


def duration(value: str) -> float:
    """An argument type: seconds, or a duration such as ``10m`` or ``1s+500ms``
    (:func:`shale.settings.parse_duration`)."""
    from shale.settings import parse_duration

    try:
        return parse_duration(value)
    except InvalidError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration(value: str) -> float:
    """An argument type: a :func:`duration` ``> 0``."""
    seconds = duration(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return seconds


# -- settings and stores ------------------------------------------------------------------------


def cli_settings(
    settings_file: str | None = None,
    *,
    merge_operator: str | None = None,
    prefix_extractor: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """The settings a CLI command opens a database with.

    Layers: ``Settings(compactor_options=None, garbage_collector_options=None)``, then
    ``settings_file`` (:meth:`Settings.from_file`), then the ``SHALE_*`` environment
    (:meth:`Settings.from_env`), then ``merge_operator`` and ``prefix_extractor``.

    :raises InvalidError: a bad file, variable or value.
    """
    from shale.settings import Settings

    settings = Settings(compactor_options=None, garbage_collector_options=None)
    if settings_file:
        settings = Settings.from_file(settings_file, settings)
    settings = Settings.from_env(base=settings, environ=environ)
    if merge_operator:
        settings = settings.replace(merge_operator=merge_operator)
    if prefix_extractor:
        settings = settings.replace(prefix_extractor=prefix_extractor)
    return settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    """:func:`cli_settings` of a command's parsed :func:`database_options` (and, when the
    command has them, ``--merge-operator`` and ``--prefix-extractor``)."""
    return cli_settings(
        args.settings,
        merge_operator=getattr(args, "merge_operator", None),
        prefix_extractor=getattr(args, "prefix_extractor", None),
    )


def parse_store_options(items: list[str] | None) -> dict[str, Any]:
    """``--store-option NAME=VALUE`` arguments as a dict (values parsed as JSON when they can be).

    :raises InvalidError: an item without ``=`` or a name.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise InvalidError("--store-option takes NAME=VALUE", option=item)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out[name.strip()] = value
    return out


def open_store(args: argparse.Namespace) -> ObjectStore:
    """The object store of ``args.url`` with ``args.store_option`` (through the plugins).

    :raises InvalidError: no plugin owns the URL's scheme, or a bad option.
    """
    return get_host().open_object_store(args.url, parse_store_options(args.store_option))


@contextlib.contextmanager
def opened_store(args: argparse.Namespace) -> Iterator[ObjectStore]:
    """:func:`open_store`, closed on exit."""
    store = open_store(args)
    try:
        yield store
    finally:
        store.close()


def no_database(url: str) -> DataError:
    """The error of a command that needs a database where there is none."""
    return DataError(f"no database at {url} (no manifest found)")


def require_database(store: ObjectStore, url: str) -> None:
    """Raise :func:`no_database` unless ``store`` holds a database (a manifest) at its root."""
    from shale.meta.manifest_store import ManifestStore

    if not ManifestStore(store, "").exists():
        raise no_database(url)


# -- logging ------------------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def logger_names() -> list[str]:
    """``shale`` and the top-level package of every loaded plugin, sorted: the loggers
    ``shale -v`` shows (plugins log with ``logging.getLogger(__name__)``)."""
    names = {"shale"}
    for _name, plugin in get_host().manager.list_name_plugin():
        if plugin is None:
            continue
        module = getattr(plugin, "__name__", None) if isinstance(plugin, types.ModuleType) else None
        module = module or type(plugin).__module__
        names.add(module.split(".", 1)[0])
    names.discard("builtins")
    return sorted(names)


@contextlib.contextmanager
def verbose_logging(verbosity: int) -> Iterator[None]:
    """Log to stderr while inside when ``verbosity`` > 0 (``-v`` INFO, ``-vv`` DEBUG): the
    records of shale-core and of every loaded plugin's package (:func:`logger_names`)."""
    if verbosity <= 0:
        yield
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logging.INFO if verbosity == 1 else logging.DEBUG
    loggers = [logging.getLogger(name) for name in logger_names()]
    old_levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, old_levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(old)
