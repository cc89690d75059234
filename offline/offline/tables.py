"""Reading a message table from whatever a person has: Parquet, JSONL, or a Slack export.

Every offline command (`beepgpt conversations`, `train`, `eval`) starts here, so they all read
the same files the same way. Exports are read by ingest's importer (the one reader of Slack's
export format, with its limits on hostile zips); tables are completed to
`beepgpt.message_table.COLUMNS`, the shape the sessionizer's history query takes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from beepgpt.message_table import complete
from ingest.importer.sources import SourceError, read_source


class TableError(ValueError):
    """The path is not a message table or export these commands can read."""


def load_table(path: str | Path) -> pd.DataFrame:
    """A message table from Parquet / JSONL, or from a Slack export (directory or zip)."""
    source = Path(path)
    if not source.exists():
        raise TableError(f"{source} does not exist")
    suffix = source.suffix.lower()
    if source.is_file() and suffix == ".parquet":
        return complete(pd.read_parquet(source))
    if source.is_file() and suffix in (".jsonl", ".ndjson"):
        return complete(pd.read_json(source, lines=True, dtype={"slack_ts": str, "slack_thread_ts": str}))
    try:
        return complete(read_source(source).history.table())
    except SourceError as error:
        raise TableError(str(error)) from None
