"""The job's own CLI, with the harness's kill points as its batch hook: how the fault tests start the real job.

    python tests/harness/fault_job.py run --source ... --warehouse ... [--once]

Production never passes a hook (`job.run(hook=None)`); this wrapper is the only place one is given.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # faults.py, beside this file

from faults import point

from streaming import cli
from streaming.pipeline import job

_run = job.run


def _run_with_kill_points(*args: Any, **kwargs: Any) -> job.RunSummary:
    return _run(*args, hook=point, **kwargs)


if __name__ == "__main__":
    job.run = _run_with_kill_points
    sys.exit(cli.main())
