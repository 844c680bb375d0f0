"""Whole processes under measurement: wall time, CPU time of the process tree, timestamped output, driver memory.

Every contender runs as its own process so JVM start-up counts the same for all. On a shared 2-core machine wall
time depends on the neighbours; the CPU seconds of the process tree (JVM, Python driver, Python workers) much
less, so both are kept.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
# The job's per-batch log line (streaming/pipeline/batch.py): ids, counts and the step timings, never content.
_BATCH_LOG = re.compile(r"batch (\d+) \(([^)]*)\): files=(\d+) .*? seconds=(\{[^}]*\})")


class ProcessFailed(RuntimeError):
    """A benchmarked process exited non-zero; the message names it and ends with its stderr's last lines."""


class EventMissing(LookupError):
    """A benchmarked process exited without printing a JSON line the benchmark reads."""


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (the JVM, pyspark's daemon and workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            with contextlib.suppress(OSError):  # the task ended meanwhile
                todo += [int(c) for c in Path(f"/proc/{current}/task/{tid}/children").read_text().split()]
    return found


def _stat(pid: int) -> tuple[str, float, int] | None:
    """(command name, own CPU seconds, RSS bytes) of one process, None once it is gone.

    Children are sampled on their own, so their CPU is not taken again from the parent's cutime/cstime.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
    return name, cpu, int(fields[21]) * _PAGE


def java_pid(root: int) -> int | None:
    """The JVM started below `root` (pyspark launches it through spark-submit), if running."""
    for pid in descendants(root):
        stat = _stat(pid)
        if stat and stat[0] == "java":
            return pid
    return None


def heap_after_gc_mb(pid: int) -> float | None:
    """Live heap of a JVM: a full GC (`jcmd GC.run`), then the used heap `GC.heap_info` reports, in MiB."""
    try:
        subprocess.run(["jcmd", str(pid), "GC.run"], capture_output=True, timeout=60, check=True)
        info = subprocess.run(["jcmd", str(pid), "GC.heap_info"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"total \d+K, used (\d+)K", info)
    return int(match.group(1)) / 1024 if match else None


@dataclass
class Finished:
    """What a benchmarked process did."""

    argv: list[str]
    returncode: int
    started: float  # epoch seconds at spawn
    wall_seconds: float
    cpu_seconds: float
    stdout: list[tuple[float, str]]  # (epoch seconds when read, line)
    stderr: str
    memory: list[dict[str, float]] = field(default_factory=list)
    # (epoch seconds, CPU seconds of the tree so far): sampled every 0.5 s and as each JSON line on stdout is read.
    cpu_timeline: list[tuple[float, float]] = field(default_factory=list)

    def events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        """The JSON lines on stdout whose `event` is `name`, with the time each was read."""
        found = []
        for at, line in self.stdout:
            if line.startswith("{"):
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                if data.get("event") == name:
                    found.append((at, data))
        return found

    def last(self, name: str, **fields: Any) -> tuple[float, dict[str, Any]]:
        """The last JSON line `name` whose fields equal `fields`, with the time it was read."""
        found = [(at, e) for at, e in self.events(name) if all(e.get(k) == v for k, v in fields.items())]
        if not found:
            raise EventMissing(f"{' '.join(self.argv[:4])}... printed no {name!r} line with {fields}")
        return found[-1]

    def cpu_at(self, at: float) -> float:
        """CPU seconds of the process tree when it reached `at` (an event's time): the last sample at or before it."""
        return max((cpu for when, cpu in self.cpu_timeline if when <= at), default=0.0)

    def batch_steps(self) -> dict[int, dict[str, float]]:
        """Step timings of each batch the job logged (`seconds={...}`), by batch id."""
        return {int(m.group(1)): ast.literal_eval(m.group(4)) for m in _BATCH_LOG.finditer(self.stderr)}


class Watched:
    """A running process: stdout read line by line with timestamps, CPU of its tree sampled, memory on demand."""

    def __init__(self, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.argv = list(argv)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = log.open("w")
        self.started = time.time()
        self._began = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.stdout: list[tuple[float, str]] = []
        self.memory: list[dict[str, float]] = []
        self._cpu: dict[int, float] = {}
        self._cpu_lock = threading.Lock()
        self.cpu_timeline: list[tuple[float, float]] = []
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._reader.start()
        self._sampler.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            at = time.time()
            if line.startswith("{"):  # an event: the CPU spent up to it, so a figure can stop where its work did
                self._sample_cpu(at)
            self.stdout.append((at, line.rstrip("\n")))

    def _sample_cpu(self, at: float | None = None) -> None:
        # CPU seconds per pid, last value seen: pyspark's workers live as long as the JVM, so little is lost.
        with self._cpu_lock:
            at = time.time() if at is None else at  # taken under the lock: a later sample never bears an earlier time
            for pid in descendants(self.proc.pid):
                stat = _stat(pid)
                if stat:
                    self._cpu[pid] = max(self._cpu.get(pid, 0.0), stat[1])
            self.cpu_timeline.append((at, sum(self._cpu.values())))

    def _sample(self) -> None:
        while not self._done.is_set():
            self._sample_cpu()
            self._done.wait(0.5)

    def lines_seen(self, event: str) -> list[dict[str, Any]]:
        """JSON lines with this `event` printed so far."""
        found = []
        for _, line in list(self.stdout):
            if line.startswith("{") and f'"{event}"' in line:
                data = json.loads(line)
                if data.get("event") == event:
                    found.append(data)
        return found

    def sample_memory(self) -> dict[str, float] | None:
        """One memory sample of the driver: JVM live heap after a full GC, JVM RSS, Python driver RSS (MiB)."""
        jvm = java_pid(self.proc.pid)
        if jvm is None:
            return None
        heap = heap_after_gc_mb(jvm)
        jvm_stat, py_stat = _stat(jvm), _stat(self.proc.pid)
        if heap is None or jvm_stat is None or py_stat is None:
            return None
        sample = {
            "t": round(time.monotonic() - self._began, 1),
            "heap_after_gc_mb": round(heap, 1),
            "jvm_rss_mb": round(jvm_stat[2] / 2**20, 1),
            "python_rss_mb": round(py_stat[2] / 2**20, 1),
        }
        self.memory.append(sample)
        return sample

    def running(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM: the job finishes its current batch and exits 0."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None, *, check: bool = True) -> Finished:
        """Wait for the exit (killed after `timeout`); raise ProcessFailed on a non-zero exit when `check`."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        wall = time.monotonic() - self._began
        self._done.set()
        self._reader.join(10)
        self._sampler.join(10)
        self._stderr.close()
        stderr = self.log.read_text(errors="replace")
        if check and code != 0:
            tail = "\n".join(stderr.splitlines()[-15:])
            raise ProcessFailed(f"{' '.join(self.argv[:4])}... exited {code} (log {self.log}):\n{tail}")
        return Finished(
            self.argv,
            code,
            self.started,
            wall,
            round(sum(self._cpu.values()), 2),
            self.stdout,
            stderr,
            self.memory,
            sorted(self.cpu_timeline),
        )


def run(argv: Sequence[str], *, log: Path, timeout: float | None = None, env: dict[str, str] | None = None) -> Finished:
    """Run a process to its end under measurement."""
    return Watched(argv, log=log, env=env).wait(timeout)


def python(*args: str) -> list[str]:
    """argv of a module run by this interpreter (the venv's)."""
    return [sys.executable, *args]


def job(*args: str) -> list[str]:
    """argv of the job's own command (`bronze-encounter`), as a user runs it."""
    script = Path(sys.executable).with_name("bronze-encounter")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "streaming.cli", *args]
