"""Config precedence: flag > file > default, with named errors for unknown keys and wrong types."""

from __future__ import annotations

from pathlib import Path

import pytest

from streaming import config as conf


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = conf.load()
    assert config.source == str(tmp_path / "data" / "landing")
    assert config.warehouse == str(tmp_path / "data" / "warehouse")
    assert config.checkpoint_uri == str(tmp_path / "data" / "warehouse" / "_checkpoints" / "bronze_encounter")
    assert config.ledger.backend == "sqlite"
    assert config.ledger_path == str(tmp_path / "data" / "warehouse" / "_ledger" / "ledger.sqlite3")


def test_file_overrides_defaults_and_flags_override_file(tmp_path: Path) -> None:
    file = _write(
        tmp_path,
        'source = "s3a://landing-bucket/in"\nmax_files_per_trigger = 7\n'
        '[ledger]\nbackend = "dynamodb"\ntable = "from-file"\n[spark.conf]\n"spark.a" = "1"\n',
    )
    config = conf.load(file, {"ledger.table": "from-flag", "max_files_per_trigger": "9", "source": None})
    assert config.source == "s3a://landing-bucket/in"  # a None flag means "not given"
    assert config.max_files_per_trigger == 9  # flag text converted to the field's type
    assert config.ledger.backend == "dynamodb"
    assert config.ledger.table == "from-flag"
    assert dict(config.spark.conf) == {"spark.a": "1"}


def test_remote_warehouse_needs_explicit_sqlite_path() -> None:
    config = conf.load(overrides={"warehouse": "s3a://wh-bucket/bronze"})
    assert config.table_uri("bronze_encounter") == "s3a://wh-bucket/bronze/bronze_encounter"
    assert config.checkpoint_uri == "s3a://wh-bucket/bronze/_checkpoints/bronze_encounter"
    with pytest.raises(conf.ConfigError, match=r"ledger\.path"):
        _ = config.ledger_path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1\n", "unknown setting nope"),
        ("[ledger]\ncolour = 'x'\n", "unknown setting ledger.colour"),
        ("max_files_per_trigger = 'many'\n", "max_files_per_trigger must be int"),
        ("ledger = 3\n", "ledger must be a table"),
        ("[fhir]\nkeep_resource_json = 5\n", "fhir.keep_resource_json must be bool"),
        # Accepted once, these failed an hour later, at the first clustering (a quoted SQL string of Hudi's).
        ('warehouse = "s3://lake/St. Mary\'s/bronze"\n', "warehouse must not contain a quote"),
        ("checkpoint = '/tmp/a,b'\n", "checkpoint must not contain a quote \\(\\'\\) or a comma"),
        ("[tables]\nencounter = 'Bronze-Encounter'\n", "tables.encounter must be lower-case letters"),
        ("[tables]\ndatabase = 'bronze db'\n", "tables.database must be lower-case letters"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(conf.ConfigError, match=message):
        conf.load(_write(tmp_path, text))


def test_shipped_environment_files_load() -> None:
    local = conf.load(conf.env_file("local"))
    glue = conf.load(conf.env_file("glue"))
    assert local.ledger.backend == "sqlite"
    assert glue.ledger.backend == "dynamodb"
    assert glue.warehouse.startswith("s3://")


def test_the_small_file_limit_reaches_every_tables_write_options(tmp_path: Path) -> None:
    from streaming.lakehouse.hudi import encounter_table, ingest_log_table, quarantine_table

    config = conf.load(_write(tmp_path, "[layout]\nsmall_file_mb = 3\n"))
    for spec in (encounter_table(config), ingest_log_table(config), quarantine_table(config)):
        assert spec.write_options()["hoodie.parquet.small.file.limit"] == str(3 * 1024 * 1024), spec.name
    assert conf.load(None, {"layout.small_file_mb": "0"}).layout.small_file_mb == 0  # 0: always new files
    with pytest.raises(conf.ConfigError, match=r"layout\.small_file_mb must be >= 0"):
        conf.load(None, {"layout.small_file_mb": "-1"})


def test_status_thresholds_come_from_the_status_section_and_must_be_positive(tmp_path: Path) -> None:
    config = conf.load(_write(tmp_path, "[status]\nbehind_seconds = 60\n"), {"status.stalled_seconds": "120"})
    assert (config.status.behind_seconds, config.status.stalled_seconds) == (60, 120)
    assert conf.load(conf.env_file("local")).status == conf.StatusConfig()  # the shipped file keeps the defaults
    with pytest.raises(conf.ConfigError, match=r"status\.max_listed must be > 0, got 0"):
        conf.load(None, {"status.max_listed": "0"})


@pytest.mark.parametrize(
    ("expected_rows", "groups"),
    [(1, 1), (999_999, 1), (1_000_000, 1), (1_000_001, 2), (2_000_000, 2), (10_000_000, 10), (25_500_000, 26)],
)
def test_the_record_index_gets_one_file_group_per_million_expected_rows(expected_rows: int, groups: int) -> None:
    from streaming.lakehouse.hudi import record_index_file_groups

    assert record_index_file_groups(expected_rows) == groups


def test_the_expected_rows_size_the_record_index_flag_over_file_over_default(tmp_path: Path) -> None:
    from streaming.lakehouse.hudi import encounter_table

    def groups(config: conf.JobConfig) -> tuple[str, str]:
        options = encounter_table(config).write_options()
        return (
            options["hoodie.metadata.record.index.min.filegroup.count"],
            options["hoodie.metadata.record.index.max.filegroup.count"],
        )

    file = _write(tmp_path, "[layout]\nexpected_rows = 5000000\n")
    assert groups(conf.load(None)) == ("2", "2")  # the default: 2,000,000 rows
    assert groups(conf.load(file)) == ("5", "5")
    assert groups(conf.load(file, {"layout.expected_rows": "12000000"})) == ("12", "12")
    with pytest.raises(conf.ConfigError, match=r"layout\.expected_rows must be at least 1"):
        conf.load(None, {"layout.expected_rows": "0"})


def test_bronze_files_are_capped_at_the_clustering_size(tmp_path: Path) -> None:
    from streaming.lakehouse.hudi import clustering_options, encounter_table

    config = conf.load(_write(tmp_path, "[layout]\ncluster_file_mb = 24\n"))
    cap = encounter_table(config).write_options()["hoodie.parquet.max.file.size"]
    assert cap == clustering_options(config)["hoodie.clustering.plan.strategy.target.file.max.bytes"] == str(24 * 2**20)
