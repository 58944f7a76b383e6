"""shale.mapping: ``db.mapping()`` against a dict model, its durability choice, no ``len``."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import shale
from shale import Db, DbMapping, InvalidError, ReadOnlyDbMapping, Settings
from shale.mapping import key_range
from shale.objstore.memory import MemoryStore

QUIET = Settings(flush_interval=None, compactor_options=None, garbage_collector_options=None)


@pytest.fixture
def db() -> Iterator[Db]:
    d = Db.open("db", QUIET, object_store=MemoryStore())
    yield d
    d.close()


def test_item_access_contains_and_get(db: Db) -> None:
    m = db.mapping()
    with pytest.raises(KeyError):
        m[b"k"]
    assert b"k" not in m and m.get(b"k") is None and m.get(b"k", b"d") == b"d"
    m[b"k"] = b"v"
    assert m[b"k"] == b"v" and b"k" in m and m.get(b"k", b"d") == b"v"
    assert db.get(b"k") == b"v"  # the view is the database
    db.put(b"k", b"w")
    assert m[b"k"] == b"w"
    with pytest.raises(InvalidError):
        "k" in m  # noqa: B015 -- a str key is a bug, not an absent key
    with pytest.raises(InvalidError):
        m[b""] = b"v"


def test_del_raises_keyerror_when_absent_and_discard_is_blind(db: Db) -> None:
    m = db.mapping()
    with pytest.raises(KeyError):
        del m[b"k"]
    before = db.metrics()
    m.discard(b"k")  # no error, one tombstone
    assert db.get_key_value(b"k") is None
    assert before != db.metrics()
    m[b"k"] = b"v"
    del m[b"k"]
    assert b"k" not in m
    with pytest.raises(KeyError):
        del m[b"k"]


def test_update_is_one_atomic_batch(db: Db) -> None:
    m = db.mapping()
    m.update({b"a": b"1", b"b": b"2"})
    m.update([(b"c", b"3"), (b"d", b"4")])
    seqs = {db.get_key_value(k).seq for k in (b"a", b"b")}  # type: ignore[union-attr]
    assert len(seqs) == 1
    assert db.get_key_value(b"c").seq == db.get_key_value(b"d").seq  # type: ignore[union-attr]
    other = Db.open("other", QUIET, object_store=MemoryStore())
    other.mapping().update(m)  # from another view: its items
    assert dict(other.mapping().items()) == {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"}
    other.close()
    last = db.get_key_value(b"d").seq  # type: ignore[union-attr]
    m.update({})
    m.update()
    assert db.put(b"z", b"z").seq == last + 1  # an empty update wrote nothing
    for bad in (5, b"ab", [(b"x", b"1", b"2")], [b"xy"], {b"x": 1}, [(b"", b"v")]):
        with pytest.raises(InvalidError):
            m.update(bad)  # type: ignore[arg-type]
    # a bad pair anywhere writes nothing
    with pytest.raises(InvalidError):
        m.update([(b"p", b"1"), (b"q", 2)])  # type: ignore[list-item]
    assert b"p" not in m


def test_len_is_refused_and_count_scans(db: Db) -> None:
    m = db.mapping()
    with pytest.raises(TypeError, match=r"count\(prefix="):
        len(m)
    assert not m
    m.update({b"a1": b"", b"a2": b"", b"b1": b"", b"c": b""})
    assert m
    assert m.count() == 4
    assert m.count(prefix=b"a") == 2
    assert m.count(start=b"a2", end=b"c") == 2
    assert m.count(prefix=b"a", start=b"a2") == 1
    assert m.count(prefix=b"zz") == 0
    assert list(m) == [b"a1", b"a2", b"b1", b"c"]  # list() survives the refused len
    assert sorted(m.keys(), reverse=True) == list(m.keys(reverse=True))


def test_durable_option(db: Db) -> None:
    fast = db.mapping(durable=False)
    assert fast.durable is False and db.mapping().durable is True
    fast[b"k"] = b"v"
    assert fast[b"k"] == b"v"
    assert db.get(b"k", durability="remote") is None  # acknowledged before the WAL upload
    fast.discard(b"gone")
    db.flush()
    assert db.get(b"k", durability="remote") == b"v"
    db.mapping()[b"d"] = b"v"  # durable: returns once durable
    assert db.get(b"d", durability="remote") == b"v"
    fast.update({b"u": b"1"})
    assert db.get(b"u", durability="remote") is None
    with pytest.raises(InvalidError):
        db.mapping(durable=1)  # type: ignore[arg-type]


def test_read_only_views_have_no_writes(db: Db) -> None:
    db.put(b"k", b"v")
    with db.snapshot() as snap:
        view = ReadOnlyDbMapping(snap)
        db.put(b"k", b"new")
        assert view[b"k"] == b"v" and list(view.items()) == [(b"k", b"v")]
        with pytest.raises(TypeError):
            view[b"k"] = b"x"  # type: ignore[index]
        assert not isinstance(view, DbMapping)
        assert "ReadOnlyDbMapping" in repr(view)


def test_key_range_intersects_prefix_and_bounds() -> None:
    assert key_range(None, None, None) == (None, None)
    assert key_range(b"a", None, None) == (b"a", b"b")
    assert key_range(b"a", b"a5", b"z") == (b"a5", b"b")
    assert key_range(b"b", b"a", b"b5") == (b"b", b"b5")
    assert key_range(b"\xff", None, None) == (b"\xff", None)
    start, end = key_range(b"a", b"c", None)  # disjoint: empty
    assert start is not None and end is not None and start >= end
    with pytest.raises(InvalidError):
        key_range(None, b"b", b"a")


# -- the model ------------------------------------------------------------------------------------

KEYS = st.binary(min_size=1, max_size=3).map(lambda b: bytes(c % 3 * 0x7F for c in b))
BOUND = st.none() | KEYS


class MappingModel(RuleBasedStateMachine):
    """Every dict operation the view offers, against a dict; flushes put rows in SSTs."""

    def __init__(self) -> None:
        super().__init__()
        self.db = Db.open("db", QUIET, object_store=MemoryStore())
        self.m = self.db.mapping(durable=False)
        self.model: dict[bytes, bytes] = {}

    def teardown(self) -> None:
        self.db.close()

    @rule(k=KEYS, v=st.binary(max_size=3))
    def set(self, k: bytes, v: bytes) -> None:
        self.m[k] = v
        self.model[k] = v

    @rule(k=KEYS)
    def delete(self, k: bytes) -> None:
        if k in self.model:
            del self.m[k]
            del self.model[k]
        else:
            with pytest.raises(KeyError):
                del self.m[k]

    @rule(k=KEYS)
    def discard(self, k: bytes) -> None:
        self.m.discard(k)
        self.model.pop(k, None)

    @rule(pairs=st.dictionaries(KEYS, st.binary(max_size=3), max_size=4))
    def update(self, pairs: dict[bytes, bytes]) -> None:
        self.m.update(pairs)
        self.model.update(pairs)

    @rule(k=KEYS, v=st.binary(max_size=3))
    def setdefault(self, k: bytes, v: bytes) -> None:
        assert self.m.setdefault(k, v) == self.model.setdefault(k, v)

    @rule(k=KEYS, default=st.none() | st.just(b"d"))
    def pop(self, k: bytes, default: bytes | None) -> None:
        if k in self.model or default is not None:
            assert self.m.pop(k, default) == self.model.pop(k, default)
        else:
            with pytest.raises(KeyError):
                self.m.pop(k)

    @rule()
    def popitem(self) -> None:
        if self.model:
            smallest = min(self.model)
            assert self.m.popitem() == (smallest, self.model.pop(smallest))
        else:
            with pytest.raises(KeyError):
                self.m.popitem()

    @precondition(lambda self: self.model)
    @rule()
    def flush(self) -> None:
        self.db.flush(memtable=True)

    @rule(k=KEYS)
    def read(self, k: bytes) -> None:
        assert (k in self.m) == (k in self.model)
        assert self.m.get(k) == self.model.get(k)
        if k in self.model:
            assert self.m[k] == self.model[k]
        else:
            with pytest.raises(KeyError):
                self.m[k]

    @rule(
        prefix=st.none() | st.sampled_from([b"", b"\x00", b"\x7f", b"\xfe", b"\xfe\xfe"]),
        start=BOUND,
        end=BOUND,
        reverse=st.booleans(),
    )
    def scan(
        self, prefix: bytes | None, start: bytes | None, end: bytes | None, reverse: bool
    ) -> None:
        if start is not None and end is not None and start > end:
            start, end = end, start
        want = sorted(
            (k, v)
            for k, v in self.model.items()
            if (prefix is None or k.startswith(prefix))
            and (start is None or k >= start)
            and (end is None or k < end)
        )
        if reverse:
            want.reverse()
        got = list(self.m.items(prefix=prefix, start=start, end=end, reverse=reverse))
        assert got == want
        assert list(self.m.keys(prefix=prefix, start=start, end=end, reverse=reverse)) == [
            k for k, _ in want
        ]
        assert list(self.m.values(prefix=prefix, start=start, end=end, reverse=reverse)) == [
            v for _, v in want
        ]
        assert self.m.count(prefix=prefix, start=start, end=end) == len(want)

    @invariant()
    def whole(self) -> None:
        assert list(self.m) == sorted(self.model)
        assert bool(self.m) == bool(self.model)


TestMappingModel = MappingModel.TestCase
TestMappingModel.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- types ----------------------------------------------------------------------------------------


def test_views_type_check_for_strict_users(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("mypy")
    code = textwrap.dedent(
        """
        import shale

        def main(db: shale.Db, reader: shale.DbReader) -> None:
            m = db.mapping(durable=False)
            reveal_type(m[b"k"])
            reveal_type(m.get(b"k", b"d"))
            reveal_type(list(m.items(prefix=b"a")))
            ns = db.namespace(b"users/")
            reveal_type(ns.get(b"k"))
            reveal_type(ns.put(b"k", b"v"))
            reveal_type(ns.namespace(b"x/").mapping())
            reveal_type(reader.namespace(b"u/").snapshot())
            ro = reader.mapping()
            ro[b"k"] = b"v"
            reader.namespace(b"u/").put(b"k", b"v")
        """
    )
    path = tmp_path / "user_code.py"
    path.write_text(code)
    environ = dict(os.environ)
    src = pathlib.Path(shale.__file__).resolve().parent.parent
    if src.name not in ("site-packages", "dist-packages"):
        environ["MYPYPATH"] = str(src)
    cache = str(tmp_path / ".mypy_cache")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            cache,
            str(path),
        ],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
    )
    out = proc.stdout
    revealed = [
        line.split("Revealed type is ", 1)[1].replace("builtins.", "")
        for line in out.splitlines()
        if "Revealed type is " in line
    ]
    assert revealed == [
        '"bytes"',
        '"bytes | None"',
        '"list[tuple[bytes, bytes]]"',
        '"bytes | None"',
        '"shale.engine._commit_py.WriteHandle"',
        '"shale.mapping.DbMapping"',
        '"shale.namespace.NamespaceSnapshot"',
    ], out
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 2, out
    assert "ReadOnlyDbMapping" in errors[0] and "indexed assignment" in errors[0], out
    assert '"ReadOnlyNamespace" has no attribute "put"' in errors[1], out


def test_setdefault_pop_popitem(db: Db) -> None:
    m = db.mapping()
    assert m.setdefault(b"a", b"1") == b"1" and db.get(b"a") == b"1"
    assert m.setdefault(b"a", b"2") == b"1" and db.get(b"a") == b"1"
    assert m.pop(b"a") == b"1" and b"a" not in m
    with pytest.raises(KeyError):
        m.pop(b"a")
    assert m.pop(b"a", None) is None and m.pop(b"a", b"d") == b"d"
    m.update({b"y": b"2", b"x": b"1"})
    assert m.popitem() == (b"x", b"1")  # the smallest key
    assert m.popitem() == (b"y", b"2")
    with pytest.raises(KeyError):
        m.popitem()
    with pytest.raises(InvalidError):
        m.setdefault(b"k", "str")  # type: ignore[arg-type]
    assert b"k" not in m
    ns = db.namespace(b"ns/").mapping()
    db.put(b"a", b"outside")
    assert ns.setdefault(b"k", b"v") == b"v" and db.get(b"ns/k") == b"v"
    assert ns.popitem() == (b"k", b"v")
    with pytest.raises(KeyError):
        ns.popitem()  # the root key b"a" is not the namespace's
    assert not hasattr(m, "clear")


def test_concurrent_pops_hand_each_value_out_once(db: Db) -> None:
    m = db.mapping(durable=False)
    m.update({b"k%02d" % i: b"%d" % i for i in range(40)})
    got: list[tuple[bytes, bytes]] = []
    lock = threading.Lock()

    def drain() -> None:
        while True:
            try:
                item = m.popitem()
            except KeyError:
                return
            with lock:
                got.append(item)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(got) == sorted((b"k%02d" % i, b"%d" % i) for i in range(40))
    assert not m
