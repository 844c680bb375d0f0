"""The input a scenario lands: generated files plus newer versions, late older versions and bad records."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streaming.generate import generate

from .expected import Expected, expected


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_atomically(path: Path, text: str) -> Path:
    """Write beside the target under a hidden name, then rename: the file source never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


class Landing:
    """The landing folder the job reads; every file the test lands goes through here (deterministic content)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []

    def generated(self, wave: str, *, files: int, per_file: int, seed: int) -> list[Path]:
        """Synthetic Encounters from streaming.generate (every 4th file a single pretty .json)."""
        out = generate(self.root / wave, files=files, per_file=per_file, seed=seed)
        self.files += out.files
        return list(out.files)

    def move_in(self, staged: Iterable[Path], wave: str) -> list[Path]:
        """Land files prepared outside the landing folder (a rename: the file source sees each file whole)."""
        (self.root / wave).mkdir(parents=True, exist_ok=True)
        moved = []
        for path in staged:
            target = self.root / wave / path.name
            os.replace(path, target)
            moved.append(target)
        self.files += moved
        return moved

    def adopt(self, staged: Landing, wave: str) -> list[Path]:
        """Land a wave another Landing wrote elsewhere with one folder rename: the job sees all of it or none."""
        source = staged.root / wave
        os.replace(source, self.root / wave)
        moved = [self.root / wave / p.relative_to(source) for p in staged.files if p.is_relative_to(source)]
        self.files += moved
        return moved

    def encounters(self, paths: Iterable[Path]) -> list[dict[str, Any]]:
        """The valid Encounters of some landed files, parsed (to derive versions of them)."""
        found = []
        for path in paths:
            text = path.read_text(encoding="utf-8")
            for doc in text.splitlines() if path.suffix == ".ndjson" else [text]:
                with contextlib.suppress(json.JSONDecodeError):
                    found.append(json.loads(doc))
        return [e for e in found if isinstance(e, dict) and e.get("resourceType") == "Encounter" and e.get("id")]

    def ndjson(self, rel: str, lines: Sequence[str]) -> Path:
        path = _write_atomically(self.root / rel, "".join(f"{line}\n" for line in lines))
        self.files.append(path)
        return path

    def versions(self, rel: str, base: Sequence[dict[str, Any]], *, shift: timedelta, status: str) -> Path:
        """One NDJSON file re-sending `base` encounters with meta.lastUpdated moved by `shift` (may be negative).

        Every other one also moves to another hospital, so a newer version changes its partition and a late
        older one would (wrongly) move it back.
        """
        lines = []
        for i, enc in enumerate(base):
            v = json.loads(json.dumps(enc))
            v["meta"] = {"lastUpdated": _iso(datetime.fromisoformat(enc["meta"]["lastUpdated"]) + shift)}
            v["status"] = status
            if i % 2:
                name = f"Fault Harness Hospital {'B' if shift > timedelta(0) else 'A'}"
                v["serviceProvider"] = {"reference": f"Organization/fault-{name[-1].lower()}", "display": name}
            lines.append(json.dumps(v, separators=(",", ":")))
        return self.ndjson(rel, lines)

    def bad_lines(self, rel: str, good: dict[str, Any]) -> Path:
        """NDJSON: a valid Encounter (a new id), then a line that is not JSON, then an Encounter without id."""
        fresh = json.loads(json.dumps(good))
        fresh["id"] = f"fault-{Path(rel).stem}"
        no_id = json.loads(json.dumps(good))
        del no_id["id"]
        broken = json.dumps(good, separators=(",", ":"))[:40]  # cut inside the object: not JSON
        return self.ndjson(
            rel,
            [json.dumps(fresh, separators=(",", ":")), broken, json.dumps(no_id, separators=(",", ":"))],
        )

    def deletes(self, rel: str, ids: Sequence[str], *, at: datetime) -> Path:
        """A transaction Bundle deleting the Encounters `ids`, timestamped `at` (its DELETEs' event time)."""
        entries = [{"request": {"method": "DELETE", "url": f"Encounter/{i}"}} for i in ids]
        bundle = {"resourceType": "Bundle", "type": "transaction", "timestamp": _iso(at), "entry": entries}
        path = _write_atomically(self.root / rel, json.dumps(bundle, indent=2))
        self.files.append(path)
        return path

    def bad_file(self, rel: str) -> Path:
        """A whole file that is not JSON at all: one quarantine row at position `file`."""
        path = _write_atomically(self.root / rel, "this is not FHIR, not even JSON\n")
        self.files.append(path)
        return path

    def expected(self) -> Expected:
        """What the tables must hold once every file landed so far is ingested exactly once."""
        return expected(self.files)
