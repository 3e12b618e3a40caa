"""JSON exchange: export to the 1.0 format, import of it and of legacy HealthSim shapes.

Modules: ``export`` (streaming, atomic writer), ``line_format`` (fast reader of the
export's layout), ``json_stream`` (general streaming reader with exact error locations),
``shapes`` (what a file's members mean), ``importer`` (orchestration).
"""
