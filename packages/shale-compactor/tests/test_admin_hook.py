"""``shale.Admin.submit_compaction`` reaches shale-compactor through
``shale_admin_submit_compaction``: the spec is parsed and validated, nobody is fenced."""

from __future__ import annotations

import json

import pytest

import shale
from shale.objstore.memory import MemoryStore
from shale_compactor import Compactor
from shale_compactor.scheduler import CompactionSpec


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    settings = shale.Settings(compactor_options=None, garbage_collector_options=None)
    with shale.Db.open("db", settings, object_store=store) as db:
        for i in range(3):
            db.put(b"k%d" % i, b"v%d" % i)
            db.flush(memtable=True)
    return store


def test_submit_full_then_a_compactor_runs_it(store: MemoryStore) -> None:
    admin = shale.Admin("db", object_store=store)
    before = admin.read_manifest()
    assert before is not None and len(before.manifest.l0) == 3
    submitted = admin.submit_compaction("full")
    assert submitted.status == 0 and len(submitted.l0_view_ids) == 3
    after = admin.read_manifest()
    assert after is not None and after.id == before.id  # the manifest is untouched
    with Compactor(store, "db") as compactor:
        reports = compactor.run_once(timeout=60)
    assert [r.id for r in reports] == [submitted.id]
    latest = admin.read_manifest()
    assert latest is not None and latest.manifest.l0 == [] and len(latest.manifest.compacted) == 1
    done = admin.read_compaction(submitted.id)
    assert done is not None and done.status == 2 and done.output_ssts


def test_submit_a_spec_object_json_and_bad_specs(store: MemoryStore) -> None:
    admin = shale.Admin("db", object_store=store)
    latest = admin.read_manifest()
    assert latest is not None
    oldest, newest = latest.manifest.l0[-1].id, latest.manifest.l0[0].id
    one = admin.submit_compaction(CompactionSpec(l0=(oldest,), destination=0))
    assert one.l0_view_ids == [oldest]
    with pytest.raises(shale.InvalidError, match="oldest L0"):  # validated by the scheduler
        admin.submit_compaction(json.dumps({"l0": [str(newest)], "destination": 1}))
    compactions = admin.read_compactions()
    assert compactions is not None
    assert [c.id for c in compactions.compactions.recent_compactions] == [one.id]
    with pytest.raises(shale.InvalidError):
        admin.submit_compaction(42)
    with pytest.raises(shale.InvalidError):
        admin.submit_compaction("not json")
