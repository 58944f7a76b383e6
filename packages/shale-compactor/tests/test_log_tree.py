"""One logger tree: the compactor's and GC's loggers are under ``shale``, so ``shale -v`` shows
their lines (docs/metrics.md#logging)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import shale_compactor.compactor
import shale_compactor.executor
import shale_gc.collector
from shale import Db, Settings
from shale.cli import main

QUIET = Settings(compactor_options=None, garbage_collector_options=None)


def test_extension_loggers_are_children_of_shale() -> None:
    assert shale_compactor.compactor.logger.name == "shale.compactor.compactor"
    assert shale_compactor.executor.log.name == "shale.compactor.executor"
    assert shale_gc.collector.logger.name == "shale.gc.collector"
    for name in ("shale.compactor.compactor", "shale.gc.collector"):
        assert logging.getLogger(name).parent is not None
        assert logging.getLogger(name).name.startswith("shale.")


def test_shale_v_shows_compactor_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Db.open(tmp_path, QUIET) as db:
        for r in range(4):
            for i in range(50):
                db.put(b"k%03d" % i, b"v%d" % r, durable=False)
            db.flush(memtable=True)
    assert main(["-v", "compactor", "run", str(tmp_path), "--once"]) == 0
    err = capsys.readouterr().err
    assert " INFO shale.compactor.compactor: compaction completed" in err
    assert " INFO shale.compactor.executor: " in err
