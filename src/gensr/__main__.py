"""``python -m gensr`` runs the command line."""

import sys

from gensr.cli import main

sys.exit(main())
