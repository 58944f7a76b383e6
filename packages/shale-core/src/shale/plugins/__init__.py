"""The plugin host: one pluggy manager per process, loaded lazily.

Loading order: built-in plugins first (the local and in-memory stores, the filter policies),
then the ``shale`` entry points unless ``SHALE_DISABLE_PLUGIN_AUTOLOAD`` is set. Names in
``SHALE_DISABLED_PLUGINS`` are blocked. A plugin that fails to import or register is logged and
skipped: one broken plugin never stops the database from opening.

:class:`PluginHost` is a typed facade over ``manager.hook`` (tox style): one method per hook
(``host.db_opened(db)``, ``host.merge_operator(name)``, ...), so call sites never name a hook
as a string nor pass ``**kwargs`` to pluggy. shale-compactor and shale-gc put the same kind of
facade over the hooks they add (``shale_compactor.hooks``, ``shale_gc.hooks``), calling their
observers with :func:`call_observers`.

Observers (``shale_db_opened``, ``shale_db_closed``, and the extension packages' ``*_finished``
hooks) are called through pluggy, so ``wrapper=True`` implementations wrap them as usual, but
each plain implementation is isolated: one that raises is logged with its plugin's name and the
others still run (pluggy alone stops at the first exception).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from shale import env, ids, tracing
from shale.errors import InvalidError
from shale.markers import PROJECT
from shale.objstore.protocol import ObjectStore
from shale.plugins import hookspecs

if TYPE_CHECKING:
    from shale.admin import Admin
    from shale.db import Db
    from shale.fbs.manifest import Manifest
    from shale.merge_operators import MergeOperator
    from shale.meta.segments import PrefixExtractor
    from shale.settings import Settings
    from shale.sst.compression import BlockTransformer
    from shale.sst.filters import FilterPolicy

__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "PluginHost",
    "call_observers",
    "get_host",
    "open_store",
    "reset_host",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = PROJECT

#: Built-in plugins, registered under these names before any entry point.
BUILTINS: dict[str, str] = {
    "shale.local": "shale.objstore.local",
    "shale.memory": "shale.objstore.memory",
    "shale.filters": "shale.sst.filters",
    "shale.merge_operators": "shale.merge_operators",
    "shale.segments": "shale.meta.segments",
}


class PluginHost:
    """Owns a :class:`pluggy.PluginManager` and calls its hooks with typed methods."""

    def __init__(self, *, autoload: bool | None = None) -> None:
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.failed: dict[str, str] = {}
        blocked = set(env.csv(env.DISABLED_PLUGINS))
        for name in blocked:
            self.manager.set_blocked(name)
        for name, modname in BUILTINS.items():
            if name in blocked:
                continue
            self._register_module(name, modname)
        if autoload is None:
            autoload = not env.flag(env.DISABLE_PLUGIN_AUTOLOAD)
        if autoload:
            self._load_entry_points(blocked)
        self.manager.hook.shale_addhooks.call_historic(kwargs={"pluginmanager": self.manager})
        self.manager.check_pending()
        self._install_tracer()

    def _register_module(self, name: str, modname: str) -> None:
        try:
            module = importlib.import_module(modname)
            self.manager.register(module, name=name)
        except Exception as exc:  # a broken plugin is logged and skipped
            log.warning("plugin %s failed to load and was skipped: %s", name, exc)
            self.failed[name] = f"{type(exc).__name__}: {exc}"

    def _load_entry_points(self, blocked: set[str]) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or self.manager.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
                self.manager.register(plugin, name=ep.name)
            except Exception as exc:
                log.warning("plugin %s failed to load and was skipped: %s", ep.name, exc)
                self.failed[ep.name] = f"{type(exc).__name__}: {exc}"

    # -- registration ---------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` (a module or object with ``@hookimpl`` methods)."""
        registered = self.manager.register(plugin, name=name)
        self._install_tracer()
        return registered

    def _install_tracer(self) -> None:
        """Install the tracer of ``shale_tracer`` unless one is installed already."""
        if tracing.get_tracer() is None:
            found = self.tracer()
            if found is not None:
                tracing.set_tracer(found)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Unregister a plugin by object or name."""
        return self.manager.unregister(plugin=plugin, name=name)

    def plugin_names(self) -> list[str]:
        """Names of every registered plugin, in registration order."""
        return [n for n, p in self.manager.list_name_plugin() if p is not None]

    # -- typed hook calls: one method per hook -------------------------------------------

    def open_object_store(self, url: str, options: dict[str, Any] | None = None) -> ObjectStore:
        """Open the store for ``url`` through ``shale_open_object_store``.

        :raises InvalidError: when no plugin owns the URL's scheme.
        """
        store: ObjectStore | None = self.manager.hook.shale_open_object_store(
            url=url, options=dict(options or {})
        )
        if store is None:
            scheme = url.split("://", 1)[0] if "://" in url else "file"
            raise InvalidError(
                "no object-store plugin handles this URL; install the backend that owns the scheme",
                url=url,
                scheme=scheme,
            )
        return store

    def filter_policies(self, settings: Settings | None) -> list[FilterPolicy]:
        """Every filter policy offered through ``shale_filter_policy``, in hook call order."""
        out: list[FilterPolicy] = []
        for policies in self.manager.hook.shale_filter_policy(settings=settings):
            out.extend(policies or ())
        return out

    def configured_filter_policies(self, settings: Settings) -> list[FilterPolicy]:
        """The policies ``settings.filter_policies`` names, in that order: each one a plugin
        offers (:meth:`filter_policies`), else a prefix bloom named as SlateDB names it
        (``"_bf:p=<extractor>"``, ``":wh=0"`` appended without whole-key filtering) whose
        extractor ``shale_prefix_extractor`` provides, with ``settings.filter_bits_per_key``.

        :raises InvalidError: a name neither offered nor a prefix bloom (``"_bf:wh=0"``, a
            bloom without extractor nor whole keys, is not one), or a prefix bloom whose
            extractor no plugin provides (or provides under another name).
        """
        from shale.meta.segments import check_extractor
        from shale.sst import prefix_bloom
        from shale.sst.filters import BloomFilterPolicy

        offered = {p.name: p for p in self.filter_policies(settings)}
        out: list[FilterPolicy] = []
        missing: list[str] = []
        for name in settings.filter_policies:
            policy = offered.get(name)
            parsed = None if policy is not None else prefix_bloom.parse_policy_name(name)
            if policy is None and (parsed is None or parsed[0] is None):
                missing.append(name)
                continue
            if policy is None:
                assert parsed is not None and parsed[0] is not None
                extractor = self.prefix_extractor(parsed[0])
                if extractor is None:
                    raise InvalidError(
                        "no plugin provides the prefix extractor of this filter policy",
                        filter_policy=name,
                        prefix_extractor=parsed[0],
                    )
                policy = BloomFilterPolicy(
                    settings.filter_bits_per_key,
                    prefix_extractor=check_extractor(extractor),
                    whole_key_filtering=parsed[1],
                )
                if policy.name != name:
                    raise InvalidError(
                        "the prefix extractor a plugin provides has another name",
                        filter_policy=name,
                        extractor_name=extractor.name,
                    )
            out.append(policy)
        if missing:
            raise InvalidError("unknown filter policy", names=missing)
        return out

    def block_transformer(self, settings: Settings | None) -> BlockTransformer | None:
        """The block transformer of ``shale_block_transformer``, or ``None``."""
        found: BlockTransformer | None = self.manager.hook.shale_block_transformer(
            settings=settings
        )
        return found

    def merge_operator(self, name: str) -> MergeOperator | None:
        """The merge operator registered under ``name`` (``shale_merge_operator``), or ``None``."""
        found: MergeOperator | None = self.manager.hook.shale_merge_operator(name=name)
        return found

    def prefix_extractor(self, name: str) -> PrefixExtractor | None:
        """The prefix extractor registered under ``name`` (``shale_prefix_extractor``), or
        ``None``."""
        found: PrefixExtractor | None = self.manager.hook.shale_prefix_extractor(name=name)
        return found

    def db_opened(self, db: Db) -> None:
        """Tell the observers of ``shale_db_opened`` (isolated: see :func:`call_observers`)."""
        call_observers(self.manager.hook.shale_db_opened, db=db)

    def db_closed(self, db: Db, reason: str) -> None:
        """Tell the observers of ``shale_db_closed`` (isolated: see :func:`call_observers`)."""
        call_observers(self.manager.hook.shale_db_closed, db=db, reason=reason)

    def l0_flushed(self, db: Db, manifest: Manifest) -> None:
        """Tell the observers of ``shale_l0_flushed`` (isolated: see :func:`call_observers`)."""
        call_observers(self.manager.hook.shale_l0_flushed, db=db, manifest=manifest)

    def admin_run_gc_once(self, admin: Admin, options: Any) -> object | None:
        """The report of one GC run by the plugin that collects (``shale_admin_run_gc_once``),
        or ``None`` when no installed plugin does."""
        return self.manager.hook.shale_admin_run_gc_once(admin=admin, options=options)  # type: ignore[no-any-return]

    def admin_submit_compaction(self, admin: Admin, spec: Any) -> object | None:
        """The compaction submitted by the plugin that compacts
        (``shale_admin_submit_compaction``), or ``None`` when no installed plugin does."""
        return self.manager.hook.shale_admin_submit_compaction(admin=admin, spec=spec)  # type: ignore[no-any-return]

    def tracer(self) -> tracing.Tracer | None:
        """The tracer offered through ``shale_tracer``, or ``None``."""
        found: tracing.Tracer | None = self.manager.hook.shale_tracer()
        return found

    def add_cli(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Let plugins add ``shale`` subcommands (``shale_cli``)."""
        self.manager.hook.shale_cli(subparsers=subparsers)


_GUARD_ATTR = "__shale_isolated__"
_guard_lock = threading.Lock()


def _isolated(function: Callable[..., object], plugin: str, hook: str) -> Callable[..., object]:
    """``function``, but an exception it raises is logged with ``plugin``'s name, not raised."""

    @functools.wraps(function)
    def guard(*args: object) -> object:
        try:
            return function(*args)
        except Exception:
            log.exception("plugin %s failed in %s", plugin, hook)
            return None

    setattr(guard, _GUARD_ATTR, True)
    return guard


def call_observers(hook: pluggy.HookCaller, **kwargs: object) -> None:
    """Call the observer hook ``hook`` through pluggy, each implementation isolated.

    For facades over observer hooks (``PluginHost.db_opened``, the compactor's and GC's
    ``*_finished``); other call sites use the facades' typed methods.

    pluggy stops at the first exception of an implementation; an observer must not stop the
    others. So every plain implementation is given a guard once (its ``function`` is replaced
    by one that logs ``plugin NAME failed in HOOK`` with the traceback and returns ``None``),
    and the call then goes through pluggy as usual: ``wrapper=True`` (and old-style
    ``hookwrapper=True``) implementations run around the observers and see their results. A
    wrapper that raises is logged too; nothing raised by a plugin reaches the caller.
    """
    with _guard_lock:
        for impl in hook.get_hookimpls():
            if impl.wrapper or impl.hookwrapper or getattr(impl.function, _GUARD_ATTR, False):
                continue
            # HookImpl.function is Final to type checkers only; pluggy reads it at each call
            object.__setattr__(
                impl, "function", _isolated(impl.function, impl.plugin_name, hook.name)
            )
    try:
        hook(**kwargs)
    except Exception:
        log.exception("a hook wrapper failed in %s", hook.name)


_host: PluginHost | None = None
_lock = threading.Lock()


def get_host() -> PluginHost:
    """The process-wide plugin host, created on first use."""
    global _host
    with _lock:
        if _host is None:
            _host = PluginHost()
        return _host


def reset_host() -> None:
    """Forget the process-wide host (tests use this after changing the environment)."""
    global _host
    with _lock:
        _host = None


def open_store(url: str, **options: object) -> ObjectStore:
    """Open the object store for ``url`` through the plugin host.

    Plain paths and ``file://`` URLs open a local directory, ``memory://`` an in-memory store,
    other schemes whichever installed plugin owns them (``s3://`` with ``shale-minio``).
    ``url`` may be an ``os.PathLike`` (a ``pathlib.Path``).
    """
    return get_host().open_object_store(ids.location(url, "url"), dict(options))
