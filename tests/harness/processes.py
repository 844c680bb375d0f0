"""The real job as a separate process: start it, kill, freeze or resume its whole process group, read its output."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
KILLED = -signal.SIGKILL  # Popen.returncode of a process that died of SIGKILL
EXIT_LEASE = 3  # the CLI's exit code when another instance holds (or took over) the writer lease

# Settings every harness run uses: a dead holder's lease expires in 4 s and a restart waits up to 10 s for it.
RESTART_SETTINGS: dict[str, str] = {"lease_ttl_seconds": "4", "lease_wait_seconds": "10"}
CONTINUOUS_SETTINGS: dict[str, str] = {"trigger_interval": "1 second", "max_files_per_trigger": "5"}


def wait_until(
    what: str, check: Callable[[], Any], timeout: float, *, every: float = 0.25, detail: Callable[[], str] | None = None
) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` (plus `detail()`) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(every)


@dataclass
class JobProcess:
    """One started job process (leader of its own process group) and where its output goes."""

    label: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        """Everything the job wrote to stderr (its Python log lines and Spark's warnings), for failure messages."""
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def out(self) -> str:
        return self.stdout.read_text(errors="replace") if self.stdout.exists() else ""

    def batch_lines(self) -> list[dict[str, Any]]:
        """The JSON object the CLI prints per finished micro-batch (stdout is a file here): ids and counts only.

        A killed process may leave half a line at the end; it is skipped.
        """
        lines = []
        for line in self.out().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(line) if line.startswith("{") else None
                if isinstance(value, dict) and value.get("event") == "batch":
                    lines.append(value)
        return lines

    def tail(self, chars: int = 2500) -> str:
        """Last lines of stdout and stderr, for assertion messages (job logs hold counts and keys, no records)."""
        lines = [line for line in self.log().splitlines() if not line.lstrip().startswith("at ")]  # JVM frames
        err = "\n".join(lines)[-chars:]
        return (
            f"--- {self.label} (pid {self.pid}, rc {self.returncode}) stdout:\n{self.out()[-800:]}\n--- stderr:\n{err}"
        )

    def wait(self, timeout: float) -> int:
        """Wait for the process to end; on timeout kill its group and fail with the output tails."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.label}: still running after {timeout:.0f}s\n{self.tail()}") from None
        self.reap_group()
        return code

    def kill(self) -> int:
        """SIGKILL the whole process group (driver, JVM, Python workers) at once: a crash, no cleanup."""
        self.reap_group()
        return self.popen.wait(30)

    def frozen(self) -> bool:
        """The driver is stopped (state T), as after SIGSTOP."""
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"
        except OSError:
            return False

    def resume(self) -> None:
        """SIGCONT the whole process group."""
        os.killpg(self.pid, signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM the driver only: the job stops after its current batch and exits 0."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def reap_group(self) -> None:
        """Remove whatever is left of the group (the JVM outlives a driver that killed itself by a moment)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class Job:
    """Starts the real job (`python -m streaming.cli run`) for one landing folder and warehouse.

    Every process it started is SIGKILLed by `close()` (use it as a context manager), so a failing test leaves
    no job running.
    """

    def __init__(
        self,
        workdir: Path,
        source: Path,
        warehouse: Path,
        *,
        settings: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir, self.source, self.warehouse = workdir, source, warehouse
        self.settings = {**RESTART_SETTINGS, **(settings or {})}
        self.args = list(args)
        self.env = dict(env or {})
        self.processes: list[JobProcess] = []
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self, *, once: bool, settings: Mapping[str, str] | None = None) -> list[str]:
        # The real CLI, with the kill points as its batch hook (production passes none).
        cmd = [
            sys.executable,
            str(Path(__file__).resolve().parent / "fault_job.py"),
            "run",
            "--source",
            str(self.source),
        ]
        cmd += ["--warehouse", str(self.warehouse), *self.args]
        for key, value in {**self.settings, **(settings or {})}.items():
            cmd += ["--set", f"{key}={value}"]
        return [*cmd, "--once"] if once else cmd

    def start(
        self,
        label: str,
        *,
        once: bool,
        kill_at: str | None = None,
        kill_flag: Path | None = None,
        freeze: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> JobProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRONZE_KILL_")}
        env.update(self.env)
        if kill_at:
            env["BRONZE_KILL_AT"] = kill_at
        if freeze:  # at kill_at the process group stops itself (SIGSTOP) instead of dying
            env["BRONZE_KILL_SIGNAL"] = "STOP"
        if kill_flag:
            env["BRONZE_KILL_FLAG"] = str(kill_flag)
        n = len(self.processes)
        out, err = self.logs / f"{n:02d}-{label}.out", self.logs / f"{n:02d}-{label}.err"
        with out.open("wb") as fout, err.open("wb") as ferr:
            popen = subprocess.Popen(
                self.command(once=once, settings=settings),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fout,
                stderr=ferr,
                start_new_session=True,  # own process group: kill() takes the JVM and the workers with it
            )
        proc = JobProcess(label, popen, out, err)
        self.processes.append(proc)
        return proc

    def run(self, label: str, *, once: bool = True, timeout: float = 420, **kwargs: Any) -> JobProcess:
        """Start and wait; the caller asserts on the return code (include `proc.tail()` in the message)."""
        proc = self.start(label, once=once, **kwargs)
        proc.wait(timeout)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            proc.reap_group()
            if proc.popen.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(30)


@dataclass
class Stopwatch:
    """Named durations of a scenario, for the report (printed; pytest shows them with -s or on failure)."""

    started: float = field(default_factory=time.monotonic)
    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, name: str) -> None:
        self.marks.append((name, time.monotonic() - self.started))
        print(f"[{self.marks[-1][1]:7.1f}s] {name}", flush=True)

    def __str__(self) -> str:
        return ", ".join(f"{n}@{t:.0f}s" for n, t in self.marks)
