"""The garbage collector: :class:`GarbageCollector` runs the rules of :mod:`shale_gc.rules`
against a database in an object store, once (:meth:`~GarbageCollector.run_once`) or on a
schedule (:meth:`~GarbageCollector.run`).

A round, for each enabled directory (``manifest``, ``wal``, ``compacted``, ``compactions``, in
that order, as SlateDB):

1. **Expired checkpoints are removed from the manifest first**, by writing a new manifest
   version through the normal update loop (:meth:`shale.meta.manifest_store.StoredManifest.update`
   with :func:`~shale.meta.manifest_store.remove_expired_checkpoints`). The collector is neither the
   writer nor the compactor: it claims no epoch and fences nobody; on a conflict it reloads and
   re-applies, like any other manifest client. If this fails the round collects nothing.
2. The state is read -- the ``.compactions`` file **before** the manifest, then every manifest
   a live checkpoint pins (:func:`shale_gc.state.read_state`) -- and the directory is listed.
3. The pure rules pick candidates; every ``shale_gc_filter`` plugin may veto some.
4. For manifests and ``.compactions`` files the GC boundary is advanced past the candidates
   before anything is deleted (FORMAT.md 10.5).
5. Candidates are deleted. Deletes are idempotent (deleting a missing object succeeds); a
   failed delete is logged, reported, and naturally retried next round (the object is still
   garbage). Nothing a round does raises: errors end up in the :class:`GcReport`.

A dry run (``dry_run=True``) reads and decides exactly as a real run -- expired checkpoints are
left out of the view as if removed, filters are asked -- but writes and deletes nothing; its
report lists what a real run at the same moment would delete.

Thread safety: rounds of one collector are serialized by a lock; several collectors (or
processes) may work on one database at once -- every step above is safe against a concurrent
collector, writer or compactor.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

from shale.spi import (
    Clock,
    CompactionsStore,
    DataError,
    GarbageCollectorOptions,
    GcDirectoryOptions,
    GcMetrics,
    InvalidError,
    Manifest,
    ManifestStore,
    ObjectStore,
    PermanentStoreError,
    ShaleError,
    StoredManifest,
    SystemClock,
    Ulid,
    detach,
    dir_path,
    format_id,
    get_logger,
    open_store,
    parse_compacted,
    parse_numbered,
    registry_for,
    remove_expired_checkpoints,
    trace_span,
)
from shale_gc.hooks import GcHooks
from shale_gc.report import (
    KIND_COMPACTED,
    KIND_COMPACTIONS,
    KIND_MANIFEST,
    KIND_WAL,
    KINDS,
    GcObject,
    GcReport,
    KindReport,
)
from shale_gc.rules import (
    GcStateView,
    Selection,
    select_compacted,
    select_compactions,
    select_manifests,
    select_wal,
)
from shale_gc.state import read_state

__all__ = [
    "DETACH_COPY",
    "DETACH_RELEASE",
    "PROGRESS_EVERY",
    "GarbageCollector",
    "ProgressCallback",
]

#: ``GarbageCollector(detach=...)``: release sources a clone no longer reads (SlateDB's).
DETACH_RELEASE = "release"
#: ``GarbageCollector(detach=...)``: copy what a clone still reads, then release every source.
DETACH_COPY = "copy"

logger = get_logger(__name__)

#: Progress is reported (and logged at INFO) every this many objects listed or deleted.
PROGRESS_EVERY = 1000
#: Listing progress is logged at INFO every this many objects (large buckets).
LOG_EVERY = 10_000

#: ``progress(kind, phase, count)``: ``phase`` is ``"listed"`` or ``"deleted"``; called every
#: :data:`PROGRESS_EVERY` objects and once at the end of each phase.
ProgressCallback = Callable[[str, str, int], None]

_Selector = Callable[..., Selection]
_SELECT: dict[str, _Selector] = {
    KIND_MANIFEST: select_manifests,
    KIND_WAL: select_wal,
    KIND_COMPACTED: select_compacted,
    KIND_COMPACTIONS: select_compactions,
}
_SUFFIX = {
    KIND_MANIFEST: ".manifest",
    KIND_WAL: ".sst",
    KIND_COMPACTED: ".sst",
    KIND_COMPACTIONS: ".compactions",
}


#: A staging file untouched this long belongs to a dead upload (a live one writes as it goes).
STAGING_MAX_AGE_S = 3600.0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ShaleError):
        return f"{exc.kind}: {exc}"
    return f"{type(exc).__name__}: {exc}"


class GarbageCollector:
    """Deletes the files of a database that nothing can reach any more.

    :param store: the object store holding the database.
    :param root: the database's path inside the store (``""`` for the store's root).
    :param options: which directories to collect, how often and how old files must be;
        a directory set to ``None`` is never collected. Default: all four, every 60 s, 300 s.
    :param clock: an object with ``now_ms()`` (:class:`shale.clock.Clock`); the system clock by
        default. Ages compare it with the store's ``last_modified`` and with ULID timestamps,
        so it must be the same time base as the writers' clocks.
    :param dry_run: decide and report, but write and delete nothing.
    :param manifest_format_version: the manifest wire version written when expired
        checkpoints are removed (use the database's ``Settings.manifest_format_version``).
    :param progress: optional :data:`ProgressCallback` for large listings and deletions.
    :param manifest_update_timeout: seconds the expired-checkpoint update retries conflicts.
    :param detach: detach a clone from its sources each round, before collecting (SlateDB's
        detach GC, ``detach_options``; :mod:`shale.meta.detach`): ``"release"`` deletes the
        final checkpoint a clone holds in each source it no longer reads (its compactions
        replaced every source SST) and drops the reference; ``"copy"`` first copies the
        source SSTs still read into the clone's own path, so every source is released once
        no live checkpoint of the clone pins them. ``None`` (default): no detaching. A dry
        run does not detach.
    """

    def __init__(
        self,
        store: ObjectStore,
        root: str = "",
        options: GarbageCollectorOptions | None = None,
        *,
        clock: Clock | None = None,
        dry_run: bool = False,
        manifest_format_version: int = 2,
        progress: ProgressCallback | None = None,
        manifest_update_timeout: float = 300.0,
        detach: str | None = None,
        wal_store: ObjectStore | None = None,
    ) -> None:
        if detach not in (None, DETACH_RELEASE, DETACH_COPY):
            raise InvalidError("detach must be None, 'release' or 'copy'", detach=detach)
        self.detach = detach
        if not isinstance(root, str):
            raise InvalidError("root must be a str", type=type(root).__name__)
        if options is not None and not isinstance(options, GarbageCollectorOptions):
            raise InvalidError(
                "options must be a GarbageCollectorOptions", type=type(options).__name__
            )
        self.store = store
        #: the database's separate WAL store (``None``: the WAL is in :attr:`store`, unless the
        #: manifest's ``wal_object_store_uri`` names one: then it is opened from that URL)
        self.wal_store = wal_store
        self._owns_wal_store = False
        self.root = root.strip("/")
        #: rounds, deleted objects by resource (the registry of the handle that opened ``store``,
        #: else the process-wide one; docs/metrics.md)
        self.metrics = GcMetrics(registry_for(store))
        self.options = options if options is not None else GarbageCollectorOptions()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.dry_run = dry_run
        self.progress = progress
        self.manifest_update_timeout = manifest_update_timeout
        self.manifest_store = ManifestStore(
            store, self.root, format_version=manifest_format_version
        )
        #: Read (latest version) and boundary-advanced only: the collector never writes a
        #: ``.compactions`` version, so its format version does not matter.
        self.compactions_store = CompactionsStore(store, self.root)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        #: Rounds completed by this collector.
        self.rounds = 0
        #: The first permanent object-store error (access denied, missing bucket) met; once set,
        #: :meth:`run` stops: retrying every interval would only repeat it.
        self.permanent_error: PermanentStoreError | None = None

    def __repr__(self) -> str:
        mode = ", dry_run" if self.dry_run else ""
        return f"GarbageCollector(root={self.root!r}{mode})"

    # -- configuration ------------------------------------------------------------------------

    def directory_options(self, kind: str) -> GcDirectoryOptions | None:
        """The options of one directory (``None``: not collected)."""
        opts: GcDirectoryOptions | None = getattr(self.options, kind)
        return opts

    @property
    def enabled_kinds(self) -> list[str]:
        """The directories this collector collects, in collection order."""
        return [k for k in KINDS if self.directory_options(k) is not None]

    # -- running ------------------------------------------------------------------------------

    def run_once(self, kinds: Iterable[str] | None = None) -> GcReport:
        """Collect every enabled directory (or only ``kinds``) once; never raises for storage
        or data problems -- they are in the report.

        :param kinds: a subset of ``"manifest"``, ``"wal"``, ``"compacted"``,
            ``"compactions"``; directories disabled in the options are skipped.
        """
        if kinds is not None and (
            isinstance(kinds, (str, bytes))
            or not isinstance(kinds, Iterable)
            or not all(isinstance(k, str) for k in kinds)
        ):
            raise InvalidError("kinds must be an iterable of directory names", kinds=kinds)
        wanted = self.enabled_kinds if kinds is None else [k for k in KINDS if k in set(kinds)]
        return self._round([k for k in wanted if self.directory_options(k) is not None])

    def run(
        self,
        stop_event: threading.Event,
        *,
        on_report: Callable[[GcReport], None] | None = None,
        start_immediately: bool = True,
    ) -> None:
        """Collect on each directory's ``interval`` until ``stop_event`` is set.

        Each directory with an interval runs at once (or, with ``start_immediately=False``,
        one interval after the call), then every ``interval`` seconds after its previous round
        ended. Directories whose interval is ``None`` are not run here (use :meth:`run_once`).
        Errors are logged and reported, never raised. A permanent object-store error (access
        denied, missing bucket: :class:`~shale.objstore.PermanentStoreError`) stops the loop
        after that round, logged as an error and kept in :attr:`permanent_error`.

        :param on_report: called with each round's report (after ``shale_gc_finished``).
        :param start_immediately: run the first round now rather than after one interval.
        """
        intervals = {}
        for kind in self.enabled_kinds:
            opts = self.directory_options(kind)
            if opts is not None and opts.interval is not None:
                intervals[kind] = opts.interval
        if not intervals:
            logger.info("no directory has a GC interval; the GC loop has nothing to do")
            return
        self._stop = stop_event
        try:
            self._loop(stop_event, intervals, on_report, start_immediately)
        finally:
            self._stop = threading.Event()
        logger.info("garbage collector stopped root=%s rounds=%d", self.root, self.rounds)

    def _loop(
        self,
        stop_event: threading.Event,
        intervals: dict[str, float],
        on_report: Callable[[GcReport], None] | None,
        start_immediately: bool,
    ) -> None:
        logger.info(
            "garbage collector started root=%s intervals=%s dry_run=%s",
            self.root,
            intervals,
            self.dry_run,
        )
        start = time.monotonic()
        next_due = {k: start + (0.0 if start_immediately else iv) for k, iv in intervals.items()}
        while not stop_event.is_set():
            now = time.monotonic()
            due = [k for k in KINDS if k in next_due and next_due[k] <= now]
            if not due:
                stop_event.wait(max(0.0, min(next_due.values()) - now))
                continue
            try:
                report = self._round(due)
                if on_report is not None:
                    on_report(report)
            except Exception as exc:  # never fatal: the next round tries again
                self._note_permanent(exc)
                logger.exception("garbage collection round failed")
            if self.permanent_error is not None:
                logger.error(
                    "garbage collector stopped root=%s: the object store refuses permanently "
                    "(fix its configuration or permissions, then restart): %s",
                    self.root,
                    self.permanent_error,
                )
                return
            done = time.monotonic()
            for k in due:
                next_due[k] = done + intervals[k]

    # -- one round ----------------------------------------------------------------------------

    def _round(self, kinds: Sequence[str]) -> GcReport:
        with trace_span("shale.gc.run", **{"shale.root": self.root}):
            return self._traced_round(kinds)

    def _traced_round(self, kinds: Sequence[str]) -> GcReport:
        with self._lock:
            report = GcReport(dry_run=self.dry_run, started_ms=self.clock.now_ms())
            # one expiry time for the whole round: the checkpoints removed first are exactly
            # those every collector of the round leaves out of its view
            expiry_s = report.started_ms // 1000
            try:
                report.expired_checkpoints = self._remove_expired_checkpoints(expiry_s)
            except Exception as exc:
                self._note_permanent(exc)
                msg = f"removing expired checkpoints failed; nothing collected: {_describe(exc)}"
                logger.warning("gc: %s root=%s", msg, self.root)
                report.errors.append(msg)
                kinds = []
            if self.detach is not None and kinds and not self.dry_run:
                try:
                    report.detach = detach(
                        self.store,
                        self.root,
                        now_s=expiry_s,
                        copy=self.detach == DETACH_COPY,
                        format_version=self.manifest_store.format_version,
                        timeout=self.manifest_update_timeout,
                    )
                except Exception as exc:
                    self._note_permanent(exc)
                    msg = f"detaching from clone sources failed: {_describe(exc)}"
                    logger.warning("gc: %s root=%s", msg, self.root)
                    report.errors.append(msg)
            for kind in kinds:
                if self._stop.is_set():
                    break
                report.kinds[kind] = self._collect(kind, expiry_s)
            if kinds and not self.dry_run:
                report.staging_swept = self._sweep_staging()
            report.finished_ms = self.clock.now_ms()
            self.rounds += 1
        self._log_report(report)
        self.metrics.round(
            (report.finished_ms - report.started_ms) / 1000,
            {}
            if report.dry_run
            else {k: (len(r.deleted), r.bytes_freed) for k, r in report.kinds.items()},
        )
        self._notify_finished(report)
        return report

    def _sweep_staging(self) -> list[str]:
        """Stale staging files a killed upload left (stores that have them: local directories;
        an S3 multipart upload is cleaned by the bucket's own lifecycle rules)."""
        sweep = getattr(self.store, "sweep_staging", None)
        if not callable(sweep):
            return []
        try:
            swept: list[str] = sweep(self.root, older_than_s=STAGING_MAX_AGE_S)
        except Exception as exc:  # never fails the round: they are only wasted space
            logger.warning("gc: sweeping stale staging files failed: %s", _describe(exc))
            return []
        if swept:
            logger.info("gc: removed %d stale staging files under %s", len(swept), self.root)
        return swept

    def _remove_expired_checkpoints(self, now_s: int) -> list[uuid.UUID]:
        """Drop checkpoints expired at ``now_s`` from the manifest (dry run: only report)."""
        if self.dry_run:
            latest = self.manifest_store.read_latest()
            if latest is None:
                return []
            m = latest[1]
            trimmed = remove_expired_checkpoints(m, now_s)
            kept = {cp.id for cp in trimmed.checkpoints}
            return [cp.id for cp in m.checkpoints if cp.id not in kept]
        stored = StoredManifest.try_load(self.manifest_store)
        if stored is None:
            raise DataError("no manifest found: not a database", root=self.root)
        removed: list[uuid.UUID] = []

        def mutate(m: Manifest, _next_id: int) -> Manifest | None:
            trimmed = remove_expired_checkpoints(m, now_s)
            kept = {cp.id for cp in trimmed.checkpoints}
            removed[:] = [cp.id for cp in m.checkpoints if cp.id not in kept]
            return None if trimmed is m else trimmed

        stored.update(mutate, timeout=self.manifest_update_timeout)
        if removed:
            logger.info(
                "gc removed expired checkpoints root=%s ids=%s manifest_id=%d",
                self.root,
                [str(c) for c in removed],
                stored.id,
            )
        return removed

    def _collect(self, kind: str, expiry_s: int) -> KindReport:
        opts = self.directory_options(kind)
        assert opts is not None
        kr = KindReport(kind=kind, min_age=opts.min_age)
        try:
            now_ms = self.clock.now_ms()
            view = read_state(
                self.manifest_store,
                self.compactions_store,
                now_s=expiry_s,
                compactions=kind in (KIND_COMPACTED, KIND_COMPACTIONS),
                checkpoints=kind in (KIND_WAL, KIND_COMPACTED),
                pending_manifest=self.dry_run,
                consumers=kind == KIND_WAL,
            )
            if kind == KIND_WAL and not self._find_wal_store(view.manifest):
                kr.error = (
                    "the manifest records a separate WAL store "
                    f"({view.manifest.wal_object_store_uri!r}) and none was given; WAL GC skipped"
                )
                logger.warning("gc: %s root=%s", kr.error, self.root)
                return kr
            objects = self._list(kind)
            selection = self._select(kind, objects, view, now_ms, opts)
            kr.kept.extend(selection.keep)
            allowed, vetoed = self._filter(kind, selection.delete)
            kr.kept.extend(vetoed)
            if not allowed:
                return kr
            if kind in (KIND_MANIFEST, KIND_COMPACTIONS):
                boundary = max(o.id for o in allowed if isinstance(o.id, int))
                kr.boundary = boundary
                if not self.dry_run:
                    versions = (
                        self.manifest_store if kind == KIND_MANIFEST else self.compactions_store
                    )
                    versions.advance_boundary(boundary)
            if self.dry_run:
                kr.deleted.extend(allowed)
            else:
                self._delete(kr, allowed)
        except Exception as exc:  # never fatal: report, log, try again next round
            self._note_permanent(exc)
            kr.error = _describe(exc)
            if isinstance(exc, ShaleError):
                logger.warning("gc %s failed root=%s: %s", kind, self.root, kr.error)
            else:
                logger.exception("gc %s failed root=%s", kind, self.root)
        return kr

    @staticmethod
    def _select(
        kind: str,
        objects: Sequence[GcObject],
        view: GcStateView,
        now_ms: int,
        opts: GcDirectoryOptions,
    ) -> Selection:
        return _SELECT[kind](objects, view, now_s=now_ms / 1000, min_age_s=opts.min_age)

    # -- listing and deleting -----------------------------------------------------------------

    def _find_wal_store(self, m: Manifest) -> bool:
        """Make sure the WAL store is known: given, not needed, or opened from ``m``'s
        ``wal_object_store_uri`` (a URL; SlateDB records only ``""``). False: it is not."""
        uri = m.wal_object_store_uri
        if uri is None or self.wal_store is not None:
            return True
        if not uri:
            return False
        self.wal_store = open_store(uri)
        self._owns_wal_store = True
        return True

    def close(self) -> None:
        """Close the WAL store this collector opened from a manifest's URI (if any)."""
        if self._owns_wal_store and self.wal_store is not None:
            self._owns_wal_store = False
            self.wal_store.close()

    def _store_of(self, kind: str) -> ObjectStore:
        """The store holding ``kind``'s directory."""
        if kind == KIND_WAL and self.wal_store is not None:
            return self.wal_store
        return self.store

    def _parse(self, kind: str, name: str) -> int | Ulid | None:
        """The id of a canonical object name of ``kind``'s directory, else ``None``."""
        if "/" in name:
            return None
        suffix = _SUFFIX[kind]
        if kind == KIND_COMPACTED:
            ulid = parse_compacted(name)
            return ulid if ulid is not None and name == f"{ulid}{suffix}" else None
        n = parse_numbered(name, suffix)
        return n if n is not None and name == format_id(n) + suffix else None

    def _list(self, kind: str) -> list[GcObject]:
        prefix = dir_path(self.root, kind)
        out: list[GcObject] = []
        ignored = 0
        for meta in self._store_of(kind).list(prefix):
            oid = self._parse(kind, meta.key[len(prefix) :])
            if oid is None:
                ignored += 1
                logger.debug("gc ignoring unknown object key=%s", meta.key)
                continue
            out.append(GcObject(kind, meta.key, oid, meta.size, meta.last_modified))
            n = len(out)
            if n % PROGRESS_EVERY == 0:
                self._progress(kind, "listed", n)
            if n % LOG_EVERY == 0:
                logger.info("gc listing %s root=%s objects=%d", kind, self.root, n)
        self._progress(kind, "listed", len(out))
        if ignored:
            logger.info("gc ignored %d unknown object(s) in %s", ignored, prefix)
        return out

    def _delete(self, kr: KindReport, objects: Sequence[GcObject]) -> None:
        total = len(objects)
        for i, obj in enumerate(objects, 1):
            if self._stop.is_set():
                logger.info("gc stopping mid-round; %d %s deletion(s) left", total - i + 1, kr.kind)
                break
            try:
                self._store_of(kr.kind).delete(obj.key)
            except Exception as exc:  # retried next round: the object is still garbage
                kr.failed.append((obj, _describe(exc)))
                logger.warning("gc could not delete key=%s (retried next round): %s", obj.key, exc)
                if self._note_permanent(exc):
                    break  # every other delete would be refused the same way
            else:
                kr.deleted.append(obj)
                logger.debug("gc deleted key=%s size=%d", obj.key, obj.size)
            if i % PROGRESS_EVERY == 0:
                self._progress(kr.kind, "deleted", i)
                logger.info("gc deleting %s root=%s done=%d of %d", kr.kind, self.root, i, total)
        self._progress(kr.kind, "deleted", len(kr.deleted))

    def _note_permanent(self, exc: BaseException) -> bool:
        """Remember the first permanent store error; True when ``exc`` is one."""
        if not isinstance(exc, PermanentStoreError):
            return False
        if self.permanent_error is None:
            self.permanent_error = exc
        return True

    def _progress(self, kind: str, phase: str, count: int) -> None:
        if self.progress is None:
            return
        try:
            self.progress(kind, phase, count)
        except Exception:
            logger.exception("gc progress callback failed")

    # -- plugins ------------------------------------------------------------------------------

    def _filter(
        self, kind: str, candidates: list[GcObject]
    ) -> tuple[list[GcObject], list[tuple[GcObject, str]]]:
        """Ask every ``shale_gc_filter`` implementation; keep what any of them does not allow."""
        if not candidates:
            return [], []
        try:
            hooks = _hooks()
        except Exception:  # cannot ask the plugins: keep everything (fail safe)
            logger.exception("gc could not load the plugin host; keeping every %s candidate", kind)
            why = "kept: the shale_gc_filter plugins could not be asked"
            return [], [(o, why) for o in candidates]
        allowed_keys = {o.key for o in candidates}
        vetoed_by: dict[str, str] = {}
        for plugin_name, answer in hooks.gc_filter(candidates, kind):
            if answer is None:
                continue
            keys = {getattr(o, "key", None) for o in answer}
            for key in allowed_keys - keys:
                vetoed_by.setdefault(key, plugin_name)
            allowed_keys &= keys
        allowed = [o for o in candidates if o.key in allowed_keys]
        vetoed = [
            (o, f"kept by the shale_gc_filter plugin {vetoed_by[o.key]}")
            for o in candidates
            if o.key not in allowed_keys
        ]
        return allowed, vetoed

    def _notify_finished(self, report: GcReport) -> None:
        try:
            hooks = _hooks()
        except Exception:
            logger.exception("gc could not load the plugin host")
            return
        hooks.gc_finished(report)

    def _log_report(self, report: GcReport) -> None:
        verb = "would delete" if report.dry_run else "deleted"
        counts = {k: len(r.deleted) for k, r in report.kinds.items()}
        level = logging.INFO if report.deleted or not report.ok else logging.DEBUG
        logger.log(
            level,
            "gc round root=%s %s=%s bytes=%d failed=%d errors=%s",
            self.root,
            verb.replace(" ", "_"),
            counts,
            report.bytes_freed,
            len(report.failed),
            report.errors + [f"{k}: {r.error}" for k, r in report.kinds.items() if r.error],
        )


def _hooks() -> GcHooks:
    """The GC hooks of the process-wide plugin host."""
    from shale.spi import get_host

    return GcHooks(get_host().manager)
