"""Every documentation block made from the code is what the code makes now (`make docs` rewrites them)."""

from __future__ import annotations

import pytest

from streaming import generated

# The catalog's table definitions are derived from Spark schemas: that one block needs the session.
NAMES = [n for n in generated.blocks() if n != "catalog"]


@pytest.mark.parametrize("name", NAMES)
def test_the_generated_block_is_fresh(name: str) -> None:
    _fresh(name)


@pytest.mark.spark
def test_the_catalog_block_is_fresh(spark: object) -> None:  # the session the block's derivation reuses
    _fresh("catalog")


def _fresh(name: str) -> None:
    where = generated.TARGETS[name].relative_to(generated.ROOT)
    assert generated.fresh(name), f"{where} block {name!r} is stale: run `make docs`"


def test_every_marked_block_is_generated_in_its_file() -> None:
    """Each block is marked in the file TARGETS names for it, and no documentation file marks one it does not."""
    assert set(generated.TARGETS) == set(generated.blocks())
    docs = [generated.README, *sorted((generated.ROOT / "docs").rglob("*.md"))]
    found = {path: generated.marked(path) for path in docs}
    expected = {path: {n for n, t in generated.TARGETS.items() if t == path} for path in docs}
    assert found == expected
