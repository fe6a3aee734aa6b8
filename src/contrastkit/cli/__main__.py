"""``python -m contrastkit.cli`` runs the command line, like ``python -m contrastkit``."""

import sys

from contrastkit.cli import main

sys.exit(main())
