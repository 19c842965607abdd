"""``python -m driftgauge``: the ``driftgauge`` command."""

import sys

from driftgauge.cli import main

sys.exit(main())
