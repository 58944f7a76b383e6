"""shale_demo: the ``shale demo`` command of the umbrella distribution ``shale``.

``pip install ./packages/shale`` installs shale-core, shale-compactor and shale-gc together;
this package adds the guided tour that exercises all three (:func:`run_demo`), registered as a
``shale`` subcommand through the ``shale_cli`` hook (:mod:`shale_demo.plugin`). shale-core knows
nothing of it.
"""

from __future__ import annotations

from shale_demo.demo import run_demo

__all__ = ["run_demo"]
