"""How ``shale`` commands print: bytes as text, hex or base64; JSON documents and JSON Lines.

* :func:`output_options` -- the parent parser of every read command: ``--json`` and
  ``--bytes {escaped,base64,hex}``. (``--hex`` of the key-value commands also selects hex, for
  input and output alike.)
* :func:`show_bytes` -- one key or value in the chosen form.
* :func:`emit` / :func:`emit_line` -- a JSON document (indented) or one JSON Lines record.
* :func:`compaction_summary` and :func:`when` -- JSON-safe views of metadata records.

Why a flag for bytes: keys are arbitrary bytes. ``escaped`` (the default) prints UTF-8 text with
every other byte as ``\\xNN`` -- readable, and exact unless the text itself holds a backslash
followed by ``x``; ``base64`` and ``hex`` are exact and what scripts should use.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import sys
from typing import TYPE_CHECKING, Any

from shale.fbs.compactions import (
    SPEC_DRAIN_SEGMENT,
    STATUS_COMPACTED,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_SCHEDULED,
    STATUS_SUBMITTED,
)

if TYPE_CHECKING:
    from shale.fbs.compactions import Compaction

__all__ = [
    "BYTES_FORMATS",
    "compaction_summary",
    "emit",
    "emit_line",
    "output_options",
    "show_bytes",
    "when",
]

#: The ``--bytes`` choices.
BYTES_FORMATS = ("escaped", "base64", "hex")

STATUS_NAMES = {
    STATUS_SUBMITTED: "submitted",
    STATUS_RUNNING: "running",
    STATUS_COMPLETED: "completed",
    STATUS_FAILED: "failed",
    STATUS_COMPACTED: "compacted",
    STATUS_SCHEDULED: "scheduled",
}


def output_options() -> argparse.ArgumentParser:
    """The parent parser with ``--json`` (``args.json``) and ``--bytes`` (``args.bytes``)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output options")
    g.add_argument(
        "--json",
        action="store_true",
        help="print JSON (scans and lists: one JSON object per line, JSON Lines)",
    )
    g.add_argument(
        "--bytes",
        choices=BYTES_FORMATS,
        default="escaped",
        help="how keys and values are printed: UTF-8 text with other bytes as \\xNN "
        "(escaped, the default), base64 or hex; --hex selects hex",
    )
    return p


def bytes_format(args: argparse.Namespace) -> str:
    """The chosen form of printed bytes (``--hex`` wins over ``--bytes``)."""
    if getattr(args, "hex", False):
        return "hex"
    return str(getattr(args, "bytes", "escaped") or "escaped")


def show_bytes(data: bytes | None, fmt: str) -> str | None:
    """``data`` as ``fmt`` (one of :data:`BYTES_FORMATS`); ``None`` stays ``None``."""
    if data is None:
        return None
    if fmt == "hex":
        return data.hex()
    if fmt == "base64":
        return base64.b64encode(data).decode("ascii")
    return data.decode("utf-8", "backslashreplace")


def emit(document: Any) -> None:
    """Print one JSON document, indented."""
    print(json.dumps(document, indent=2))


def emit_line(record: Any) -> None:
    """Print one JSON Lines record (compact, one line)."""
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")


def when(seconds: int | None) -> str | None:
    """Unix seconds as an ISO-8601 UTC time, ``None`` for ``None``."""
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


def compaction_summary(c: Compaction, fmt: str = "escaped") -> dict[str, Any]:
    """A JSON-safe view of one ``.compactions`` entry."""
    return {
        "id": str(c.id),
        "status": STATUS_NAMES.get(c.status, str(c.status)),
        "spec": "drain_segment" if c.spec_type == SPEC_DRAIN_SEGMENT else "tiered",
        "l0_view_ids": [str(u) for u in c.l0_view_ids],
        "sorted_runs": list(c.sorted_runs),
        "destination": c.destination,
        "segment": show_bytes(c.segment, fmt),
        "output_ssts": [str(o.id) for o in c.output_ssts],
        "worker_id": c.worker_id,
        "last_heartbeat_ms": c.last_heartbeat_ms,
    }
