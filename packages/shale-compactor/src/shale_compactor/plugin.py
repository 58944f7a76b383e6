"""The pluggy plugin of shale_compactor, registered through the ``shale`` entry-point group.

Hook implementations go here, marked with ``@shale.hookimpl``.
"""

from __future__ import annotations

import shale  # noqa: F401  (gives plugins the hookimpl marker: @shale.hookimpl)
