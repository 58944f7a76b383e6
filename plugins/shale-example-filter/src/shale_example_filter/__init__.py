"""shale_example_filter: an example compaction filter plugin (copy it to write your own)."""

from shale_example_filter.plugin import PREFIXES_ENV, DropPrefixFilter, parse_prefixes

__all__ = ["PREFIXES_ENV", "DropPrefixFilter", "parse_prefixes"]

__version__ = "0.1.0"
