"""shale_compactor: size-tiered, resumable, fenced compaction for shale databases.

- :class:`Compactor` runs compactions for one database: in-process (started by the plugin when
  ``Settings.compactor_options`` is set, the default) or standalone (``shale compactor run``).
- :mod:`shale_compactor.scheduler`: compaction specs and the size-tiered policy.
- :mod:`shale_compactor.state`: the ``.compactions`` + manifest protocol (read compactions
  before the manifest, write the manifest before compactions, checkpoint first, fencing).
- :mod:`shale_compactor.executor`, :mod:`~shale_compactor.retention`,
  :mod:`~shale_compactor.filters`: merging sources into output SSTs, retention rules and
  compaction filters.

See ``docs/compaction.md``.
"""

from shale import __version__  # the project's one version: every distribution has it
from shale.spi import CompactionsStore, FenceableCompactions, StoredCompactions
from shale_compactor.compactor import (
    CompactionReport,
    Compactor,
    CompactorHealth,
    JobStatus,
    read_status,
    submit_compaction,
)
from shale_compactor.executor import CompactionExecutor, CompactionJob, CompactionStopped
from shale_compactor.filters import (
    DROP,
    KEEP,
    CompactionFilter,
    CompactionFilterSupplier,
    CompactionJobContext,
    Modify,
)
from shale_compactor.scheduler import (
    FULL,
    CompactionSpec,
    SchedulerOptions,
    SizeTieredScheduler,
    parse_spec,
)
from shale_compactor.state import (
    CompactorState,
    CompactorStateView,
    CompactorStateWriter,
    read_view,
)
from shale_compactor.worker import CompactionWorker

__all__ = [
    "DROP",
    "FULL",
    "KEEP",
    "CompactionExecutor",
    "CompactionFilter",
    "CompactionFilterSupplier",
    "CompactionJob",
    "CompactionJobContext",
    "CompactionReport",
    "CompactionSpec",
    "CompactionStopped",
    "CompactionWorker",
    "CompactionsStore",
    "Compactor",
    "CompactorHealth",
    "CompactorState",
    "CompactorStateView",
    "CompactorStateWriter",
    "FenceableCompactions",
    "JobStatus",
    "Modify",
    "SchedulerOptions",
    "SizeTieredScheduler",
    "StoredCompactions",
    "__version__",
    "parse_spec",
    "read_status",
    "read_view",
    "submit_compaction",
]
