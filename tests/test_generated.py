"""Every block of README.md made from the code is what the code makes now (`make docs` rewrites them)."""

from __future__ import annotations

import pytest

from streaming import generated

# The catalog's table definitions are derived from Spark schemas: that one block needs a JVM.
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n == "catalog" else n for n in generated.blocks()]


@pytest.mark.parametrize("name", NAMES)
def test_the_generated_block_is_fresh(name: str, request: pytest.FixtureRequest) -> None:
    if name == "catalog":
        request.getfixturevalue("spark")  # the session the block's derivation reuses
    assert generated.fresh(name), f"README block {name!r} is stale: run `make docs`"


def test_every_marked_block_is_generated() -> None:
    text = generated.README.read_text()
    marked = {line.split(":start")[0].removeprefix("<!-- ") for line in text.splitlines() if ":start (" in line}
    assert marked == set(generated.blocks())
