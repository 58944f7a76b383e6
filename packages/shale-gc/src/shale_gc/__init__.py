"""shale_gc: the garbage collector. Under construction: see issue 5."""

__version__ = "0.1.0"
