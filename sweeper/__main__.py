"""`python -m sweeper`: the same as the `sweeper` command."""

import sys

from .cli import main

sys.exit(main())
