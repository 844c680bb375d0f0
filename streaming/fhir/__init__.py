"""FHIR files to records and the Encounter mapping as data: no Spark."""
