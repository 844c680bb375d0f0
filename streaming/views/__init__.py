"""Running ViewDefinitions (compiled by `streaming.viewdef`): over FHIR files without a table (`views run`), the
official conformance suite (`runner`, `views test`), and a `views.run` entry found as a shipped name or a file.
"""
