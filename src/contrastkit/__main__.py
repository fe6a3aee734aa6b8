"""``python -m contrastkit`` runs the command line (also under torchrun)."""

import sys

from contrastkit.cli import main

sys.exit(main())
