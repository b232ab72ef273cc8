"""BigQuery, the production target: Application Default Credentials, the emulator in tests.

The same modules as duckdb/ (destination, models, errors), reached through
app/destinations/registry.py, and load_steps.py: how dlt's BigQuery loader runs a load,
changed where it costs a push calls (applied by destination.make_destination).
"""
