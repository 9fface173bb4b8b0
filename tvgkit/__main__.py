"""``python -m tvgkit``: the same as the ``tvgkit`` command (and what ``torchrun -m tvgkit`` runs)."""

import sys

from tvgkit.cli import main

sys.exit(main())
