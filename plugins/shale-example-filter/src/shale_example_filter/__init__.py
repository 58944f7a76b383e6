"""shale_example_filter: an example compaction filter plugin (copy it to write your own)."""

from shale import __version__  # the project's one version: every distribution has it
from shale_example_filter.plugin import PREFIXES_ENV, DropPrefixFilter, parse_prefixes

__all__ = ["PREFIXES_ENV", "DropPrefixFilter", "__version__", "parse_prefixes"]
