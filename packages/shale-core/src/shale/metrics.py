"""A small metrics registry: counters, gauges and latency histograms, read as snapshots.

Every open database handle (``Db``, ``DbReader``, ``Admin``) records into its own
:class:`MetricsRegistry`, whose constant labels (``db``, ``role``) tell handles apart; each such
registry is a child of the process-wide :func:`default_registry`, which is what exporters read
(``shale-prometheus``, ``shale-otel``): :meth:`MetricsRegistry.collect` on the default registry
returns its own metrics and every live child's, merged by name.

Recording is cheap because the hot paths never lock and never compute a bucket:

* :meth:`Histogram.record_ns` appends the duration (an ``int`` of nanoseconds) to a plain list;
  every :data:`FOLD_AT` records, and on every read, the list is folded into the bucket counts
  (``list.append`` is atomic, and the fold removes exactly the entries it counted, so no
  record is lost and none is counted twice, from any number of threads).
* Buckets are fixed and log-spaced: powers of two nanoseconds from 2**10 ns (about 1 us) to
  2**37 ns (about 137 s), plus ``+Inf``. A duration ``d`` falls in the bucket of upper bound
  ``2**k`` with ``k = (d - 1).bit_length()``, computed in C over the whole list at fold time.
* The hottest calls (``Db.put``, ``get``) are *sampled*: :meth:`Histogram.sampled` gives the
  histogram an exact call counter (``next()`` on an ``itertools.count``, atomic) and the
  caller times one call in ``every`` (the first, then every ``every``-th); a snapshot scales
  the sampled buckets and sum to the exact count. Two clock reads and an append cost about
  as much as a whole in-memory ``get``, so timing every call would not be cheap.
* Counters and gauges take a lock per update: they are used off the hot paths (errors, bytes
  per flush, compactions).

Names follow Prometheus' conventions (``shale_<component>_<what>_<unit>``, counters end in
``_total``); ``docs/metrics.md`` lists every metric shale records.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, Literal, TypeVar

from shale.errors import InvalidError

__all__ = [
    "BUCKET_BOUNDS_NS",
    "BUCKET_BOUNDS_S",
    "FOLD_AT",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "HistogramSample",
    "MetricFamily",
    "MetricsRegistry",
    "MetricsSnapshot",
    "Sample",
    "bucket_index",
    "default_registry",
]

MetricType = Literal["counter", "gauge", "histogram"]
Labels = tuple[tuple[str, str], ...]

_MIN_EXP = 10
_MAX_EXP = 37
#: Upper bounds of the finite buckets, in nanoseconds (the last bucket is ``+Inf``).
BUCKET_BOUNDS_NS: tuple[int, ...] = tuple(2**k for k in range(_MIN_EXP, _MAX_EXP + 1))
#: The same bounds in seconds (what exporters publish as ``le``).
BUCKET_BOUNDS_S: tuple[float, ...] = tuple(b / 1e9 for b in BUCKET_BOUNDS_NS)
_NBUCKETS = len(BUCKET_BOUNDS_NS) + 1  # + Inf
#: A histogram folds its pending records into buckets after this many.
FOLD_AT = 1024
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_minus_one = (-1).__add__


def bucket_index(ns: int) -> int:
    """Index of the bucket a duration of ``ns`` nanoseconds falls in (``len(BUCKET_BOUNDS_NS)``
    is ``+Inf``): the smallest bound ``>= ns``."""
    k = (ns - 1).bit_length() if ns > 0 else 0
    return min(max(k - _MIN_EXP, 0), _NBUCKETS - 1)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One counter or gauge value with its labels."""

    labels: Labels
    value: float


@dataclasses.dataclass(frozen=True)
class HistogramSample:
    """One histogram with its labels.

    :ivar buckets: ``(upper bound in seconds, cumulative count)`` pairs, the last bound
        ``math.inf``; ``buckets[-1][1] == count``.
    :ivar count: observations; ``sum``: their total, in seconds.
    """

    labels: Labels
    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float

    def quantile(self, q: float) -> float:
        """An upper bound of the ``q`` quantile (the bound of the bucket it falls in; ``0.0``
        when empty)."""
        if not 0.0 <= q <= 1.0:
            raise InvalidError("quantile must be in [0, 1]", q=q)
        if not self.count:
            return 0.0
        rank = q * self.count
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                return bound
        return math.inf


@dataclasses.dataclass(frozen=True)
class MetricFamily:
    """A metric's name, type, help text and samples (one per label set)."""

    name: str
    type: MetricType
    help: str
    samples: tuple[Sample | HistogramSample, ...]


class Counter:
    """A monotonically increasing number."""

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: float = 0

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (``>= 0``)."""
        if amount < 0:
            raise InvalidError("a counter only goes up", amount=amount)
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        return self._value


class Gauge:
    """A number that goes up and down, or a function read at collection time."""

    __slots__ = ("_function", "_lock", "_value")

    def __init__(self, function: Callable[[], float] | None = None) -> None:
        self._lock = threading.Lock()
        self._value: float = 0
        self._function = function

    def set(self, value: float) -> None:
        with self._lock:
            self._value = value

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1) -> None:
        self.inc(-amount)

    @property
    def value(self) -> float:
        return self._function() if self._function is not None else self._value


class Histogram:
    """A latency histogram with the fixed buckets of :data:`BUCKET_BOUNDS_NS`."""

    __slots__ = ("_counts", "_lock", "_pending", "_sum_ns", "calls", "every")

    def __init__(self) -> None:
        #: with sampling on (:meth:`sampled`): the exact number of calls, and ``every``
        self.calls: itertools.count[int] | None = None
        self.every = 1
        self._pending: list[int] = []
        self._lock = threading.Lock()
        self._counts = [0] * _NBUCKETS
        self._sum_ns = 0

    def record_ns(self, ns: int) -> None:
        """Record a duration of ``ns`` nanoseconds (the hot path: one append)."""
        pending = self._pending
        pending.append(ns)
        if len(pending) >= FOLD_AT:
            self._fold()

    def sampled(self, every: int) -> Histogram:
        """Count every call exactly, time one in ``every`` (a power of two): callers time a
        call when ``not next(h.calls) & (h.every - 1)``. Returns ``self``."""
        if (
            isinstance(every, bool)
            or not isinstance(every, int)
            or every < 1
            or every & (every - 1)
        ):
            raise InvalidError("every must be a power of two >= 1", every=every)
        self.every = every
        self.calls = itertools.count()
        return self

    def _calls_made(self) -> int | None:
        calls = self.calls
        if calls is None:
            return None
        state = calls.__reduce__()  # (count, (next value,)): the calls made so far
        return int(state[1][0]) if isinstance(state, tuple) else 0

    def observe(self, seconds: float) -> None:
        """Record a duration in seconds (``>= 0``)."""
        if not seconds >= 0:
            raise InvalidError("a duration must be >= 0 seconds", seconds=seconds)
        self.record_ns(round(seconds * 1e9))

    def _fold(self) -> None:
        with self._lock:
            pending = self._pending
            n = len(pending)
            if not n:
                return
            chunk = pending[:n]
            del pending[:n]  # appends made meanwhile are after these n: they stay
            counts = self._counts
            top = _NBUCKETS - 1
            for k, c in collections.Counter(map(int.bit_length, map(_minus_one, chunk))).items():
                counts[min(max(k - _MIN_EXP, 0), top)] += c
            self._sum_ns += sum(chunk)

    def sample(self, labels: Labels = ()) -> HistogramSample:
        """The histogram now (folds what is pending first)."""
        self._fold()
        with self._lock:
            counts = list(self._counts)
            total_ns = self._sum_ns
        made = self._calls_made()
        timed = sum(counts)
        scale = 1.0 if made is None else (made / timed if timed else 0.0)
        cumulative = 0
        buckets = []
        for bound, c in zip((*BUCKET_BOUNDS_S, math.inf), counts, strict=True):
            cumulative += c
            buckets.append((bound, round(cumulative * scale)))
        count = timed if made is None else made
        buckets[-1] = (math.inf, count)
        return HistogramSample(labels, tuple(buckets), count, total_ns * scale / 1e9)


M = TypeVar("M", Counter, Gauge, Histogram)


class Family(Generic[M]):
    """One metric with label names: :meth:`labels` gives the child of a label set."""

    def __init__(self, factory: Callable[[], M], labelnames: tuple[str, ...]) -> None:
        self._factory: Callable[[], M] = factory
        self.labelnames = labelnames
        self._children: dict[tuple[str, ...], M] = {}
        self._lock = threading.Lock()

    def labels(self, **values: str) -> M:
        """The child for these label values (created on first use). Resolve children once,
        outside hot loops."""
        if set(values) != set(self.labelnames):
            raise InvalidError(
                "label names do not match the metric's", expected=self.labelnames, got=list(values)
            )
        key = tuple(str(values[n]) for n in self.labelnames)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._factory()
            return child

    def children(self) -> list[tuple[Labels, M]]:
        with self._lock:
            items = list(self._children.items())
        return [(tuple(zip(self.labelnames, k, strict=True)), c) for k, c in items]


@dataclasses.dataclass
class _Entry:
    type: MetricType
    help: str
    family: Family[Counter] | Family[Gauge] | Family[Histogram]


Collector = Callable[[], Iterable[MetricFamily]]


class MetricsRegistry:
    """Named metrics, optional constant labels, child registries and collector callbacks.

    :param labels: constant labels added to every sample (``{"db": url, "role": "writer"}``).
    :param parent: the registry that reports this one too (held weakly by it); by default the
        process-wide :func:`default_registry`; ``None`` for a standalone registry.
    """

    def __init__(
        self,
        labels: Mapping[str, str] | None = None,
        *,
        parent: MetricsRegistry | Literal["default"] | None = "default",
    ) -> None:
        const = dict(labels or {})
        for name, value in const.items():
            if not isinstance(name, str) or not _LABEL.match(name) or not isinstance(value, str):
                raise InvalidError("labels must map label names to str values", label=name)
        self.labels: Labels = tuple(sorted(const.items()))
        self._metrics: dict[str, _Entry] = {}
        self._collectors: list[Collector] = []
        self._children: weakref.WeakSet[MetricsRegistry] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._parent: MetricsRegistry | None = None
        if parent == "default":
            parent = default_registry()
        if parent is not None:
            parent.attach(self)

    def __repr__(self) -> str:
        return f"<MetricsRegistry labels={dict(self.labels)!r} metrics={len(self._metrics)}>"

    # -- registration -----------------------------------------------------------------------

    def _family(
        self,
        name: str,
        help: str,
        mtype: MetricType,
        factory: Callable[[], M],
        labels: Iterable[str],
    ) -> Family[M]:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidError("not a valid metric name", name=name)
        labelnames = tuple(labels)
        for label in labelnames:
            if not isinstance(label, str) or not _LABEL.match(label):
                raise InvalidError("not a valid label name", label=label)
        with self._lock:
            entry = self._metrics.get(name)
            if entry is None:
                entry = self._metrics[name] = _Entry(mtype, help, Family(factory, labelnames))
            elif entry.type != mtype or entry.family.labelnames != labelnames:
                raise InvalidError(
                    "metric already registered with another type or labels",
                    name=name,
                    type=entry.type,
                )
        return entry.family  # type: ignore[return-value]

    def counter(self, name: str, help: str) -> Counter:
        """The counter ``name`` (registered on first use; the same object afterwards)."""
        return self._family(name, help, "counter", Counter, ()).labels()

    def gauge(self, name: str, help: str, function: Callable[[], float] | None = None) -> Gauge:
        """The gauge ``name``; with ``function``, a gauge read by calling it."""
        return self._family(name, help, "gauge", lambda: Gauge(function), ()).labels()

    def histogram(self, name: str, help: str) -> Histogram:
        """The latency histogram ``name`` (seconds; buckets of :data:`BUCKET_BOUNDS_S`)."""
        return self._family(name, help, "histogram", Histogram, ()).labels()

    def counter_family(self, name: str, help: str, labelnames: Iterable[str]) -> Family[Counter]:
        return self._family(name, help, "counter", Counter, labelnames)

    def gauge_family(self, name: str, help: str, labelnames: Iterable[str]) -> Family[Gauge]:
        return self._family(name, help, "gauge", Gauge, labelnames)

    def histogram_family(
        self, name: str, help: str, labelnames: Iterable[str]
    ) -> Family[Histogram]:
        return self._family(name, help, "histogram", Histogram, labelnames)

    def add_collector(self, collector: Collector) -> None:
        """Call ``collector()`` at every :meth:`collect`; it returns metric families whose
        samples get this registry's constant labels (how the database exports its counters)."""
        if not callable(collector):
            raise InvalidError("a collector must be callable", type=type(collector).__name__)
        with self._lock:
            self._collectors.append(collector)

    # -- the tree -----------------------------------------------------------------------------

    def attach(self, child: MetricsRegistry) -> None:
        """Report ``child``'s metrics too (held weakly: a dropped child disappears)."""
        if child is self:
            raise InvalidError("a registry cannot be its own child")
        with self._lock:
            self._children.add(child)
        child._parent = self

    def detach(self) -> None:
        """Stop being reported by the parent (a closed database handle)."""
        parent, self._parent = self._parent, None
        if parent is not None:
            with parent._lock:
                parent._children.discard(self)

    def children(self) -> list[MetricsRegistry]:
        with self._lock:
            return list(self._children)

    # -- reading ------------------------------------------------------------------------------

    def _own(self) -> Iterator[MetricFamily]:
        with self._lock:
            entries = list(self._metrics.items())
            collectors = list(self._collectors)
        const = self.labels
        for name, entry in entries:
            samples: list[Sample | HistogramSample] = []
            for labels, child in entry.family.children():
                full = tuple(sorted(const + labels))
                if isinstance(child, Histogram):
                    samples.append(child.sample(full))
                else:
                    samples.append(Sample(full, child.value))
            yield MetricFamily(name, entry.type, entry.help, tuple(samples))
        for collector in collectors:
            for fam in collector():
                yield dataclasses.replace(
                    fam,
                    samples=tuple(
                        dataclasses.replace(s, labels=tuple(sorted(const + s.labels)))
                        for s in fam.samples
                    ),
                )

    def collect(self, *, children: bool = True) -> list[MetricFamily]:
        """Every metric of this registry (and, by default, of its live children), one family
        per name; samples with the same labels from several registries are added up."""
        sources = [self, *self.children()] if children else [self]
        merged: dict[str, tuple[MetricFamily, dict[Labels, Sample | HistogramSample]]] = {}
        for registry in sources:
            for fam in registry._own():
                slot = merged.get(fam.name)
                if slot is None:
                    slot = merged[fam.name] = (fam, {})
                elif slot[0].type != fam.type:
                    continue  # the same name with another type: the first one wins
                by_labels = slot[1]
                for s in fam.samples:
                    prev = by_labels.get(s.labels)
                    by_labels[s.labels] = s if prev is None else _add(prev, s)
        return [
            dataclasses.replace(fam, samples=tuple(samples.values()))
            for fam, samples in merged.values()
        ]

    def snapshot(self, *, children: bool = False) -> MetricsSnapshot:
        """A :class:`MetricsSnapshot` of this registry (and its children if asked)."""
        return MetricsSnapshot(self.collect(children=children))


def _add(a: Sample | HistogramSample, b: Sample | HistogramSample) -> Sample | HistogramSample:
    if isinstance(a, HistogramSample) and isinstance(b, HistogramSample):
        buckets = tuple((x[0], x[1] + y[1]) for x, y in zip(a.buckets, b.buckets, strict=True))
        return HistogramSample(a.labels, buckets, a.count + b.count, a.sum + b.sum)
    if isinstance(a, Sample) and isinstance(b, Sample):
        return Sample(a.labels, a.value + b.value)
    return a


class MetricsSnapshot:
    """The metrics of a registry at one moment (what ``db.metrics_snapshot()`` returns).

    A histogram's ``count`` always equals its ``+Inf`` bucket, and a counter read in a later
    snapshot is never smaller.
    """

    def __init__(self, families: Iterable[MetricFamily]) -> None:
        self.families: dict[str, MetricFamily] = {f.name: f for f in families}

    def __contains__(self, name: object) -> bool:
        return name in self.families

    def __iter__(self) -> Iterator[MetricFamily]:
        return iter(self.families.values())

    def _matching(self, name: str, labels: Mapping[str, str]) -> list[Sample | HistogramSample]:
        fam = self.families.get(name)
        if fam is None:
            raise InvalidError("no such metric in the snapshot", name=name)
        want = set(labels.items())
        return [s for s in fam.samples if want <= set(s.labels)]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the counter's or gauge's samples whose labels include ``labels`` (for a
        histogram: its count)."""
        total: float = 0
        for s in self._matching(name, labels):
            total += s.count if isinstance(s, HistogramSample) else s.value
        return total

    def histogram(self, name: str, **labels: str) -> HistogramSample:
        """The histogram ``name`` over its samples whose labels include ``labels``, added up."""
        found = [s for s in self._matching(name, labels) if isinstance(s, HistogramSample)]
        if not found:
            raise InvalidError("not a histogram, or no sample with these labels", name=name)
        out = found[0]
        for s in found[1:]:
            out = _add(out, s)  # type: ignore[assignment]
        return dataclasses.replace(out, labels=tuple(sorted(labels.items())))

    def to_dict(self) -> dict[str, object]:
        """Plain data (JSON-ready): name -> type, help and samples."""
        out: dict[str, object] = {}
        for fam in self.families.values():
            rows: list[dict[str, object]] = []
            for s in fam.samples:
                row: dict[str, object] = {"labels": dict(s.labels)}
                if isinstance(s, HistogramSample):
                    row.update(
                        count=s.count,
                        sum=s.sum,
                        buckets=[[b if b != math.inf else "+Inf", c] for b, c in s.buckets],
                    )
                else:
                    row["value"] = s.value
                rows.append(row)
            out[fam.name] = {"type": fam.type, "help": fam.help, "samples": rows}
        return out


_default: MetricsRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> MetricsRegistry:
    """The process-wide registry: what exporters read. Every database handle's registry is
    one of its children unless it was created with ``parent=None``."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MetricsRegistry(parent=None)
        return _default
