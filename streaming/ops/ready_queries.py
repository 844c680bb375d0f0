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
    """One downstream question: a name, a one-line description and SQL that Athena and DuckDB both run.

    `views` names the shipped views (streaming/viewdef/shipped.py) whose tables `bronze_<view>` the SQL reads besides
    bronze_encounter: the job must run those views for the query to answer.
    """

    name: str
    description: str
    sql: str
    views: tuple[str, ...] = ()


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


def _keys(view: str, alias: str) -> str:
    """A CTE `<view>_keys`: each row of bronze_<view> under `id <id>` and under `identifier <system|value>` for
    each of its identifiers, so a literal and a conditional reference join the same way."""
    return f"""{view}_keys AS (
  SELECT id AS {view}_id, 'id ' || id AS k
  FROM bronze.bronze_{view}
  UNION
  SELECT {alias}.id, 'identifier ' || t.token
  FROM bronze.bronze_{view} AS {alias}
  CROSS JOIN UNNEST({alias}.identifiers) AS t (token)
)"""


# Encounters that happened, as a derived table: the view tables have columns of the same names (status).
_ENCOUNTERS = f"""(
    SELECT encounter_id, patient_ref, encounter_type, practitioner_ref, admission_time, discharge_time
    FROM bronze.bronze_encounter
    WHERE {_HAPPENED}
  )"""
# A stay's length in hours, when it has both times and does not end before it starts.
_HOURS = """CASE WHEN e.discharge_time >= e.admission_time
      THEN CAST(date_diff('millisecond', e.admission_time, e.discharge_time) AS double) / 3600000
    END"""

PHYSICIAN_PERFORMANCE = Query(
    "physician_performance",
    "Physician performance: encounters, patients, mean stay and 30-day readmissions per practitioner, by name and"
    " role.",
    f"""\
-- Encounters not deleted, cancelled or entered in error, counted for the practitioner bronze_encounter's
-- practitioner_ref names (its first participant that is a practitioner, kept as sent). That reference is literal,
-- `Practitioner/<id>`, or conditional by identifier, `Practitioner?identifier=<system>|<value>` (bulk exports
-- write these): it matches the practitioner with that id, or with that `system|value` among its identifiers.
-- role and specialty: the displays (else codes) of the practitioner's PractitionerRoles, which name it the same
-- two ways; the alphabetically first when it has several. avg_stay_hours: stays with both times, end not before
-- start. admissions and readmissions_30d as in readmissions_30d: an inpatient stay of this practitioner with a
-- discharge time, readmitted when the same patient has another inpatient admission (any practitioner, any
-- hospital) after that discharge and at most 30 days later.
WITH practitioner_refs AS (
  SELECT id AS practitioner_id, 'Practitioner/' || id AS ref
  FROM bronze.bronze_practitioner
  UNION
  SELECT p.id, 'Practitioner?identifier=' || t.token
  FROM bronze.bronze_practitioner AS p
  CROSS JOIN UNNEST(p.identifiers) AS t (token)
),
roles AS (
  SELECT
    k.practitioner_id,
    min(coalesce(r.role_display, r.role_code)) AS role,
    min(coalesce(r.specialty_display, r.specialty_code)) AS specialty
  FROM bronze.bronze_practitioner_role AS r
  JOIN practitioner_refs AS k
    ON k.ref IN ('Practitioner/' || r.practitioner_id, 'Practitioner?identifier=' || r.practitioner_identifier)
  GROUP BY k.practitioner_id
),
inpatient AS (
  SELECT encounter_id, patient_ref, admission_time
  FROM {_ENCOUNTERS} AS i
  WHERE encounter_type = '{_INPATIENT}' AND patient_ref IS NOT NULL AND admission_time IS NOT NULL
),
stays AS (
  SELECT
    k.practitioner_id,
    e.patient_ref,
    {_HOURS} AS hours,
    CASE WHEN e.encounter_type = '{_INPATIENT}' AND e.patient_ref IS NOT NULL AND e.admission_time IS NOT NULL
      AND e.discharge_time IS NOT NULL THEN 1 END AS admission,
    CASE WHEN e.encounter_type = '{_INPATIENT}' AND e.admission_time IS NOT NULL AND EXISTS (
      SELECT 1
      FROM inpatient AS r
      WHERE r.patient_ref = e.patient_ref
        AND r.encounter_id <> e.encounter_id
        AND r.admission_time > e.discharge_time
        AND r.admission_time <= e.discharge_time + INTERVAL '30' DAY
    ) THEN 1 END AS readmitted
  FROM {_ENCOUNTERS} AS e
  JOIN practitioner_refs AS k ON k.ref = e.practitioner_ref
)
SELECT
  p.id AS practitioner_id,
  p.name,
  p.npi,
  roles.role,
  roles.specialty,
  count(*) AS encounters,
  count(DISTINCT s.patient_ref) AS patients,
  round(avg(s.hours), 1) AS avg_stay_hours,
  count(s.admission) AS admissions,
  count(s.readmitted) AS readmissions_30d
FROM stays AS s
JOIN bronze.bronze_practitioner AS p ON p.id = s.practitioner_id
LEFT JOIN roles ON roles.practitioner_id = p.id
GROUP BY p.id, p.name, p.npi, roles.role, roles.specialty
ORDER BY encounters DESC, p.name, p.id""",
    views=("practitioner", "practitioner_role"),
)

DEPARTMENT_PERFORMANCE = Query(
    "department_performance",
    "Department performance by Location: encounters, patients, inpatient stays and hours per location and its"
    " organization.",
    f"""\
-- Encounters not deleted, cancelled or entered in error, counted for their first location. bronze_encounter keeps
-- only its display (department, not unique: several Locations share a name), so the location comes from
-- bronze_encounter_reference (the same Encounter's first location, by id): a literal reference matches the
-- Location's id, a conditional one (`Location?identifier=<system>|<value>`) or a Reference.identifier matches
-- a `system|value` among its identifiers. The organization is the Location's managingOrganization, matched the
-- same way. Hours add up stays with both times, end not before start.
WITH {_keys("location", "l")},
{_keys("organization", "o")},
visits AS (
  SELECT
    k.location_id,
    e.patient_ref,
    e.encounter_type,
    {_HOURS} AS hours
  FROM {_ENCOUNTERS} AS e
  JOIN bronze.bronze_encounter_reference AS r ON r.id = e.encounter_id
  JOIN location_keys AS k ON k.k IN ('id ' || r.location_id, 'identifier ' || r.location_identifier)
)
SELECT
  l.id AS location_id,
  l.name AS location,
  o.name AS organization,
  count(*) AS encounters,
  count(DISTINCT v.patient_ref) AS patients,
  count(CASE WHEN v.encounter_type = '{_INPATIENT}' THEN 1 END) AS inpatient_encounters,
  round(avg(v.hours), 1) AS avg_stay_hours,
  round(sum(v.hours), 1) AS total_hours
FROM visits AS v
JOIN bronze.bronze_location AS l ON l.id = v.location_id
LEFT JOIN organization_keys AS ok
  ON ok.k IN ('id ' || l.managing_organization_id, 'identifier ' || l.managing_organization_identifier)
LEFT JOIN bronze.bronze_organization AS o ON o.id = ok.organization_id
GROUP BY l.id, l.name, o.name
ORDER BY encounters DESC, l.name, l.id""",
    views=("location", "organization", "encounter_reference"),
)

DIAGNOSES_BY_ENCOUNTER_TYPE = Query(
    "diagnoses_by_encounter_type",
    "Diagnoses per encounter type: how often each condition code is recorded in encounters of each type.",
    f"""\
-- Conditions recorded in an encounter (bronze_condition.encounter_id is bronze_encounter's encounter_id) that was
-- not deleted, cancelled or entered in error; conditions whose verification status is entered-in-error or refuted
-- count nowhere. diagnosis: the code's display, else the condition's text.
SELECT
  e.encounter_type,
  c.code_system,
  c.code,
  coalesce(c.code_display, c.code_text) AS diagnosis,
  count(*) AS diagnoses,
  count(DISTINCT e.encounter_id) AS encounters,
  count(DISTINCT e.patient_ref) AS patients
FROM {_ENCOUNTERS} AS e
JOIN bronze.bronze_condition AS c ON c.encounter_id = e.encounter_id
WHERE coalesce(c.verification_status, '') NOT IN ('entered-in-error', 'refuted')
GROUP BY e.encounter_type, c.code_system, c.code, coalesce(c.code_display, c.code_text)
ORDER BY diagnoses DESC, e.encounter_type, c.code""",
    views=("condition",),
)

QUERIES: tuple[Query, ...] = (
    DURATIONS_BY_TYPE,
    READMISSIONS_30D,
    UTILISATION,
    PHYSICIAN_PERFORMANCE,
    DEPARTMENT_PERFORMANCE,
    DIAGNOSES_BY_ENCOUNTER_TYPE,
)


def readme_block() -> str:
    """The ready-queries section of docs/reference.md: each query's description, then its SQL."""
    parts = []
    for q in QUERIES:
        needs = ""
        if q.views:
            tables = ", ".join(f"`bronze_{view}`" for view in q.views)
            needs = f" Reads the view tables {tables}: the job must run those views."
        parts.append(f"`{q.name}`: {q.description}{needs}\n\n```sql\n{q.sql}\n```")
    return "\n\n".join(parts)
