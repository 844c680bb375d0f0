"""bronze-encounter: FHIR files landing in S3 (or a folder) become Hudi tables, exactly once.

The layers, from the entrypoints down; imports only ever point down (pyproject.toml [tool.importlinter]):

    generated   the doc blocks made from the code              cli        the command line and the Glue entry
    pipeline    one micro-batch, the stream, re-reads, metrics  views      views run over files, the conformance runner
    catalog     tables registered by name (Glue, local)         ops        JVM-free reads: SQL, status, backlog
    lakehouse   Spark and Hudi: tables, timeline, checkpoint    bronze     records -> rows: flatten, ordering, columns
    fhir        FHIR files -> records, the mapping as data      ledger     files committed, intents, the writer lease
    viewdef     ViewDefinitions compiled to Spark SQL, shipped  adapters   boto3 clients, landed files
    config      settings: flag > file > default                 generate   synthetic FHIR files
"""
