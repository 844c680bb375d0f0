"""Ready SQL for the questions analysts ask of `bronze.bronze_encounter`, shown in docs/reference.md.

Each query runs as written on Athena (Trino) and in `streaming.ops.query` (DuckDB), so it keeps to what both engines
mean the same way: CTEs, `CAST`, `count`/`avg`/`max`/`sum`, `round(double, n)`, correlated `EXISTS`, interval
arithmetic (`ts + INTERVAL '30' DAY`). Durations come from `date_diff('millisecond', a, b)`: DuckDB's date_diff
counts unit *boundaries* crossed and Trino's counts whole units elapsed, so in minutes or days the two differ by up
to one unit; in milliseconds they agree (Athena timestamps have millisecond precision). Functions only one engine
has (Trino's `approx_percentile`, DuckDB's `epoch`) are not used.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming.fhir.mapping import CLASS_LABELS

# Encounters that did not happen (R4 and R5 share these codes) count nowhere; a null status counts.
# Tombstones (a Bundle DELETE removed the encounter) stay in bronze with `is_deleted` true: every query drops them.
_HAPPENED = "NOT is_deleted AND coalesce(status, '') NOT IN ('cancelled', 'entered-in-error')"
_INPATIENT = CLASS_LABELS["IMP"]
_INPATIENT_CODES = ", ".join(code for code, label in CLASS_LABELS.items() if label == _INPATIENT)


@dataclass(frozen=True)
class Query:
    """One downstream question: a name, a one-line description and SQL that Athena and DuckDB both run."""

    name: str
    description: str
    sql: str


DURATIONS_BY_TYPE = Query(
    "durations_by_type",
    "Encounter durations by type: finished encounters, their average and longest stay in minutes.",
    """\
-- Finished encounters (R4 status 'finished', R5 'completed') with both times and an end not before the start;
-- a tombstone (is_deleted) never has a status, so it is never finished.
-- Minutes are milliseconds / 60000, so Athena and DuckDB agree to the millisecond.
SELECT
  encounter_type,
  count(*) AS encounters,
  round(avg(minutes), 1) AS avg_minutes,
  max(minutes) AS max_minutes
FROM (
  SELECT
    encounter_type,
    CAST(date_diff('millisecond', admission_time, discharge_time) AS double) / 60000 AS minutes
  FROM bronze.bronze_encounter
  WHERE status IN ('finished', 'completed')
    AND admission_time IS NOT NULL
    AND discharge_time IS NOT NULL
    AND discharge_time >= admission_time
) AS finished
GROUP BY encounter_type
ORDER BY encounters DESC, encounter_type""",
)

READMISSIONS_30D = Query(
    "readmissions_30d",
    "30-day readmissions per hospital: inpatient admissions, and how many led to another within 30 days.",
    f"""\
-- Inpatient: encounter_type = '{_INPATIENT}' (class codes {_INPATIENT_CODES}), not deleted, cancelled or entered
-- in error.
-- An admission counts when it has a discharge time. It is readmitted when the same patient_ref (compared as
-- stored) has another inpatient admission, at any hospital, starting after that discharge and at most 30 days
-- (30 x 24 h) after it; it counts at the hospital of that first stay. Admissions discharged in the last 30
-- days of the data cannot show a readmission yet.
WITH inpatient AS (
  SELECT encounter_id, patient_ref, hospital_name, admission_time, discharge_time
  FROM bronze.bronze_encounter
  WHERE encounter_type = '{_INPATIENT}'
    AND {_HAPPENED}
    AND patient_ref IS NOT NULL
    AND admission_time IS NOT NULL
),
admissions AS (
  SELECT
    i.hospital_name,
    CASE WHEN EXISTS (
      SELECT 1
      FROM inpatient AS r
      WHERE r.patient_ref = i.patient_ref
        AND r.encounter_id <> i.encounter_id
        AND r.admission_time > i.discharge_time
        AND r.admission_time <= i.discharge_time + INTERVAL '30' DAY
    ) THEN 1 END AS readmitted
  FROM inpatient AS i
  WHERE i.discharge_time IS NOT NULL
)
SELECT
  hospital_name,
  count(*) AS admissions,
  count(readmitted) AS readmissions_30d,
  round(CAST(count(readmitted) AS double) / count(*), 3) AS readmission_rate
FROM admissions
GROUP BY hospital_name
ORDER BY readmissions_30d DESC, admissions DESC, hospital_name""",
)

UTILISATION = Query(
    "utilisation",
    "Utilisation per department and hospital: encounters, distinct patients and total hours.",
    f"""\
-- Encounters not deleted, cancelled or entered in error; hours add up encounters with both times (end not
-- before start).
SELECT
  hospital_name,
  department,
  count(*) AS encounters,
  count(DISTINCT patient_ref) AS patients,
  round(sum(
    CASE WHEN discharge_time >= admission_time
      THEN CAST(date_diff('millisecond', admission_time, discharge_time) AS double) / 3600000
    END
  ), 1) AS total_hours
FROM bronze.bronze_encounter
WHERE {_HAPPENED}
GROUP BY hospital_name, department
ORDER BY encounters DESC, hospital_name, department""",
)

QUERIES: tuple[Query, ...] = (DURATIONS_BY_TYPE, READMISSIONS_30D, UTILISATION)


def readme_block() -> str:
    """The ready-queries section of docs/reference.md: each query's description, then its SQL."""
    parts = []
    for q in QUERIES:
        parts.append(f"`{q.name}`: {q.description}\n\n```sql\n{q.sql}\n```")
    return "\n\n".join(parts)
