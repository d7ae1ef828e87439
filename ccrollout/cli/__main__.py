"""`python -m ccrollout.cli`: the same as the ccrollout command."""

import sys

from . import main

sys.exit(main())
