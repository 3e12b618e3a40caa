"""FHIR R4 out and in: Bulk Data folders, transaction Bundles, Synthea's output.

- :mod:`.common`: code systems, the alias table of entity variants, value checks, ids.
- :mod:`.outbound` / :mod:`.inbound`: canonical entity <-> resources (fields with a home).
- :mod:`.carry`: the HealthSim extension (what has no home), so nothing is lost.
- :mod:`.mapping`: one entity to its resources and back.
- :mod:`.export`, :mod:`.bundles`: the export folders; :mod:`.reading`: the import.
- :mod:`.validation`: the optional ``fhir.resources`` check.
"""
