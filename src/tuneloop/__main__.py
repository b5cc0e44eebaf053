"""`python -m tuneloop` runs the CLI."""

import sys

from tuneloop.cli import main

sys.exit(main())
