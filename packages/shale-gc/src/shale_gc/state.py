"""Reading what garbage collection decides on: the ``.compactions`` file, then the manifests.

The order is the point of this module (SlateDB's ``CompactorStateReader``): the latest
``.compactions`` file is read **before** the latest manifest. A compactor writes its outputs,
then the manifest that references them, then the compactions file that marks the job finished.
Reading compactions first means that any compaction the collector does not see as active had
already committed its manifest -- so its outputs are in the manifest read afterwards. Read the
other way round, a job could commit in between and its outputs would be in neither view.

Then every manifest a live checkpoint pins is read by id. If one cannot be read the whole view
fails (:class:`~shale.errors.DataError`): without it the collector cannot know what that
checkpoint reaches, and keeping everything until the next round is the only safe answer.

The compactions GC boundary (``gc/compactions.boundary``, FORMAT.md 10.5) is handled here as
well, mirroring :meth:`shale.meta.manifest_store.ManifestStore.advance_boundary` for manifests:
versions ``<= B`` may be deleted; a "latest" candidate ``<= B`` is never used.
"""

from __future__ import annotations

import logging

from shale.errors import DataError, InvalidError, UnavailableError
from shale.fbs.compactions import Compactions, decode_compactions
from shale.fbs.manifest import Manifest
from shale.ids import compactions_path, dir_path, format_id, parse_numbered
from shale.meta.manifest_store import ManifestStore, remove_expired_checkpoints
from shale.objstore import ObjectAlreadyExists, ObjectNotFound, ObjectStore
from shale_gc.rules import GcStateView

__all__ = [
    "COMPACTIONS_SUFFIX",
    "MAX_LIST_RETRIES",
    "advance_compactions_boundary",
    "list_compactions_ids",
    "read_compactions_boundary",
    "read_latest_compactions",
    "read_state",
]

logger = logging.getLogger(__name__)

COMPACTIONS_SUFFIX = ".compactions"
#: How many times a vanished "latest" compactions file makes us LIST again.
MAX_LIST_RETRIES = 10


def _boundary_key(root: str) -> str:
    return dir_path(root, "gc") + "compactions.boundary"


def list_compactions_ids(store: ObjectStore, root: str) -> list[int]:
    """Ids of the canonical ``compactions/<20 digits>.compactions`` objects, ascending."""
    prefix = dir_path(root, "compactions")
    out = []
    for meta in store.list(prefix):
        name = meta.key[len(prefix) :]
        n = parse_numbered(name, COMPACTIONS_SUFFIX)
        if n is not None and "/" not in name and name == format_id(n) + COMPACTIONS_SUFFIX:
            out.append(n)
    out.sort()
    return out


def read_compactions_boundary(store: ObjectStore, root: str) -> int:
    """The compactions GC boundary (0 when absent). :raises DataError: malformed file."""
    try:
        data = store.get(_boundary_key(root))
    except ObjectNotFound:
        return 0
    return _parse_boundary(data, _boundary_key(root))


def _parse_boundary(data: bytes, key: str) -> int:
    text = data.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise DataError("malformed GC boundary file", path=key)
    return int(text)


def advance_compactions_boundary(store: ObjectStore, root: str, boundary: int) -> None:
    """Raise ``gc/compactions.boundary`` to ``boundary`` (never lowers it), with conditional
    PUTs (create when absent, else by etag) so concurrent collectors cannot lower it.

    Call before deleting compactions versions ``<= boundary``; never pass the latest version.
    """
    if isinstance(boundary, bool) or not isinstance(boundary, int) or boundary < 0:
        raise InvalidError("boundary must be a non-negative int", boundary=boundary)
    key = _boundary_key(root)
    while True:
        try:
            etag = store.head(key).etag
            current = _parse_boundary(store.get(key), key)
        except ObjectNotFound:
            etag, current = None, 0
        if current >= boundary:
            return
        data = str(boundary).encode("ascii")
        try:
            if etag is None:
                store.put_if_absent(key, data)
            else:
                store.put_if_match(key, data, etag)
        except ObjectAlreadyExists:
            continue  # a concurrent change: re-read and compare again
        return


def read_latest_compactions(store: ObjectStore, root: str) -> tuple[int, Compactions] | None:
    """The latest ``.compactions`` file as ``(id, contents)``, or ``None`` if there is none.

    LISTs and GETs the highest id above the GC boundary; LISTs again if it vanished (a
    concurrent GC). :raises DataError: the file is malformed. :raises UnavailableError: the
    listed latest kept vanishing.
    """
    for attempt in range(MAX_LIST_RETRIES):
        boundary = read_compactions_boundary(store, root)
        listed = [i for i in list_compactions_ids(store, root) if i > boundary]
        if not listed:
            return None
        top = listed[-1]
        try:
            data = store.get(compactions_path(root, top))
        except ObjectNotFound:
            logger.warning(
                "listed compactions file vanished, listing again id=%d attempt=%d", top, attempt + 1
            )
            continue
        try:
            return top, decode_compactions(data)[1]
        except DataError as exc:
            raise DataError(
                "corrupt compactions file", compactions_id=top, path=compactions_path(root, top)
            ) from exc
    raise UnavailableError(
        "the latest compactions file kept vanishing between LIST and GET",
        root=root,
        attempts=MAX_LIST_RETRIES,
    )


def read_state(
    store: ObjectStore,
    root: str,
    ms: ManifestStore,
    *,
    now_s: int,
    compactions: bool = True,
    checkpoints: bool = True,
    pending_manifest: bool = False,
) -> GcStateView:
    """Read the view a round decides on: compactions first, then the latest manifest, then the
    manifests live checkpoints pin.

    :param now_s: Unix seconds; checkpoints expired at that time are left out of the view
        (the collector has removed them from the stored manifest already, except in a dry run).
    :param compactions: read the ``.compactions`` file (only compacted-SST GC needs it).
    :param checkpoints: read the checkpoint manifests (WAL and compacted-SST GC need them).
    :param pending_manifest: a dry run that would have written a new manifest version (to drop
        expired checkpoints): report the latest id as one higher, as the real run would see it.
    :raises DataError: no manifest, or a malformed file, or a pinned manifest is missing.
    """
    comp = read_latest_compactions(store, root) if compactions else None
    latest = ms.read_latest()
    if latest is None:
        raise DataError("no manifest found: not a database", root=root)
    manifest_id, manifest = latest
    trimmed = remove_expired_checkpoints(manifest, now_s)
    if trimmed is not manifest and pending_manifest:
        manifest_id += 1
    manifest = trimmed
    pinned: dict[int, Manifest] = {}
    if checkpoints:
        for cp in manifest.checkpoints:
            if cp.manifest_id in pinned:
                continue
            if cp.manifest_id == latest[0]:
                pinned[cp.manifest_id] = latest[1]
                continue
            try:
                pinned[cp.manifest_id] = ms.read(cp.manifest_id)
            except ObjectNotFound:
                raise DataError(
                    "a live checkpoint pins a manifest that cannot be read",
                    checkpoint_id=str(cp.id),
                    manifest_id=cp.manifest_id,
                ) from None
    return GcStateView(
        manifest_id=manifest_id,
        manifest=manifest,
        checkpoint_manifests=pinned,
        compactions_id=None if comp is None else comp[0],
        compactions=None if comp is None else comp[1],
    )
