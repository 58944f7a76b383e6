"""``python -m shale`` runs the ``shale`` command."""

import sys

from shale.cli import main

sys.exit(main())
