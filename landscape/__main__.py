"""``python -m landscape`` (also what ``torchrun -m landscape`` runs)."""

import sys

from landscape.cli import main

sys.exit(main())
