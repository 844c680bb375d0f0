"""SQL on FHIR v2 ViewDefinitions compiled to Spark SQL."""
