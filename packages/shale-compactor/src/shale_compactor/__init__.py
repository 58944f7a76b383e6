"""shale_compactor: the compactor (size-tiered scheduler, resumable executor). Under construction: see issue 4."""

__version__ = "0.1.0"
