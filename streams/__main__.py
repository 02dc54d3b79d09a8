"""``python -m streams`` runs the churnwatch CLI."""

import sys

from streams.cli import main

sys.exit(main())
