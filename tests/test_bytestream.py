"""The byte side of reading a file (bytestream.py): every shape (compact, pretty, BOM, CRLF, blank lines, gzip), the
size limits, UTF-8, JSON syntax, truncated and damaged gzip, bounded memory; through FileSplitter as the executors
run it, and `read_values` alone (no FHIR rules).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from parse_cases import (
    BYTE_FAULTS,
    LIMITS,
    check_bounded,
    compact,
    encounter,
    ndjson,
    outline,
    split,
)

from streaming.config import FhirConfig
from streaming.fhir import reasons
from streaming.fhir.bytestream import UTF8_BOM, Rejected, Value, read_values
from streaming.fhir.parse import FileSplitter

# -- single resources --------------------------------------------------------------------------------------------
SINGLE = encounter("enc-1", subject={"reference": "Patient/p1"})
SINGLE_SHAPES: dict[str, tuple[bytes, str]] = {
    "compact": (compact(SINGLE).encode(), "line 1"),  # one-line NDJSON, as docs/design.md says
    "compact-no-newline-bom": (UTF8_BOM + compact(SINGLE).encode(), "line 1"),
    "compact-bom-newline": (UTF8_BOM + compact(SINGLE).encode() + b"\r\n", "line 1"),
    "pretty": (json.dumps(SINGLE, indent=2).encode(), "file"),
    "pretty-bom-crlf": (UTF8_BOM + json.dumps(SINGLE, indent=4).replace("\n", "\r\n").encode(), "file"),
    "pretty-leading-blank-lines": (b"\n\n  \n" + json.dumps(SINGLE, indent=1).encode() + b"\n\n", "file"),
    "pretty-first-line-has-key": (b'{"resourceType": "Encounter",\n' + compact(SINGLE)[1:].encode(), "file"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("shape", sorted(SINGLE_SHAPES))
def test_single_resource_shapes(shape: str, gz: bool) -> None:
    data, position = SINGLE_SHAPES[shape]
    recs = split(gzip.compress(data) if gz else data)
    assert outline(recs) == [("resource", position, "enc-1")]
    assert json.loads(recs[0].resource_json) == SINGLE
    assert recs[0].ref_map == {} and recs[0].ref_names == {}  # no Bundle: nothing to resolve


def test_ndjson_with_blank_lines_crlf_and_other_types() -> None:
    lines = [
        compact(encounter("a")),
        "",
        compact(encounter("b")) + "\r",
        "   \t",
        compact({"resourceType": "Patient", "id": "p1"}),
        compact(encounter("c")),
    ]
    data = ("\n".join(lines) + "\r\n").encode()
    expected = [
        ("resource", "line 1", "a"),
        ("resource", "line 3", "b"),
        ("skipped", "line 5", "Patient"),
        ("resource", "line 6", "c"),
    ]
    assert outline(split(data)) == expected
    assert outline(split(gzip.compress(data))) == expected
    assert outline(split(UTF8_BOM + data)) == expected
    # The NDJSON line is kept exactly as sent (no re-serialisation).
    assert split(data)[1].resource_json == compact(encounter("b"))


def _small_truncated_gzip() -> tuple[bytes, int]:
    """A gzip far smaller than one read buffer, cut in half; returns it and how many whole lines it still holds."""
    lines = [encounter(f"gz-{i}", text=hashlib.sha512(b"%d" % i).hexdigest()) for i in range(20)]
    whole = gzip.compress(ndjson(*lines))
    cut = whole[: len(whole) // 2]
    return cut, zlib.decompressobj(31).decompress(cut).count(b"\n")


def test_small_truncated_gzip_keeps_every_whole_line() -> None:
    data, whole_lines = _small_truncated_gzip()
    assert 2 < whole_lines < 20 and len(data) < 8192
    assert outline(split(data)) == [
        *[("resource", f"line {i + 1}", f"gz-{i}") for i in range(whole_lines)],
        ("quarantine", "file", reasons.TRUNCATED),
    ]


@pytest.mark.parametrize("name", sorted(BYTE_FAULTS))
def test_quarantine_classes(name: str) -> None:
    data, overrides, expected = BYTE_FAULTS[name]
    limits = FhirConfig(**{**LIMITS.__dict__, **overrides})
    recs = split(data, limits)
    if expected is not None:
        assert outline(recs) == expected
    else:  # reading stopped part-way: the records before that point stay, one file-level record says why
        *good, last = outline(recs)
        prefix = "gz-" if name == "truncated-gz" else "bomb-"
        assert 0 < len(good) < (2000 if name == "truncated-gz" else 50)
        assert good == [("resource", f"line {i + 1}", f"{prefix}{i}") for i in range(len(good))]
        assert last == ("quarantine", "file", reasons.TRUNCATED if name == "truncated-gz" else reasons.FILE_TOO_LARGE)
    check_bounded(recs, limits)


def test_file_over_the_limit_without_a_known_size_is_caught_while_reading() -> None:
    data = ndjson(*[encounter(f"s-{i}") for i in range(20)])
    recs = split(data, FhirConfig(max_file_bytes=len(data) - 1), size=None)
    assert outline(recs)[-1] == ("quarantine", "file", reasons.FILE_TOO_LARGE)
    assert outline(split(data, FhirConfig(max_file_bytes=len(data)), size=None))[-1] == ("resource", "line 20", "s-19")


# -- read_values alone: JSON values and their text, no FHIR rules -------------------------------------------------
def test_ndjson_lines_become_values_with_their_own_text() -> None:
    """Any JSON value is a Value here (what it means is parse.py's business); a bad line is Rejected with its text."""
    lines = [b'{"a": 1}', b"", b"  [1, 2]\r", b'{"resourceType": "Bundle"}', b'{"x": "\xff"}', b'{"broken": ']
    data = UTF8_BOM + b"\n".join(lines)
    assert list(read_values(io.BytesIO(data), LIMITS)) == [
        Value("line 1", {"a": 1}, '{"a": 1}'),
        Value("line 3", [1, 2], "[1, 2]"),
        Value("line 4", {"resourceType": "Bundle"}, '{"resourceType": "Bundle"}'),
        Rejected("line 5", reasons.INVALID_UTF8, "invalid UTF-8 at byte 7", b'{"x": "\xff"}\n'),
        Rejected("line 6", reasons.TRUNCATED, "Expecting value at column 11", '{"broken":'),
    ]


def test_a_document_is_one_value_with_the_whole_text_also_gzipped() -> None:
    text = '[\n  {"x": 1},\n\n  "y"\n]\n'
    for data in (text.encode(), gzip.compress(UTF8_BOM + text.encode())):
        assert list(read_values(io.BytesIO(data), LIMITS)) == [Value("file", [{"x": 1}, "y"], text)]
    assert list(read_values(io.BytesIO(b"\n \n"), LIMITS)) == [
        Rejected("file", reasons.EMPTY_FILE, "file holds no JSON")
    ]
    assert list(read_values(io.BytesIO(text.encode()), LIMITS, size=LIMITS.max_file_bytes + 1)) == [
        Rejected(
            "file", reasons.FILE_TOO_LARGE, f"file is {LIMITS.max_file_bytes + 1} bytes, limit {LIMITS.max_file_bytes}"
        )
    ]


# -- bounded memory ------------------------------------------------------------------------------------------------
class GeneratedStream(io.RawIOBase):
    """A read-only stream whose bytes come from a generator: nothing is held beyond the current chunk."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self.consumed = 0
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            nxt = next(self._chunks, None)
            if nxt is None:
                self.exhausted = True
                return 0
            self._pending = nxt
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.consumed += n
        return n


LINES = 200_000


def ndjson_chunks(lines: int) -> Iterator[bytes]:
    batch: list[bytes] = []
    for i in range(lines):
        batch.append(b'{"resourceType":"Encounter","id":"m-%d","status":"finished"}\n' % i)
        if len(batch) == 100:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)


def gzip_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_ndjson_is_split_lazily_with_bounded_memory(gz: bool) -> None:
    stream = GeneratedStream(gzip_chunks(ndjson_chunks(LINES)) if gz else ndjson_chunks(LINES))
    total = LINES * 56  # bytes of the whole (uncompressed) file, never materialised
    records_iter = FileSplitter(FhirConfig()).split(stream, size=None)

    first = list(itertools.islice(records_iter, 5))
    assert outline(first) == [("resource", f"line {i + 1}", f"m-{i}") for i in range(5)]
    assert not stream.exhausted
    assert stream.consumed <= 256 * 1024 < total // 20  # a small prefix: the read buffers, not the file

    count, last_id = 5, None
    for rec in records_iter:  # the rest, one at a time (never a list)
        count += 1
        last_id = rec.resource_id
    assert (count, last_id) == (LINES, f"m-{LINES - 1}")
    assert stream.exhausted
