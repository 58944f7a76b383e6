"""The random workload: a seed becomes a configuration and a list of operations.

Everything random is decided here, up front, from one ``random.Random(seed)``; an operation is
a plain dict (JSON-ready) whose meaning does not depend on what ran before it -- choices that
depend on the state (which open snapshot to read) are ``pick`` numbers taken modulo what
exists when it runs. So a trace can be shrunk by deleting operations and replayed from a file.
"""

from __future__ import annotations

import random
from typing import Any

from shalesim import known

Op = dict[str, Any]
Config = dict[str, Any]

# Per-operation weights (relative). Read checks also run after every operation.
WEIGHTS: dict[str, float] = {
    "put": 20,
    "put_seq": 2,
    "merge": 10,
    "delete": 5,
    "batch": 6,
    "get": 8,
    "scan": 6,
    "prefix": 2,
    "get_remote": 2,
    "snap_open": 3,
    "snap_read": 5,
    "snap_scan": 2,
    "snap_close": 2,
    "tick": 6,
    "flush": 3,
    "flush_mem": 5,
    "compact": 4,
    "compactor_restart": 0.5,
    "gc": 2,
    "checkpoint": 1,
    "checkpoint_delete": 0.5,
    "poll": 1,
    "reopen": 1.5,
    "crash": 1.5,
    "fence": 1,
    "faults": 2.5,
    "full": 0.7,
}

WRITE_OPS = frozenset({"put", "put_seq", "merge", "delete", "batch"})


def make_config(rng: random.Random) -> Config:
    """The database and compactor settings of one run (small sizes: many SSTs, many splits)."""
    return {
        "prefixes": rng.choice([["a/"], ["a/", "b/"], ["a/", "b/", "c/"]]),
        "keys_per_prefix": rng.choice([3, 6, 10, 16]),
        "hot_keys": rng.randint(1, 3),
        "hot_share": rng.choice([0.3, 0.5, 0.7]),
        "big_values": rng.choice([0.0, 0.1, 0.3]),
        "l0_sst_size_bytes": rng.choice([1 << 30, 1 << 30, 4096, 16384]),
        "max_wal_flushes_before_l0_flush": rng.choice([4096, 4096, 3, 8]),
        "l0_max_ssts": rng.choice([4, 8]),
        "block_size": 1024,
        "min_filter_keys": rng.choice([0, 1000]),
        "compression_codec": rng.choice([None, None, "zlib"]),
        "default_ttl": rng.choice([None, None, None, 2000, 20000]),
        "max_sst_size": rng.choice([1, 512, 1024, 3000]),
        "min_compaction_sources": rng.choice([2, 4]),
        "checkpoint_lifetime": rng.choice([900.0, 30.0]),
        "poll_interval_ms": 1000,
        "db_seed": rng.randrange(2**63),
        "compactor_seed": rng.randrange(2**63),
        "wal_enabled": rng.random() >= 0.2,
        "l0_flush_parallelism": rng.choice([1, 2, 4]),
    }


class Generator:
    def __init__(self, rng: random.Random, config: Config) -> None:
        self.rng = rng
        self.config = config
        self.avoid = frozenset(config["avoid"])
        self.keys = [
            f"{p}{i:02d}" for p in config["prefixes"] for i in range(config["keys_per_prefix"])
        ]
        self.hot = rng.sample(self.keys, min(config["hot_keys"], len(self.keys)))
        self.tag = 0
        names = list(WEIGHTS)
        # each seed leans on a few operations (bursts of writes, of compactions, of faults...)
        weights = [WEIGHTS[n] * rng.choice([0.5, 1.0, 1.0, 2.0]) for n in names]
        self.names, self.weights = names, weights

    # -- pieces -------------------------------------------------------------------------------

    def key(self) -> str:
        if self.rng.random() < self.config["hot_share"]:
            return self.rng.choice(self.hot)
        return self.rng.choice(self.keys)

    def any_key(self) -> str:
        """A key for reads and bounds: mostly existing names, sometimes in between."""
        k = self.rng.choice(self.keys)
        return k + self.rng.choice(["", "", "", "!", "~"])

    def value(self, key: str) -> tuple[str, int]:
        self.tag += 1
        pad = self.rng.randint(0, 40)
        if self.rng.random() < self.config["big_values"]:
            pad = self.rng.randint(200, 900)
        return f"{key}#{self.tag};", pad

    def ttl(self) -> Any:
        r = self.rng.random()
        if r < 0.75:
            return None
        if r < 0.92:
            return self.rng.choice([1, 50, 500, 1500, 5000, 60000])
        if r < 0.97:
            return ["at", self.rng.randint(-2000, 8000)]  # relative to now; may be past
        return ["never"]

    def bounds(self) -> tuple[str | None, str | None]:
        a = self.any_key() if self.rng.random() < 0.7 else None
        b = self.any_key() if self.rng.random() < 0.7 else None
        if a is not None and b is not None and a > b:
            a, b = b, a
        return a, b

    # -- operations ---------------------------------------------------------------------------

    def op(self) -> Op:
        name = self.rng.choices(self.names, self.weights)[0]
        return getattr(self, "op_" + name)()

    def _durable(self) -> bool:
        return self.rng.random() < 0.7

    def op_put(self) -> Op:
        k = self.key()
        v, pad = self.value(k)
        return {"op": "put", "key": k, "val": v, "pad": pad, "ttl": self.ttl(),
                "durable": self._durable()}  # fmt: skip

    def op_put_seq(self) -> Op:
        """A put with a caller-chosen seq: ``gap`` above the last one (0: refused)."""
        k = self.key()
        v, pad = self.value(k)
        return {"op": "put_seq", "key": k, "val": v, "pad": pad,
                "gap": self.rng.choice([0, 1, 2, 7, 1000]), "durable": self._durable()}  # fmt: skip

    def op_merge(self) -> Op:
        k = self.key()
        v, pad = self.value(k)
        return {"op": "merge", "key": k, "val": v, "pad": pad, "ttl": self.ttl(),
                "durable": self._durable()}  # fmt: skip

    def op_delete(self) -> Op:
        return {"op": "delete", "key": self.key(), "durable": self._durable()}

    def op_batch(self) -> Op:
        items: list[list[Any]] = []
        ttl_of: dict[str, Any] = {}
        for _ in range(self.rng.randint(1, 6)):
            k = self.key()
            kind = self.rng.choices(["put", "merge", "delete"], [4, 4, 1])[0]
            if kind == "delete":
                items.append(["delete", k])
                continue
            v, pad = self.value(k)
            ttl = self.ttl()
            if "batch-mixed-ttl" in self.avoid:
                ttl = ttl_of.setdefault(k, ttl)
            items.append([kind, k, v, pad, ttl])
        return {"op": "batch", "items": items, "durable": self._durable()}

    def op_get(self) -> Op:
        return {"op": "get", "key": self.any_key() if self.rng.random() < 0.3 else self.key()}

    def op_get_remote(self) -> Op:
        return {"op": "get_remote", "key": self.key()}

    def op_scan(self) -> Op:
        start, end = self.bounds()
        op: Op = {"op": "scan", "start": start, "end": end, "reverse": self.rng.random() < 0.5}
        if self.rng.random() < 0.4:
            op["take"] = self.rng.randint(0, 4)
            op["seek"] = self.any_key()
        return op

    def op_prefix(self) -> Op:
        p = self.rng.choice([*self.config["prefixes"], ""])
        return {"op": "prefix", "prefix": p, "reverse": self.rng.random() < 0.3}

    def op_snap_open(self) -> Op:
        return {"op": "snap_open"}

    def op_snap_read(self) -> Op:
        return {"op": "snap_read", "pick": self.rng.randrange(1000), "key": self.key()}

    def op_snap_scan(self) -> Op:
        start, end = self.bounds()
        return {"op": "snap_scan", "pick": self.rng.randrange(1000), "start": start,
                "end": end, "reverse": self.rng.random() < 0.5}  # fmt: skip

    def op_snap_close(self) -> Op:
        return {"op": "snap_close", "pick": self.rng.randrange(1000)}

    def op_tick(self) -> Op:
        r = self.rng.random()
        if r < 0.8:
            ms = self.rng.randint(1, 300)
        elif r < 0.95:
            ms = self.rng.randint(1000, 10000)
        else:
            ms = self.rng.randint(30_000, 2_000_000)  # past TTLs and checkpoint lifetimes
        return {"op": "tick", "ms": ms}

    def op_flush(self) -> Op:
        return {"op": "flush"}

    def op_flush_mem(self) -> Op:
        return {"op": "flush_mem"}

    def op_compact(self) -> Op:
        return {"op": "compact", "mode": self.rng.choice(["full", "full", "tick", "l0"])}

    def op_compactor_restart(self) -> Op:
        return {"op": "compactor_restart"}

    def op_gc(self) -> Op:
        return {"op": "gc"}

    def op_checkpoint(self) -> Op:
        return {
            "op": "checkpoint",
            "scope": self.rng.choice(["durable", "durable", "all"]),
            "lifetime": self.rng.choice([None, 5.0, 60.0, 3600.0]),
        }

    def op_checkpoint_delete(self) -> Op:
        return {"op": "checkpoint_delete", "pick": self.rng.randrange(1000)}

    def op_poll(self) -> Op:
        return {"op": "poll"}

    def op_reopen(self) -> Op:
        return {"op": "reopen", "flush": self.rng.choice(["wal", "wal", "memtable", None])}

    def op_crash(self) -> Op:
        return {"op": "crash"}

    def op_fence(self) -> Op:
        return {"op": "fence", "key": self.key()}

    def op_faults(self) -> Op:
        writes = "put,put_if_absent,put_if_match"
        menu = [
            {"ops": writes, "probability": 0.5, "error": "transient", "limit": 2},
            {"ops": writes, "probability": 0.5, "error": "transient", "after": True, "limit": 2},
            {"ops": "get,get_range,head,list", "probability": 0.3, "limit": 2},
            {"ops": "*", "probability": 0.2, "limit": 3},
            {"ops": "put_if_absent", "probability": 1.0, "after": True, "limit": 1},
            {"ops": "delete", "probability": 0.5, "limit": 2},
        ]
        rules = self.rng.sample(menu, self.rng.randint(1, 2))
        return {"op": "faults", "n": self.rng.randint(1, 3), "rules": rules,
                "seed": self.rng.randrange(2**32)}  # fmt: skip

    def op_full(self) -> Op:
        return {"op": "full", "n": self.rng.randint(1, 4), "slack": self.rng.randint(0, 4096)}


def generate(seed: int, n_ops: int, *, all_shapes: bool = False) -> tuple[Config, list[Op]]:
    """The configuration and operations of ``seed``."""
    rng = random.Random(seed)
    config = make_config(rng)
    # shapes of known open defects the run leaves out (the engine reads this too)
    config["avoid"] = [] if all_shapes else sorted(known.open_shapes())
    gen = Generator(rng, config)
    return config, [gen.op() for _ in range(n_ops)]


def describe(op: Op) -> str:
    """One short line for a trace listing."""
    name = op["op"]
    rest = ", ".join(f"{k}={v!r}" for k, v in op.items() if k != "op")
    return f"{name}({rest})"
