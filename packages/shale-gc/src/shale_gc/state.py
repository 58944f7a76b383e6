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

The versioned-object protocol itself -- listing versions, reading the latest one (re-LISTing
when it vanished), the GC boundary files and advancing them with conditional PUTs -- is core's
(:mod:`shale.meta.versioned`, specialised by :mod:`shale.meta.manifest_store` and
:mod:`shale.meta.compactions_store`); the collector only calls it.
"""

from __future__ import annotations

from shale.spi import (
    CompactionsStore,
    DataError,
    Manifest,
    ManifestStore,
    ObjectNotFound,
    list_cursors,
    remove_expired_checkpoints,
)
from shale_gc.rules import GcStateView

__all__ = ["read_state"]


def read_state(
    ms: ManifestStore,
    cs: CompactionsStore,
    *,
    now_s: int,
    compactions: bool = True,
    checkpoints: bool = True,
    pending_manifest: bool = False,
    consumers: bool = False,
) -> GcStateView:
    """Read the view a round decides on: compactions first, then the latest manifest, then the
    manifests live checkpoints pin.

    :param now_s: Unix seconds; checkpoints expired at that time are left out of the view
        (the collector has removed them from the stored manifest already, except in a dry run).
    :param compactions: read the ``.compactions`` file (only compacted-SST GC needs it).
    :param checkpoints: read the checkpoint manifests (WAL and compacted-SST GC need them).
    :param consumers: read the change-stream consumer cursors (WAL GC needs them); after
        the manifest, so a cursor committed before this round started is seen.
    :param pending_manifest: a dry run that would have written a new manifest version (to drop
        expired checkpoints): report the latest id as one higher, as the real run would see it.
    :raises DataError: no manifest, or a malformed file, or a pinned manifest is missing.
    :raises UnavailableError: the latest version kept vanishing between LIST and GET.
    """
    comp = cs.read_latest() if compactions else None  # compactions first: see the module doc
    latest = ms.read_latest()
    if latest is None:
        raise DataError("no manifest found: not a database", root=ms.root)
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
    cursors = tuple(list_cursors(ms.store, ms.root)) if consumers else ()
    return GcStateView(
        manifest_id=manifest_id,
        consumers=cursors,
        manifest=manifest,
        checkpoint_manifests=pinned,
        compactions_id=None if comp is None else comp[0],
        compactions=None if comp is None else comp[1],
    )
