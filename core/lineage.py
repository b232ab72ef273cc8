"""Names of the columns and tables ferry adds beside the user's data. Constants only."""

SOURCE_URI_COLUMN = "_ferry_source_uri"
"""The object (gs:// URI or local path) a row was read from."""
SOURCE_GENERATION_COLUMN = "_ferry_source_generation"
"""The object's generation (GCS) or modification time in microseconds (local files)."""
LINEAGE_COLUMNS = (SOURCE_URI_COLUMN, SOURCE_GENERATION_COLUMN)
LOAD_ID_COLUMN = "_dlt_load_id"
"""dlt's load id on every row: a row counts only when its load is complete in `_dlt_loads`."""
REJECTS_SUFFIX = "__rejects"
"""`<table>__rejects` holds the rows a file could not give in the declared shape."""
