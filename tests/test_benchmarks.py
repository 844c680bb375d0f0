"""The benchmark suite's smoke run (`--quick`): every scenario makes every figure it promises; no time asserted."""

from __future__ import annotations

import json
import math
import re
import shlex
import statistics
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks import peers, procs, run
from benchmarks.scenarios import SCENARIOS, Bench, Sizes, common
from benchmarks.scenarios.common import CommitWatch, goal, land_to_visible, layout
from benchmarks.scenarios.listing import deploy_files_per_trigger
from benchmarks.scenarios.soak import _growth
from benchmarks.scenarios.upsert import GOAL_VARIANTS, VARIANTS, Variant, _updates
from benchmarks.scenarios.views import costs, land_parts
from benchmarks.shared_data import BULK
from streaming import config as conf
from streaming.generate import generate
from streaming.lakehouse import jars
from streaming.viewdef.shipped import SHIPPED_VIEWS


def encounters(files: int, per_file: int) -> int:
    """What streaming/generate.py writes: every 4th file holds one pretty resource, the others `per_file` lines."""
    return (files - files // 4) * per_file + files // 4


def positive(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values)


@pytest.mark.bench  # not in `make test`: `make bench-smoke` (CI runs both)
@pytest.mark.job
def test_quick_run_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results"
    # Every scenario at once (a quick run also starts a scenario's independent processes together): the cores stay
    # busy while a scenario waits for arrivals or triggers. No time is asserted.
    code = run.main(
        ["--quick", "--parallel", str(len(SCENARIOS)), "--out", str(out), "--workdir", str(tmp_path / "work")]
    )
    results = json.loads((out / "results.json").read_text())
    assert {name: s.get("error") for name, s in results["scenarios"].items() if "error" in s} == {}
    assert code == 0
    check_figures(results, out)


def check_figures(results: dict[str, Any], out: Path) -> None:
    """Every figure each scenario promises is there, counts equal what was generated, files were written."""
    scenarios = results["scenarios"]
    sizes = Sizes.quick()
    _check_machine(results["machine"])
    _check_backfill(scenarios["backfill"], sizes)
    _check_latency(scenarios["latency"], sizes)
    _check_upsert(scenarios["upsert"], sizes)
    _check_listing(scenarios["listing"], sizes)
    _check_soak(scenarios["soak"], sizes)
    assert scenarios["split"]["records"] == scenarios["split"]["baseline_records"] > 0
    _check_source_log(scenarios["sourcelog"], sizes)
    _check_read(scenarios["read"], sizes)
    _check_views(scenarios["views"], sizes)
    _check_goals(scenarios)
    _check_outputs(out)


def _check_machine(machine: dict[str, Any]) -> None:
    """The machine the run describes: cores, memory, CPU model, the versions measured."""
    assert positive(machine["cores"], machine["memory_gb"]) and machine["cpu_model"]
    assert {"pyspark", "java", "hudi-spark3.5-bundle_2.12", "delta", "iceberg"} <= set(machine["versions"])


def _check_backfill(backfill: dict[str, Any], sizes: Sizes) -> None:
    """Ours and every peer with both mappings, each counting every generated encounter."""
    expected = encounters(sizes.backfill_files, sizes.backfill_per_file)
    assert backfill["input"]["encounters"] == expected
    # Every peer with both mappings; rejects are counted by the job's (none here: the generated files are valid).
    assert set(backfill["peers"]) == set(backfill["mappings"]) == set(peers.MAPPINGS)
    ours = backfill["ours"]
    contenders = {("ours", "-"): ours}
    for mapping, found in backfill["peers"].items():
        assert set(found) == set(peers.CONTENDERS), mapping
        contenders |= {(kind, mapping): c for kind, c in found.items()}
        assert all(c["rejected"] == (0 if mapping == "job" else None) for c in found.values()), mapping
    for name, c in contenders.items():
        assert (c["rows"], c["keys"]) == (expected, expected), name
        assert c["batches"] >= 1 and c["codec"], name
        # CPU to the contender's last write, and the whole process's beside it (the counts after it included).
        assert positive(c["seconds"], c["process_seconds"], c["cpu_seconds"], c["process_cpu_seconds"]), name
        assert c["cpu_seconds"] <= c["process_cpu_seconds"], name
    assert ours["rejected"] == 0
    assert positive(ours["steps"]["read"], ours["steps"]["bronze"])
    assert ours["steps"]["ingest_log"] >= 0  # a backfill's one batch leaves its log row to the job's stop
    every_peer = {m: {f"vs_{kind}" for kind in peers.CONTENDERS} for m in peers.MAPPINGS}
    for ratios in (backfill["throughput_ratio"], backfill["cpu_ratio"]):  # both comparisons, side by side
        assert {m: set(r) for m, r in ratios.items()} == every_peer
        assert all(positive(*r.values()) for r in ratios.values())


def _check_latency(latency: dict[str, Any], sizes: Sizes) -> None:
    """One run per trigger interval, every landed file visible."""
    landed = round(sizes.latency_seconds * sizes.arrival_per_second)
    runs = latency["runs"]
    assert set(runs) == {f"trigger_{t}s" for t in sizes.latency_triggers}
    for name, r in runs.items():
        assert r["files_landed"] == r["files_visible"] == len(r["latencies"]) == landed, name
        assert r["valid"] is True, name
        assert r["rows"] == r["keys"] == encounters(landed + 1, sizes.arrival_per_file), name  # + the warm-up file
        assert positive(r["latency_p50_seconds"], r["latency_p95_seconds"], r["latency_max_seconds"]), name
        assert r["batches"] and all(positive(b["seconds"], b["steps"]["bronze"]) for b in r["batches"]), name


def _check_upsert(upsert: dict[str, Any], sizes: Sizes) -> None:
    """One table per size, rows moved not kept twice."""
    assert set(upsert["tables"]) == {str(n) for n in sizes.upsert_tables}
    for name, t in upsert["tables"].items():
        assert t["table_rows"] >= int(name)
        assert t["rows_after"] == t["keys_after"] == t["table_rows"], name  # moved rows are not kept twice
        assert t["per_hospital_matches"], name
        # Every variant, each its number of batches, each batch of its size; the warm-up apart.
        variants = [v.name for v in VARIANTS]
        assert upsert["variants"] == variants
        assert Counter(b["variant"] for b in t["batches"]) == dict.fromkeys(variants, sizes.upsert_batches), name
        assert [b["rows"] for b in t["batches"]] == [sizes.upsert_batch] * len(t["batches"]), name
        assert t["warmup_batch"]["rows"] == sizes.upsert_batch, name
        assert set(t["bronze_seconds_p50_by_variant"]) == set(variants), name
        assert positive(t["bronze_seconds_p50"], *t["bronze_seconds_p50_by_variant"].values()), name
        assert t["hudi_phases"], name
    assert positive(upsert["large_vs_small"], *upsert["large_vs_small_by_variant"].values())
    assert len(upsert["goals"]) == len(GOAL_VARIANTS)


def _check_listing(listing: dict[str, Any], sizes: Sizes) -> None:
    """Every prefix size with the archive, the largest again without it."""
    most = max(sizes.listing_files)
    # Every size with the deploy's settings (the archive), the largest again without it.
    assert set(listing["prefixes"]) == {f"{n}+archive" for n in sizes.listing_files} | {str(most)}
    assert listing["baseline"] == f"{min(sizes.listing_files)}+archive"
    assert listing["max_files_per_trigger"] == deploy_files_per_trigger()
    for name, p in listing["prefixes"].items():
        assert p["files"] == int(name.removesuffix("+archive"))
        assert p["archive"] == name.endswith("+archive")
        assert p["max_files_per_trigger"] == listing["max_files_per_trigger"], name
        assert p["new_files"] == sizes.listing_triggers + 1, name
        # The archived prefix had one more file, whose batch made Spark archive the ingested ones.
        assert p["rows"] == p["files"] + p["new_files"] + p["archive"], name
        assert p["triggers"] == len(p["overheads"]) == sizes.listing_triggers, name
        assert positive(p["restart_seconds"], p["restart_before_batch_seconds"], p["first_batch_seconds"]), name
        assert positive(p["overhead_seconds_p50"], p["overhead_seconds_mean"], p["overhead_seconds_max"]), name
        assert positive(p["listing_seconds_p50"]), name
        if p["archive"]:  # only the newest batches' files are still there
            assert p["files_left_in_prefix"] <= 2, name
        else:
            assert p["files_left_in_prefix"] == p["files"] + p["new_files"], name
    added = [
        "added_seconds_per_trigger",
        "added_seconds_per_trigger_mean",
        "added_restart_seconds",
        "added_restart_before_batch_seconds",
        "added_seconds_per_trigger_no_archive",
        "added_restart_seconds_no_archive",
    ]
    assert all(isinstance(listing[figure], float) for figure in added), listing


def _check_soak(soak: dict[str, Any], sizes: Sizes) -> None:
    """The soak's seeded table, files, rows, memory samples, layout and slowest batches."""
    soaked = round(sizes.soak_seconds * sizes.arrival_per_second)
    assert soak["files_landed"] == soak["files_visible"] == soaked
    seeded = soak["seeded"]["rows"]
    assert seeded >= sizes.soak_seed_rows
    assert positive(soak["seeded"]["seed_seconds"]) and soak["seeded"]["generate_seconds"] >= 0
    assert soak["rows"] == soak["keys"] == seeded + encounters(soaked + 1, sizes.arrival_per_file)
    slowest = soak["slowest_batches"]
    assert slowest and slowest == sorted(soak["batches"], key=lambda b: -b["seconds"])[: len(slowest)]
    assert soak["slowest_batch_ratio"] == round(slowest[0]["seconds"] / soak["batch_seconds_p50"], 2)
    services = [s for b in soak["batches"] for s in b["services"]]
    assert soak["services_run"] == {name: services.count(name) for name in set(services)}
    assert isinstance(soak["metadata_compactions"], int)
    assert len(soak["memory"]) >= 2
    assert all(positive(m["heap_after_gc_mb"], m["jvm_rss_mb"], m["python_rss_mb"]) for m in soak["memory"])
    assert positive(soak["layout"]["files_per_partition_avg"], soak["layout"]["avg_file_mb"])
    assert soak["heap_growth"] is not None and soak["heap_growth_median"] is not None and soak["layouts"]


def _check_source_log(source_log: dict[str, Any], sizes: Sizes) -> None:
    """The source log's compaction batch read whole and by range."""
    assert source_log["entries_logged"] == sizes.sourcelog_entries
    # The compaction batch's own files only, whichever way it was read.
    assert source_log["batch_entries"] == source_log["whole_history_entries"] > 0
    assert positive(source_log["whole_history_seconds"], source_log["range_seconds"])


def _check_read(read: dict[str, Any], sizes: Sizes) -> None:
    """The read step profile over the backfill's files."""
    expected = encounters(sizes.backfill_files, sizes.backfill_per_file)
    assert (read["files"], read["records"]) == (sizes.backfill_files, expected)  # the backfill's files, all read
    assert positive(read["read_cold_seconds"], read["read_warm_seconds"], read["split_seconds"])
    assert positive(read["records_scan_seconds"], read["from_json_seconds"], read["flatten_and_cache_seconds"])
    steps = read["flatten_steps"]
    assert len(steps) > 1 and [st["step"] for st in steps] == list(range(1, len(steps) + 1))  # each projection
    assert positive(*(st["seconds"] for st in steps))


def _check_views(views: dict[str, Any], sizes: Sizes) -> None:
    """Every shipped view besides encounter, each table holding one row per resource of its type in the export."""
    resources: Counter[str] = Counter()
    for path in sorted(BULK.glob("*.ndjson")):
        for line in filter(str.strip, path.read_text(encoding="utf-8").splitlines()):
            resources[json.loads(line)["resourceType"]] += 1
    batches = sizes.views_batches
    files = len(list(BULK.glob("*.ndjson"))) * batches
    assert views["input"] == {"source": BULK.name, "files": files, "batches": batches, "repeat": 1}
    assert views["views"] == [v for v in SHIPPED_VIEWS if v != "encounter"]
    expected = {
        "patient": resources["Patient"],
        "practitioner": resources["Practitioner"],
        "practitioner_role": resources["PractitionerRole"],
        "organization": resources["Organization"],
        "location": resources["Location"],
        "condition": resources["Condition"],
        "encounter_reference": resources["Encounter"],  # one row per Encounter
    }
    assert views["view_rows"] == expected  # observation: the export has none, so no table
    assert views["views_writing"] == list(expected)
    assert views["encounters"] == [resources["Encounter"]] * 2  # encounter alone, then with every view
    assert len(views["encounter_only_batch_seconds"]) == len(views["all_views_batch_seconds"]) == batches
    assert positive(*views["encounter_only_batch_seconds"], *views["all_views_batch_seconds"])
    for view in views["views"]:
        steps, cost = views["view_step_seconds"][view], views["view_cost"][view]
        assert len(steps) == len(cost["shares"]) == batches, view
        assert (cost["median_share"] is None) == (view not in expected), view
        assert all(s > 0 for s in steps) if view in expected else steps == [0.0] * batches, view


def _check_goals(scenarios: dict[str, Any]) -> None:
    """The goals each scenario states, counted per scenario."""
    backfill = scenarios["backfill"]
    # Counted per scenario: a total hid query_scale's two goals (it said 9 while a run made 11).
    # backfill: three peers under each mapping, then the footer share and the one-row ingest-log file; latency:
    # p50, p95 and batch p50 at the fastest trigger.
    counts = {
        "backfill": 3 * len(peers.MAPPINGS) + 2,
        "latency": 3,
        "upsert": len(GOAL_VARIANTS),
        "listing": 2,
        "soak": 2,
        "query_scale": 2,
        "views": 2,
    }
    assert {name: len(s["goals"]) for name, s in scenarios.items() if s["goals"]} == counts
    latency = [g["goal"].split(" at trigger ")[0] for g in scenarios["latency"]["goals"]]
    assert latency == ["p50 land->visible", "p95 land->visible", "batch p50"]
    footprint_goals = [g["goal"] for g in backfill["goals"][-2:]]
    assert footprint_goals[0] == "bronze footer bytes / file bytes"
    assert footprint_goals[1].startswith("ingest-log file bytes (")
    goals = [g for s in scenarios.values() for g in s["goals"]]
    assert all(isinstance(g["met"], bool) and isinstance(g["valid"], bool) for g in goals)
    backfill_goals = [g["goal"] for g in backfill["goals"]]
    for text in backfill["mappings"].values():  # the three peers' goals under each mapping
        assert sum(text in name for name in backfill_goals) == len(peers.CONTENDERS), text


def _check_outputs(out: Path) -> None:
    """results.md with every section, and the plots as PNG files."""
    markdown = (out / "results.md").read_text()
    assert all(f"seconds, {m} | " in markdown and f"CPU, {m} |" in markdown for m in peers.MAPPINGS)
    for header in (
        "## Backfill",
        "## Small-batch latency",
        "## Upsert scaling",
        "## Listing scaling",
        "## Soak",
        "## Read step profile",
        "## Goals",
    ):
        assert header in markdown
    for png in ("latency.png", "soak.png", "upsert_scaling.png", "backfill.png", "listing.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_a_latency_run_that_lost_a_file_is_invalid_and_meets_no_goal() -> None:
    landed = {"a.ndjson": 10.0, "b.ndjson": 11.0, "c.ndjson": 12.0}
    seen = land_to_visible(landed, {"a.ndjson": 12.5, "c.ndjson": 13.0})  # b's commit never seen
    assert seen == {"files_landed": 3, "files_visible": 2, "valid": False, "latencies": [2.5, 1.0]}
    fast = goal("p50 land->visible", 1.75, 5, at_most=True, valid=seen["valid"])
    assert (fast["met"], fast["valid"]) == (False, False)  # the value alone would meet it
    whole = land_to_visible(landed, {"a.ndjson": 12.5, "b.ndjson": 14.0, "c.ndjson": 13.0})
    assert (whole["valid"], whole["latencies"]) == (True, [2.5, 3.0, 1.0])
    assert goal("p50 land->visible", 2.5, 5, at_most=True, valid=whole["valid"])["met"] is True


def test_an_events_cpu_is_sampled_as_it_is_read(tmp_path: Path) -> None:
    """A peer's CPU ends at its last write: each JSON line gets a CPU sample of the tree at the time it was read."""
    script = "import json; [print(json.dumps({'event': 'written', 'n': n}), flush=True) for n in range(3)]; print('x')"
    done = procs.run(procs.python("-c", script), log=tmp_path / "events.log")
    events = [at for at, line in done.stdout if line.startswith("{")]
    assert len(events) == 3 and set(events) <= {at for at, _ in done.cpu_timeline}
    assert [at for at, _ in done.cpu_timeline] == sorted(at for at, _ in done.cpu_timeline)
    finished = procs.Finished(["p"], 0, 0.0, 3.0, 2.5, [], "", cpu_timeline=[(1.0, 0.4), (2.0, 1.1), (3.0, 2.5)])
    assert [finished.cpu_at(at) for at in (0.5, 1.0, 1.5, 2.0, 9.0)] == [0.0, 0.4, 0.4, 1.1, 2.5]


def test_the_commit_watch_keeps_commits_hudi_archived_during_the_run(tmp_path: Path) -> None:
    """A long soak outlives the active timeline: a commit archived mid-run still dates its files' visibility."""
    timeline = tmp_path / "bronze" / ".hoodie"
    timeline.mkdir(parents=True)
    watch = CommitWatch(tmp_path / "bronze", every=0.01).start()
    try:
        (timeline / "001.commit").write_text("{}")
        (timeline / "001.commit.requested").write_text("")  # not a completion
        (timeline / "002.replacecommit").write_text("{}")  # a clustering, not a batch's write
        first = (timeline / "001.commit").stat().st_mtime
        deadline = time.monotonic() + 10
        while "001" not in watch.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        (timeline / "001.commit").unlink()  # archived
        (timeline / "003.commit").write_text("{}")
        last = (timeline / "003.commit").stat().st_mtime
    finally:
        seen = watch.stop()
    assert seen == {"001": first, "003": last}


def test_layout_reads_again_past_a_commit_file_still_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soak samples the layout while the job commits: a read that meets an empty commit file is retried."""
    import hudi

    (tmp_path / "hospital_partition=h").mkdir()
    (tmp_path / "hospital_partition=h" / "f1.parquet").write_bytes(b"")
    slice_ = type("Slice", (), {"partition_path": "hospital_partition=h", "base_file_size": 2**20})()
    built = type("Table", (), {"get_file_slices": lambda self: [slice_]})()
    failures = [2]  # reads that meet the commit file before it is written

    class Builder:
        @classmethod
        def from_base_uri(cls, uri: str) -> Builder:
            if failures[0]:  # what hudi-rs raises on a commit file created but not yet written
                failures[0] -= 1
                raise RuntimeError("Timeline error: Failed to parse JSON commit metadata: EOF while parsing a value")
            return cls()

        def build(self) -> Any:
            return built

    monkeypatch.setattr(hudi, "HudiTableBuilder", Builder)
    pauses: list[float] = []  # the pauses between reads, taken here instead of slept
    monkeypatch.setattr(common.time, "sleep", pauses.append)
    assert layout(tmp_path)["files"] == 1 and failures == [0]
    assert len(pauses) == 2
    failures[0] = 10**6
    with pytest.raises(RuntimeError, match="EOF"):  # a table that stays unreadable still fails, after its tries
        layout(tmp_path)
    assert len(pauses) == 2 + 19 and sum(pauses) < 5


def test_the_soaks_heap_goal_follows_the_floor_not_the_batches_in_flight() -> None:
    """Samples at t = 0..99: second quarter t 25-49, last quarter t 75-99; in-flight batches lift single samples."""

    def run(second: list[float], last: list[float]) -> list[tuple[float, float]]:
        early = [(25.0 + i, v) for i, v in enumerate(second)]
        return [(0.0, 90.0), *early, *((75.0 + i, v) for i, v in enumerate(last))]

    busy_early = run([100, 300, 300], [100, 110, 100])  # the floor holds; the median fell with fewer batches caught
    assert _growth(busy_early) == 0.0
    assert _growth(busy_early, statistics.median) == round(100 / 300 - 1, 4)
    leaking = run([100, 300, 120], [150, 300, 160])  # the floor rose by half: a leak, whatever the batches did
    assert _growth(leaking) == 0.5
    assert _growth([(0.0, 100.0)]) is None


@pytest.mark.parametrize("quick", [True, False])
def test_every_process_keeps_its_scratch_in_the_workdir(tmp_path: Path, quick: bool) -> None:
    bench = Bench(work=tmp_path / "work", sizes=Sizes.quick(), quick=quick)
    path = bench.settings(tmp_path / "bench.toml", trigger=2, spark_conf={"spark.eventLog.enabled": "true"})
    settings = conf.load(path)  # the job reads it as any settings file
    local = conf.load(conf.env_file("local"))
    assert settings.trigger_interval == "2 seconds"
    assert (settings.spark.master, settings.spark.driver_memory) == (local.spark.master, local.spark.driver_memory)
    assert settings.spark.conf["spark.eventLog.enabled"] == "true"
    assert settings.spark.conf["spark.local.dir"] == str(tmp_path / "work" / "tmp" / "spark")
    options = shlex.split(settings.spark.conf["spark.driver.extraJavaOptions"])
    expected = [f"-Djava.io.tmpdir={tmp_path / 'work' / 'tmp' / 'jvm'}"]
    assert options == expected + (["-XX:TieredStopAtLevel=1"] if quick else [])  # a full run: the JVM's defaults


def test_set_changes_a_job_setting_in_every_process_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    wanted = {"max_files_per_trigger": "7", "layout.small_file_mb": "0"}
    bench = Bench(work=tmp_path / "work", sizes=Sizes.quick(), job_settings=wanted)
    settings = conf.load(bench.settings(tmp_path / "bench.toml", trigger=2))
    local = conf.load(conf.env_file("local"))
    assert (local.max_files_per_trigger, local.layout.small_file_mb) == (500, 1)
    assert (settings.max_files_per_trigger, settings.layout.small_file_mb) == (7, 0)
    assert (settings.trigger_interval, settings.tables) == ("2 seconds", local.tables)  # nothing else moved
    for bad in ("layout.no_such_key=1", "max_files_per_trigger"):  # unknown; no value
        with pytest.raises(SystemExit):
            run.main(["--only", "latency", "--set", bad, "--out", str(tmp_path / "out")])


def test_a_quick_run_measures_a_scenarios_processes_together(tmp_path: Path) -> None:
    barrier = threading.Barrier(2, timeout=30)  # passes only while both measurements run at the same time
    bench = Bench(work=tmp_path, sizes=Sizes.quick(), quick=True)
    assert bench.each(lambda item: (barrier.wait(), item * 10)[1], [1, 2]) == [10, 20]


def test_a_full_run_measures_one_thing_at_a_time(tmp_path: Path) -> None:
    running: list[int] = []
    most: list[int] = []

    def measure(item: int) -> int:
        running.append(item)
        most.append(len(running))
        time.sleep(0.05)
        running.remove(item)
        return item * 10

    assert Bench(work=tmp_path, sizes=Sizes(), quick=False).each(measure, [1, 2, 3]) == [10, 20, 30]
    assert max(most) == 1


def test_a_missing_event_is_named() -> None:
    lines = [
        (1.0, json.dumps({"event": "written", "kind": "plain"})),
        (2.0, "not json"),
        (3.0, json.dumps({"event": "written", "kind": "delta"})),
        (4.0, json.dumps({"event": "written", "kind": "delta", "n": 2})),
    ]
    done = procs.Finished(["python", "-m", "benchmarks.peers", "plain"], 0, 0.0, 4.0, 1.0, lines, "")
    assert done.last("written", kind="delta") == (4.0, {"event": "written", "kind": "delta", "n": 2})
    assert done.last("written", kind="plain")[0] == 1.0
    with pytest.raises(procs.EventMissing, match=re.escape("'written' line with {'kind': 'iceberg'}")):
        done.last("written", kind="iceberg")


@pytest.mark.parametrize(
    "argv",
    [
        ["plain", "plain", "--source", "s", "--out", "o"],
        ["plain", "seed", "--source", "s", "--out", "o"],
        ["seed", "--source", "a", "--source", "b", "--warehouse", "w"],
        ["delta", "iceberg", "--source", "s"],
        ["delta", "--mapping", "job", "--mapping", "job", "--source", "s", "--out", "o"],
        ["delta", "--mapping", "ours", "--source", "s", "--out", "o"],
    ],
)
def test_peers_refuse_an_incomplete_command(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        peers.main(argv)
    assert exit_.value.code == 2


def test_bench_jars_share_the_cache_and_refuse_a_bad_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRONZE_JAR_CACHE", str(tmp_path))
    fetched: list[str] = []

    def fake_download(url: str, target: Path) -> None:  # Maven Central's answer, without the network
        fetched.append(url)
        Path(target).write_bytes(b"not the pinned jar")

    monkeypatch.setattr("urllib.request.urlretrieve", fake_download)
    with pytest.raises(jars.JarChecksumMismatch, match=re.escape("delta-spark_2.12-3.3.2.jar: SHA-1")):
        peers.fetch_jars("delta")
    assert fetched == [peers.BENCH_JARS["delta"][0].url]
    assert list(tmp_path.iterdir()) == []  # neither the bad jar nor its partial download is kept

    for jar in peers.BENCH_JARS["iceberg"]:
        (tmp_path / jar.file_name).write_bytes(b"cached")
    assert peers.fetch_jars("iceberg") == [tmp_path / jar.file_name for jar in peers.BENCH_JARS["iceberg"]]
    assert len(fetched) == 1  # a cached jar is not fetched again


def test_update_batches_move_their_share_and_recent_ones_come_from_the_last_landed(tmp_path: Path) -> None:
    generated = generate(tmp_path, files=8, per_file=50, seed=5)
    files = sorted(p for p in generated.files if p.suffix == ".ndjson")
    by_id = {r["id"]: r for p in files for r in map(json.loads, p.read_text().splitlines())}
    order = [r_id for p in files for r_id in (json.loads(line)["id"] for line in p.read_text().splitlines())]
    plan = [Variant(0.0, recent=False), Variant(0.1, recent=True), Variant(0.01, recent=False), Variant(0.0, True)]
    batches, moves = _updates(list(generated.files), plan, size=40, seed=1)
    recent = set(order[-40:])  # the last-landed tenth of 300 encounters is 30: a batch of 40 takes the last 40
    hospital = {r_id: r["serviceProvider"]["display"] for r_id, r in by_id.items()}
    last_updated = {r_id: r["meta"]["lastUpdated"] for r_id, r in by_id.items()}
    expected_moves: Counter[str] = Counter()
    for variant, lines in zip(plan, batches, strict=True):
        rows = [json.loads(line) for line in lines]
        assert len({r["id"] for r in rows}) == len(rows) == 40
        if variant.recent:
            assert {r["id"] for r in rows} == recent
        moved = [r for r in rows if r["serviceProvider"]["display"] != hospital[r["id"]]]
        assert len(moved) == round(40 * variant.moving)
        for r in rows:
            then = datetime.fromisoformat(last_updated[r["id"]].replace("Z", "+00:00"))
            assert datetime.fromisoformat(r["meta"]["lastUpdated"]) > then  # each update newer than the last
            last_updated[r["id"]] = r["meta"]["lastUpdated"]
        for r in moved:
            expected_moves[hospital[r["id"]]] -= 1
            expected_moves[r["serviceProvider"]["display"]] += 1
            hospital[r["id"]] = r["serviceProvider"]["display"]
    assert +moves == +expected_moves and -moves == -expected_moves


def test_the_views_benchmark_lands_one_part_of_every_file_per_batch(tmp_path: Path) -> None:
    source = tmp_path / "export"
    source.mkdir()
    (source / "Patient.000.ndjson").write_text("p0\np1\np2\n\np3\np4\n")
    (source / "Condition.000.ndjson").write_text("c0\n")
    landed = land_parts(source, tmp_path / "landing", 2)
    parts = {p.name: (p.read_text().split(), p.stat().st_mtime) for p in landed}
    t = min(m for _, m in parts.values())
    assert parts == {
        "Condition.000.part0.ndjson": (["c0"], t),
        "Condition.000.part1.ndjson": ([], t + 60),  # an empty part: a file with nothing of that type
        "Patient.000.part0.ndjson": (["p0", "p2", "p4"], t),
        "Patient.000.part1.ndjson": (["p1", "p3"], t + 60),
    }
    with pytest.raises(FileNotFoundError, match="not found"):
        land_parts(tmp_path / "nothing", tmp_path / "landing2", 2)


def test_a_views_cost_is_its_step_over_the_encounter_only_batch_of_the_batches_it_wrote() -> None:
    found = costs([10.0, 5.0, 4.0], {"patient": [2.0, 0.0, 1.0], "observation": [0.0, 0.0, 0.0]})
    assert found == {
        "patient": {"shares": [0.2, 0.0, 0.25], "median_share": 0.225},
        "observation": {"shares": [0.0, 0.0, 0.0], "median_share": None},
    }
