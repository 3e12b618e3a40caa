"""The team store: the library's tables on a PostgreSQL server.

The store, editing, history and exchange code is shared with the embedded DuckDB file;
what differs lives here: opening a server and naming it in errors (:mod:`.server`), the
connection the shared code runs its SQL on (:mod:`.connection`), the schema and its
migrations (:mod:`.schema`), bulk writes and reads through ``COPY`` (:mod:`.bulk`), the
query sandbox (:mod:`.sandbox`), and a scenario copied into an in-memory DuckDB for the
statistics and analytics formats that are computed in DuckDB's SQL (:mod:`.snapshot`).
"""
