"""Every documentation block made from the code is what the code makes now (`make docs` rewrites them)."""

from __future__ import annotations

import pytest

from streaming import generated

# The catalog's table definitions are derived from Spark schemas: that one block needs a JVM.
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n == "catalog" else n for n in generated.blocks()]


@pytest.mark.parametrize("name", NAMES)
def test_the_generated_block_is_fresh(name: str, request: pytest.FixtureRequest) -> None:
    if name == "catalog":
        request.getfixturevalue("spark")  # the session the block's derivation reuses
    where = generated.TARGETS[name].relative_to(generated.ROOT)
    assert generated.fresh(name), f"{where} block {name!r} is stale: run `make docs`"


def test_every_marked_block_is_generated_in_its_file() -> None:
    """Each block is marked in the file TARGETS names for it, and no documentation file marks one it does not."""
    assert set(generated.TARGETS) == set(generated.blocks())
    docs = [generated.README, *sorted((generated.ROOT / "docs").rglob("*.md"))]
    found = {path: generated.marked(path) for path in docs}
    expected = {path: {n for n, t in generated.TARGETS.items() if t == path} for path in docs}
    assert found == expected
