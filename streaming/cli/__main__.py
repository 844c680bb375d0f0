"""`python -m streaming.cli`: the command line, as the `bronze-encounter` script runs it."""

from __future__ import annotations

import sys

from streaming.cli import main

sys.exit(main())
