"""Compaction specs and the size-tiered scheduler (SlateDB's ``size_tiered_compaction.rs``).

Everything here is a pure function of an immutable
:class:`~shale_compactor.state.CompactorStateView` (manifest + compactions): no I/O, no clock, so
the policy is property-tested directly.

**Proposals** (:func:`propose`, FEATURES.md 1.10):

1. *L0 first.* With at least ``min_compaction_sources`` L0 SSTs, the oldest of them (at most
   ``max_compaction_sources``) are compacted into a new sorted run whose id is the highest
   existing run id + 1 (0 when there are none).
2. *Otherwise sorted runs*, newest (highest id) to oldest: starting at each run in turn, runs
   are appended while a run's size is <= ``include_size_threshold`` x the smallest size in the
   group; a group of at least the minimum (capped at the maximum, keeping the oldest) is
   compacted into the lowest run id it contains.
3. *Checks.* The **conflict check** rejects a compaction that uses a source, or writes a
   destination, that an active compaction (or one proposed in the same round) already uses.
   Because every L0 proposal covers the oldest L0s, this also means **at most one L0
   compaction runs at a time**. The **backpressure check** rejects a compaction whose
   estimated output (the sum of its sources) would be compactable with the next older run
   when that run already heads a maximal group of similar-sized runs: those must be compacted
   first.
4. At most ``max_concurrent_compactions`` compactions are active (counting running ones).

**Validation** (:func:`validate`, for submitted specs; raises :class:`~shale.errors.InvalidError`):
the sources must be a consecutive window of the logical order ``[L0 newest..oldest, runs
highest..lowest]``; a window with runs is written into its lowest run id; a window with L0s must
include the oldest L0 (shale is stricter than SlateDB here: reads look at L0s before sorted
runs, so an L0 left behind that is older than a compacted one would shadow newer values); an
L0-only window is written into a run id above every existing run (it holds the newest data).

Sizes are estimated like SlateDB: an SST is ``index_offset + index_len`` bytes (everything but
the filter, stats and footer), a run the sum of its SSTs.

**Segments** (RFC-0024, :mod:`shale.meta.segments`). A segmented database has one LSM tree per key
prefix besides the root tree; every spec names its tree (``segment``, ``b""`` for the root) and
everything above applies *within* that tree: sources are a window of that tree's order, the
oldest-L0 rule is that tree's. Proposals are made per tree -- trees with the longest L0 first
(they are closest to L0 backpressure), then round-robin, one proposal per tree per pass -- as
SlateDB's scheduler does. Sorted run ids are unique across all trees, so a new run's id (an
L0-only destination) is one above the highest run id of *any* tree or active compaction.
A *drain* spec (``drain=True``, SlateDB's ``DrainSegmentSpec``) retires part or all of a
segment without writing anything: its L0s and runs are removed from the tree and the tree's
``last_compacted_l0_view_id`` advances to its newest drained L0. The size-tiered scheduler never
proposes one; a custom scheduler or ``submit`` can.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shale.spi import (
    SPEC_DRAIN_SEGMENT,
    SPEC_TIERED,
    STATUS_SUBMITTED,
    Compaction,
    CompactorOptions,
    InvalidError,
    Manifest,
    ShaleError,
    SortedRun,
    SstView,
    Ulid,
    get_logger,
    segments,
)

if TYPE_CHECKING:
    from shale_compactor.state import CompactorStateView

__all__ = [
    "FULL",
    "CompactionScheduler",
    "CompactionSpec",
    "SchedulerOptions",
    "SizeTieredScheduler",
    "check_conflicts",
    "generate_full",
    "next_run_id",
    "parse_spec",
    "propose",
    "run_size",
    "spec_size",
    "sst_size",
    "validate",
]

logger = get_logger(__name__)

#: Request a full compaction (every L0 and every sorted run into one run), e.g.
#: ``compactor.submit(FULL)``.
FULL = "full"

_L0 = "l0"
_SR = "sr"


@dataclass(frozen=True)
class CompactionSpec:
    """What to compact: L0 view ids (newest first), sorted run ids (highest first), the
    destination run id, and the tree (``segment``: a segment prefix, ``b""`` the root tree).
    Like SlateDB's ``CompactionSpec { segment, sources, destination }``; ``drain=True`` is its
    ``DrainSegmentSpec`` (the sources are removed, nothing is written, no destination)."""

    l0: tuple[Ulid, ...] = ()
    sorted_runs: tuple[int, ...] = ()
    destination: int = 0
    segment: bytes = b""
    drain: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "l0", tuple(self.l0))
        object.__setattr__(self, "sorted_runs", tuple(self.sorted_runs))
        if not isinstance(self.segment, bytes | bytearray):
            raise InvalidError("a segment is a bytes prefix", segment=self.segment)
        object.__setattr__(self, "segment", bytes(self.segment))
        if self.drain and not self.segment:
            raise InvalidError("a drain names a segment (the root tree cannot be drained)")
        if self.drain and self.destination:
            raise InvalidError("a drain has no destination", destination=self.destination)
        for u in self.l0:
            if not isinstance(u, Ulid):
                raise InvalidError("L0 sources must be Ulid view ids", source=u)
        for r in (*self.sorted_runs, self.destination):
            if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < 2**32:
                raise InvalidError("sorted run ids are u32 integers", value=r)

    @property
    def sources(self) -> list[tuple[str, Ulid | int]]:
        """The sources in logical order: ``("l0", ulid)`` then ``("sr", id)`` items."""
        return [(_L0, u) for u in self.l0] + [(_SR, r) for r in self.sorted_runs]

    def to_compaction(self, compaction_id: Ulid, status: int = STATUS_SUBMITTED) -> Compaction:
        """A ``.compactions`` entry for this spec."""
        return Compaction(
            id=compaction_id,
            status=status,
            l0_view_ids=list(self.l0),
            sorted_runs=list(self.sorted_runs),
            destination=self.destination,
            segment=self.segment,
            spec_type=SPEC_DRAIN_SEGMENT if self.drain else SPEC_TIERED,
        )

    @classmethod
    def from_compaction(cls, c: Compaction) -> CompactionSpec:
        """The spec of a ``.compactions`` entry.

        :raises InvalidError: an unknown spec type.
        """
        if c.spec_type == SPEC_DRAIN_SEGMENT:
            return cls(tuple(c.l0_view_ids), tuple(c.sorted_runs), 0, c.segment, drain=True)
        if c.spec_type != SPEC_TIERED:
            raise InvalidError("unknown compaction spec type", spec_type=c.spec_type)
        return cls(tuple(c.l0_view_ids), tuple(c.sorted_runs), c.destination, c.segment)

    def to_json(self) -> dict[str, Any]:
        """``{"l0": [ULID text...], "sorted_runs": [...], "destination": N}``, plus
        ``"segment"`` (text) or ``"segment_hex"`` for a segment and ``"drain": true``."""
        out: dict[str, Any] = {
            "l0": [str(u) for u in self.l0],
            "sorted_runs": list(self.sorted_runs),
            "destination": self.destination,
        }
        if self.segment:
            text = self.segment.decode("ascii", "replace")
            if text.isprintable() and text.encode() == self.segment:
                out["segment"] = text
            else:
                out["segment_hex"] = self.segment.hex()
        if self.drain:
            out["drain"] = True
        return out


def _segment_of(data: dict[str, Any]) -> bytes:
    if "segment_hex" in data:
        return bytes.fromhex(str(data["segment_hex"]))
    seg = data.get("segment", b"")
    if isinstance(seg, str):
        return seg.encode()
    if isinstance(seg, list):  # SlateDB's serde shape: a list of byte values
        return bytes(seg)
    if isinstance(seg, bytes):
        return seg
    raise InvalidError("a segment is text, a list of byte values or segment_hex", segment=seg)


def parse_spec(data: str | dict[str, Any]) -> CompactionSpec | str:
    """A spec from JSON text or a dict: ``"full"`` / ``"Full"`` gives :data:`FULL`;
    ``{"l0": [...], "sorted_runs": [...], "destination": N}`` or SlateDB's shape
    ``{"Spec": {"sources": [{"SstView": "ULID"}, {"SortedRun": 3}], "destination": 3}}``;
    either may name a tree with ``"segment"`` (text or a list of byte values) or
    ``"segment_hex"``, and ``"drain": true`` (or SlateDB's ``{"DrainSegment": {...}}``) makes a
    drain (no destination).

    :raises InvalidError: malformed input.
    """
    if isinstance(data, str):
        text = data.strip()
        if text.lower() in ("full", '"full"'):
            return FULL
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidError("the compaction spec is not JSON", spec=text) from None
    if isinstance(data, str) and data.lower() == FULL:
        return FULL
    if not isinstance(data, dict):
        raise InvalidError('a compaction spec is a JSON object or "Full"', spec=data)
    drain = False
    if set(data) == {"Spec"}:
        data = data["Spec"]
        if not isinstance(data, dict):
            raise InvalidError('"Spec" must hold an object', spec=data)
    elif set(data) == {"DrainSegment"}:
        data = data["DrainSegment"]
        if not isinstance(data, dict):
            raise InvalidError('"DrainSegment" must hold an object', spec=data)
        drain = True
    try:
        segment = _segment_of(data)
        drain = drain or data.get("drain") is True
        if "sources" in data:
            l0: list[Ulid] = []
            runs: list[int] = []
            for src in data["sources"]:
                if not isinstance(src, dict) or len(src) != 1:
                    raise InvalidError(
                        'a source is {"SstView": ULID} or {"SortedRun": N}', source=src
                    )
                ((kind, value),) = src.items()
                if kind in ("SstView", "Sst", "l0"):
                    l0.append(Ulid.parse(str(value)))
                elif kind in ("SortedRun", "sr"):
                    runs.append(int(value))
                else:
                    raise InvalidError("unknown source kind", kind=kind)
        else:
            unknown = set(data) - {
                "l0",
                "sorted_runs",
                "destination",
                "segment",
                "segment_hex",
                "drain",
            }
            if unknown:
                raise InvalidError("unknown compaction spec fields", fields=sorted(unknown))
            l0 = [Ulid.parse(str(u)) for u in data.get("l0", [])]
            runs = [int(r) for r in data.get("sorted_runs", [])]
        if drain:
            return CompactionSpec(tuple(l0), tuple(runs), 0, segment, drain=True)
        if "destination" not in data:
            raise InvalidError("a compaction spec needs a destination", spec=data)
        dest = data["destination"]
        if isinstance(dest, bool) or not isinstance(dest, int):
            raise InvalidError("the destination must be an integer", destination=dest)
        return CompactionSpec(tuple(l0), tuple(runs), dest, segment)
    except InvalidError:
        raise
    except (ShaleError, TypeError, ValueError, AttributeError) as exc:  # e.g. a bad ULID
        raise InvalidError("malformed compaction spec", error=str(exc)) from None


@dataclass(frozen=True)
class SchedulerOptions:
    """The size-tiered scheduler's knobs (from :class:`shale.settings.CompactorOptions`)."""

    min_compaction_sources: int = 4
    max_compaction_sources: int = 8
    include_size_threshold: float = 4.0
    max_concurrent_compactions: int = 4

    def __post_init__(self) -> None:
        if self.min_compaction_sources < 2:  # one source would be compacted forever
            raise InvalidError(
                "min_compaction_sources must be >= 2", value=self.min_compaction_sources
            )
        if self.max_compaction_sources < self.min_compaction_sources:
            raise InvalidError(
                "max_compaction_sources must be >= min_compaction_sources",
                value=self.max_compaction_sources,
            )
        if self.max_concurrent_compactions < 1:
            raise InvalidError(
                "max_concurrent_compactions must be >= 1", value=self.max_concurrent_compactions
            )

    @classmethod
    def from_compactor_options(cls, o: CompactorOptions) -> SchedulerOptions:
        return cls(
            min_compaction_sources=o.min_compaction_sources,
            max_compaction_sources=o.max_compaction_sources,
            include_size_threshold=o.include_size_threshold,
            max_concurrent_compactions=o.max_concurrent_compactions,
        )


# -- sizes ---------------------------------------------------------------------------------------


def sst_size(view: SstView) -> int:
    """Estimated bytes of an SST: ``index_offset + index_len`` (SlateDB's estimate)."""
    info = view.sst.info
    return int(info.index_offset + info.index_len)


def run_size(run: SortedRun) -> int:
    """Estimated bytes of a sorted run."""
    return sum(sst_size(v) for v in run.ssts)


def spec_size(m: Manifest, spec: CompactionSpec | Compaction) -> int:
    """Estimated input bytes of a compaction (sources missing from ``m`` count 0)."""
    tree = segments.tree(m, spec.segment)
    if tree is None:
        return 0
    l0 = set(spec.l0 if isinstance(spec, CompactionSpec) else spec.l0_view_ids)
    runs = set(spec.sorted_runs)
    return sum(sst_size(v) for v in tree.l0 if v.id in l0) + sum(
        run_size(r) for r in tree.compacted if r.id in runs
    )


def next_run_id(view: CompactorStateView) -> int:
    """The id of a new sorted run: one above every run of every tree and every active
    compaction's destination (0 when there is none). Run ids are unique across all trees."""
    ids = [r.id for t in segments.trees(view.manifest) for r in t.compacted]
    ids += [c.destination for c in view.active_compactions() if c.spec_type == SPEC_TIERED]
    return max(ids) + 1 if ids else 0


# -- checks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    key: tuple[str, Ulid | int]
    size: int


@dataclass
class _Conflicts:
    """Sources and destinations in use (SlateDB's ``ConflictChecker``)."""

    used: set[tuple[str, Ulid | int]] = field(default_factory=set)

    def add(self, spec: CompactionSpec) -> None:
        # L0 view ids and run ids are unique across trees, so one set serves every tree
        self.used.update(spec.sources)
        if not spec.drain:
            self.used.add((_SR, spec.destination))

    def ok(self, sources: Sequence[_Source], dst: int) -> bool:
        return not any(s.key in self.used for s in sources) and (_SR, dst) not in self.used


class _Backpressure:
    """SlateDB's ``BackpressureChecker``: the longest compactable group starting at each run."""

    def __init__(self, threshold: float, max_sources: int, runs: Sequence[_Source]) -> None:
        self.threshold = threshold
        self.max_sources = max_sources
        self.longest = {
            s.key: len(_compactable_run(threshold, runs, i, None, None)) for i, s in enumerate(runs)
        }

    def ok(self, sources: Sequence[_Source], next_run: _Source | None) -> bool:
        if next_run is None:
            return True
        estimated = sum(s.size for s in sources)
        if next_run.size <= int(estimated * self.threshold):
            return self.longest.get(next_run.key, 0) < self.max_sources
        return True


def _compactable_run(
    threshold: float,
    runs: Sequence[_Source],
    start: int,
    conflicts: _Conflicts | None,
    backpressure: _Backpressure | None,
) -> list[_Source]:
    """Runs from ``start`` on whose sizes stay within ``threshold`` x the smallest so far;
    with checkers, stop before the first run that makes the group fail a check."""
    group: list[_Source] = []
    min_size: int | None = None
    for i in range(start, len(runs)):
        src = runs[i]
        if min_size is not None:
            if src.size > int(min_size * threshold):
                break
            min_size = min(min_size, src.size)
        else:
            min_size = src.size
        group.append(src)
        if conflicts is not None and backpressure is not None:
            dst = src.key[1]
            assert isinstance(dst, int)
            nxt = runs[i + 1] if i + 1 < len(runs) else None
            if not (conflicts.ok(group, dst) and backpressure.ok(group, nxt)):
                group.pop()
                break
    return group


def _sources(tree: segments.Tree) -> tuple[list[_Source], list[_Source]]:
    return (
        [_Source((_L0, v.id), sst_size(v)) for v in tree.l0],
        [_Source((_SR, r.id), run_size(r)) for r in tree.compacted],
    )


def _spec(group: Sequence[_Source], dst: int, segment: bytes) -> CompactionSpec:
    l0 = tuple(s.key[1] for s in group if s.key[0] == _L0)
    runs = tuple(s.key[1] for s in group if s.key[0] == _SR)
    return CompactionSpec(l0, runs, dst, segment)  # type: ignore[arg-type]


def _active_specs(view: CompactorStateView) -> list[CompactionSpec]:
    return [CompactionSpec.from_compaction(c) for c in view.active_compactions()]


@dataclass
class _TreeState:
    prefix: bytes
    l0: list[_Source]
    runs: list[_Source]
    backpressure: _Backpressure


def propose(view: CompactorStateView, options: SchedulerOptions) -> list[CompactionSpec]:
    """The compactions to start now, in priority order (see the module docstring)."""
    active = _active_specs(view)
    conflicts = _Conflicts()
    for spec in active:
        conflicts.add(spec)
    trees = []
    for tree in segments.trees(view.manifest):
        l0, runs = _sources(tree)
        bp = _Backpressure(options.include_size_threshold, options.max_compaction_sources, runs)
        trees.append(_TreeState(tree.prefix, l0, runs, bp))
    trees.sort(key=lambda t: -len(t.l0))  # stable: the root first among equals
    next_id = [next_run_id(view)]
    out: list[CompactionSpec] = []
    picked_any = True
    while picked_any:
        picked_any = False
        for t in trees:
            if len(active) + len(out) >= options.max_concurrent_compactions:
                return out
            picked = _pick(t, options, conflicts, next_id)
            if picked is not None:
                conflicts.add(picked)
                out.append(picked)
                picked_any = True
    return out


def _pick(
    t: _TreeState, o: SchedulerOptions, conflicts: _Conflicts, next_id: list[int]
) -> CompactionSpec | None:
    l0, runs, backpressure = t.l0, t.runs, t.backpressure
    if len(l0) >= o.min_compaction_sources:
        group = l0[-o.max_compaction_sources :]  # the oldest
        dst = next_id[0]
        nxt = runs[0] if runs else None
        if conflicts.ok(group, dst) and backpressure.ok(group, nxt):
            next_id[0] += 1
            return _spec(group, dst, t.prefix)
    for i in range(len(runs)):
        group = _compactable_run(o.include_size_threshold, runs, i, conflicts, backpressure)
        if len(group) < o.min_compaction_sources:
            continue
        group = group[-o.max_compaction_sources :]
        run_dst = group[-1].key[1]
        assert isinstance(run_dst, int)
        return _spec(group, run_dst, t.prefix)
    return None


def validate(view: CompactorStateView, spec: CompactionSpec) -> None:
    """Check a submitted spec against the manifest (see the module docstring).

    Conflicts with active compactions are *not* checked here (see :func:`check_conflicts`):
    a valid spec that conflicts waits its turn.

    :raises InvalidError: the spec can never run as given.
    """
    m = view.manifest
    tree = segments.tree(m, spec.segment)
    if tree is None:
        raise InvalidError(
            "the compaction targets a segment the database does not have", spec=spec.to_json()
        )
    sources = spec.sources
    if not sources:
        raise InvalidError("a compaction needs at least one source")
    if len(set(sources)) != len(sources):
        raise InvalidError("a compaction names a source twice", spec=spec.to_json())
    if spec.drain:
        _validate_drain(tree, spec)
        return
    order = [(_L0, v.id) for v in tree.l0] + [(_SR, r.id) for r in tree.compacted]
    n = len(sources)
    if not any(order[i : i + n] == sources for i in range(len(order) - n + 1)):
        raise InvalidError(
            "compaction sources are not a consecutive series of the tree's sources",
            spec=spec.to_json(),
        )
    if spec.l0 and spec.l0[-1] != tree.l0[-1].id:
        raise InvalidError(
            "a compaction of L0 SSTs must include the oldest L0 SST", spec=spec.to_json()
        )
    if spec.sorted_runs:
        lowest = min(spec.sorted_runs)
        if spec.destination != lowest:
            raise InvalidError(
                "the destination must be the lowest sorted run id among the sources",
                destination=spec.destination,
                lowest=lowest,
            )
    else:
        if tree.compacted and spec.destination <= tree.compacted[0].id:
            raise InvalidError(
                "an L0-only compaction must write a run id above every existing run",
                destination=spec.destination,
                highest=tree.compacted[0].id,
            )
        if any(r.id == spec.destination for t in segments.trees(m) for r in t.compacted):
            raise InvalidError(
                "an L0-only compaction must write a new run id (run ids are unique across "
                "segments)",
                destination=spec.destination,
            )


def _validate_drain(tree: segments.Tree, spec: CompactionSpec) -> None:
    """A drain's sources must be in the tree, and every L0 at or below its newest drained L0
    must be drained too (the tree's watermark moves past them; SlateDB's rule)."""
    l0_ids = [v.id for v in tree.l0]
    run_ids = {r.id for r in tree.compacted}
    missing = [str(u) for u in spec.l0 if u not in l0_ids] + [
        str(r) for r in spec.sorted_runs if r not in run_ids
    ]
    if missing:
        raise InvalidError("drain sources are not in the segment", missing=missing)
    drained = set(spec.l0)
    newest = next((i for i, u in enumerate(l0_ids) if u in drained), None)
    if newest is not None and any(u not in drained for u in l0_ids[newest:]):
        raise InvalidError(
            "a drain must include every L0 older than its newest drained L0",
            spec=spec.to_json(),
        )


def check_conflicts(
    view: CompactorStateView, spec: CompactionSpec, ignore: Ulid | None = None
) -> bool:
    """Whether ``spec`` can start now: none of its sources nor its destination is used by an
    active compaction (other than ``ignore``, the compaction being started itself)."""
    conflicts = _Conflicts()
    for c in view.active_compactions():
        if c.id != ignore:
            conflicts.add(CompactionSpec.from_compaction(c))
    srcs = [_Source(k, 0) for k in spec.sources]
    return conflicts.ok(srcs, spec.destination)


def generate_full(view: CompactorStateView, segment: bytes = b"") -> CompactionSpec:
    """A spec compacting every L0 SST and every sorted run of one tree (``segment``; the
    root tree by default) into its lowest run id (a new run id when it has no runs). Unlike
    SlateDB's ``generate(Full)``, L0 is included.

    :raises InvalidError: the tree has nothing to compact, or no such segment exists.
    """
    tree = segments.tree(view.manifest, segment)
    if tree is None:
        raise InvalidError("no such segment", segment=segment)
    if not tree.l0 and not tree.compacted:
        raise InvalidError(
            "nothing to compact: no L0 SSTs and no sorted runs",
            **({"segment": segment} if segment else {}),
        )
    runs = tuple(r.id for r in tree.compacted)
    dest = runs[-1] if runs else next_run_id(view)
    return CompactionSpec(tuple(v.id for v in tree.l0), runs, dest, segment)


class CompactionScheduler(Protocol):
    """What a scheduler offers (``shale_compaction_scheduler`` hook results)."""

    def propose(self, view: CompactorStateView) -> list[CompactionSpec]: ...

    def validate(self, view: CompactorStateView, spec: CompactionSpec) -> None: ...


class SizeTieredScheduler:
    """The default scheduler: :func:`propose` and :func:`validate` with fixed options."""

    def __init__(self, options: SchedulerOptions | CompactorOptions | None = None) -> None:
        if options is None:
            options = SchedulerOptions()
        elif isinstance(options, CompactorOptions):
            options = SchedulerOptions.from_compactor_options(options)
        self.options = options

    def __repr__(self) -> str:
        return f"SizeTieredScheduler({self.options!r})"

    def propose(self, view: CompactorStateView) -> list[CompactionSpec]:
        return propose(view, self.options)

    def validate(self, view: CompactorStateView, spec: CompactionSpec) -> None:
        validate(view, spec)

    def generate_full(self, view: CompactorStateView, segment: bytes = b"") -> CompactionSpec:
        return generate_full(view, segment)
