"""The plugin host: one pluggy manager per process, loaded lazily.

Loading order: built-in plugins first (the local and in-memory stores, the filter policies),
then the ``shale`` entry points unless ``SHALE_DISABLE_PLUGIN_AUTOLOAD`` is set. Names in
``SHALE_DISABLED_PLUGINS`` are blocked. A plugin that fails to import or register is logged and
skipped: one broken plugin never stops the database from opening.

:class:`PluginHost` is a typed facade over ``manager.hook`` so call sites never pass
``**kwargs`` to pluggy.
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points
from typing import Any

import pluggy

from shale import env
from shale.errors import InvalidError
from shale.objstore.protocol import ObjectStore
from shale.plugins import hookspecs

log = logging.getLogger(__name__)

PROJECT = "shale"
ENTRY_POINT_GROUP = "shale"

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
        return self.manager.register(plugin, name=name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Unregister a plugin by object or name."""
        return self.manager.unregister(plugin=plugin, name=name)

    def plugin_names(self) -> list[str]:
        """Names of every registered plugin, in registration order."""
        return [n for n, p in self.manager.list_name_plugin() if p is not None]

    # -- typed hook calls -----------------------------------------------------------------

    def open_object_store(self, url: str, options: dict[str, Any] | None = None) -> Any:
        """Open the store for ``url`` through ``shale_open_object_store``.

        :raises InvalidError: when no plugin owns the URL's scheme.
        """
        store = self.manager.hook.shale_open_object_store(url=url, options=dict(options or {}))
        if store is None:
            scheme = url.split("://", 1)[0] if "://" in url else "file"
            raise InvalidError(
                "no object-store plugin handles this URL; install the backend that owns the scheme",
                url=url,
                scheme=scheme,
            )
        return store

    def filter_policies(self, settings: Any) -> list[Any]:
        """Every filter policy offered by plugins, in hook call order."""
        out: list[Any] = []
        for policies in self.manager.hook.shale_filter_policy(settings=settings):
            out.extend(policies or ())
        return out

    def block_transformer(self, settings: Any) -> Any:
        return self.manager.hook.shale_block_transformer(settings=settings)

    def merge_operator(self, name: str) -> Any:
        return self.manager.hook.shale_merge_operator(name=name)

    def prefix_extractor(self, name: str) -> Any:
        return self.manager.hook.shale_prefix_extractor(name=name)

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observer hook on every implementation; one failure does not stop the rest."""
        hook = getattr(self.manager.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):
            try:
                impl.function(*[kwargs[a] for a in impl.argnames])
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)

    def add_cli(self, subparsers: Any) -> None:
        self.manager.hook.shale_cli(subparsers=subparsers)


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
    """
    store: ObjectStore = get_host().open_object_store(url, dict(options))
    return store
