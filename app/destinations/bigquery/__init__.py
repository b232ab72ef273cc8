"""BigQuery, the production target: Application Default Credentials, the emulator in tests.

The same modules as duckdb/ (destination, models, errors), reached through
app/destinations/registry.py.
"""
