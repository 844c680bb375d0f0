"""The package's shape: imports point down the layers streaming/__init__.py names, with no cycle, and mypy passes."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_imports_point_down_the_layers_only() -> None:
    """import-linter's layers contracts (pyproject.toml): an upward or cyclic import breaks one."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"{len(contracts)} kept, 0 broken" in done.stdout


def test_the_suite_runs_costliest_first_and_a_module_fixture_on_one_worker(request: pytest.FixtureRequest) -> None:
    """tests/conftest.py's order and groups (docs/decisions/test-costs.md), read from this run's own collection."""
    items = request.session.items
    costs = [
        "job" if i.get_closest_marker("job") else "spark" if i.get_closest_marker("spark") else "pure" for i in items
    ]
    rank = {"job": 0, "spark": 1, "pure": 2}
    assert [rank[c] for c in costs] == sorted(rank[c] for c in costs), "a cheaper test runs before a costlier one"
    on_moto = [
        "moto_endpoint" in getattr(i, "fixturenames", ()) for i, c in zip(items, costs, strict=True) if c == "pure"
    ]
    assert any(on_moto) and on_moto == sorted(on_moto, reverse=True), "a pure test on moto runs after one that is not"
    grouped = {i.nodeid: [m.args[0] for m in i.iter_markers("xdist_group")] for i in items}
    shared = [
        i.nodeid for i in items if "large_set" in getattr(i, "fixturenames", ())
    ]  # test_generate's module fixture
    assert shared and all(grouped[n] == ["tests/test_generate.py"] for n in shared), shared
    assert grouped[request.node.nodeid] == []  # no module-scoped fixture here: free to run anywhere
