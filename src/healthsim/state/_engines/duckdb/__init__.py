"""The embedded engine: scenarios in one DuckDB file.

Opening the file (one connection per operation, retries while another process holds it,
owner-only permissions: :mod:`.connection`), its schema and migrations, including the
tables of earlier HealthSim releases (:mod:`.schema`), large writes staged in chunks
(:mod:`.schema`'s staging table) and the :class:`~.engine.DuckDBEngine` that the
engine-neutral code asks where the engines differ. The only code that imports ``duckdb``.
"""
