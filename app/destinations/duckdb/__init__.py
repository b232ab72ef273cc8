"""DuckDB, the embedded default: one database file, one writing process at a time.

The same modules as bigquery/ (destination, models, errors), reached through
app/destinations/registry.py.
"""
