"""What `beepgpt import` accepts: a Slack export (directory or zip) or a message table (Parquet/JSONL).

Whatever the source, every line goes through the same `HistoryBuilder` (and so the live
normalizer), so a table that still holds bot posts or joins is cleaned the way an export is.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beepgpt.message_table import COLUMNS, complete
from ingest.importer.export import ExportReader, Problem
from ingest.importer.history import HistoryBuilder, reaction_count
from ingest.normalize import Rules
from ingest.settings import SLACK_MAX_TEXT_CHARS, ImportSettings

if TYPE_CHECKING:
    import pandas as pd

TABLE_SUFFIXES = {".parquet": "Parquet table", ".jsonl": "JSONL table", ".ndjson": "JSONL table"}


class SourceError(Exception):
    """The source as a whole cannot be read (missing, wrong kind, a table without its columns)."""


@dataclass
class Imported:
    """The outcome of reading one source: the builder holds the table and the counts."""

    source: Path | str  # a path, or the Web API's URL (`--from-slack`)
    kind: str
    history: HistoryBuilder
    problems: list[Problem] = field(default_factory=list)
    channels: int = 0
    users: int = 0
    files: int = 0
    skipped_channels: dict[str, int] = field(default_factory=dict)  # reason → channel folders not read
    skipped_files: int = 0  # their day files, never opened

    @property
    def refused(self) -> list[Problem]:
        """Members that were not read at all (corrupt, too large, unsafe): the import is incomplete."""
        return [p for p in self.problems if p.refused]


def read_source(
    path: Path,
    *,
    max_text_chars: int = SLACK_MAX_TEXT_CHARS,
    private_channels: bool = False,
    limits: ImportSettings | None = None,
) -> Imported:
    """Read one source with the live rules. Private channels of an export are read only when
    `private_channels` says so (`BEEPGPT_INGEST_PRIVATE_CHANNELS`, as live); a message table has
    no channel kinds, so its rows are read with the kind unknown."""
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if path.is_file() and suffix in TABLE_SUFFIXES:
        return _read_table(path, TABLE_SUFFIXES[suffix], Rules(max_text_chars=max_text_chars))
    if path.is_dir() or zipfile.is_zipfile(path):
        rules = Rules(max_text_chars=max_text_chars, private_channels=private_channels)
        return _read_export(path, rules, limits or ImportSettings())
    raise SourceError(f"{path} is not a Slack export (directory or .zip) nor a .parquet/.jsonl message table")


def _read_export(path: Path, rules: Rules, limits: ImportSettings) -> Imported:
    try:
        reader = ExportReader(path, private_channels=rules.private_channels, limits=limits)
    except zipfile.BadZipFile as error:  # is_zipfile found an end record, the directory is broken
        raise SourceError(f"{path}: not a readable zip file ({error})") from error
    history = HistoryBuilder(replace(rules, bot_users=reader.bot_users))
    folders: set[str] = set()
    for line in reader.lines():
        folders.add(line.channel)
        history.add(
            line.message,
            where=line.where,
            channel=line.channel,
            channel_type=line.channel_type,
            shared=line.shared,
            reactions=reaction_count(line.message),
        )
    return Imported(
        source=path,
        kind=reader.kind,
        history=history,
        problems=[*reader.problems, *history.problems],
        channels=len(folders),
        users=len(reader.users),
        files=reader.files,
        skipped_channels=dict(sorted(reader.skipped_channels.items())),
        skipped_files=reader.skipped_files,
    )


def _read_table(path: Path, kind: str, rules: Rules) -> Imported:
    problems: list[Problem] = []
    table = _load_table(path, problems)
    unknown = [c for c in table.columns if c not in COLUMNS]
    for column in unknown:
        problems.append(
            Problem(path.name, "unknown_field", f"column {column!r} is not a message table column")
        )
    try:
        table = complete(table)
    except ValueError as error:
        raise SourceError(f"{path}: {error}") from error
    history = HistoryBuilder(rules)
    for index, row in enumerate(table.itertuples(index=False)):
        event: dict[str, Any] = {
            "type": "message",
            "channel": _value(row.channel),
            "user": _value(row.user),
            "text": _value(row.text),
            "ts": _value(row.slack_ts),
            "thread_ts": _value(row.slack_thread_ts),
            "subtype": _value(row.subtype),
        }
        reactions = _value(row.reactions)
        history.add(
            {k: v for k, v in event.items() if v is not None},
            where=f"{path.name}[row {index}]",
            reactions=int(reactions) if isinstance(reactions, int | float) else 0,
        )
    problems += history.problems
    return Imported(
        source=path,
        kind=kind,
        history=history,
        problems=problems,
        channels=len({m.channel for m in history.messages()}),
        users=len({m.user for m in history.messages()}),
        files=1,
    )


def _load_table(path: Path, problems: list[Problem]) -> pd.DataFrame:
    import pandas as pd

    if path.suffix.lower() == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as error:  # pyarrow raises many kinds for a damaged file
            raise SourceError(f"{path}: not a readable Parquet file ({error})") from error
    rows: list[dict[str, Any]] = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except RecursionError:
                problems.append(
                    Problem(
                        f"{path.name}:{number}", "corrupt_line", "not valid JSON: nested too deeply to parse"
                    )
                )
                continue
            except (ValueError, UnicodeDecodeError) as error:
                problems.append(
                    Problem(f"{path.name}:{number}", "corrupt_line", f"not valid JSON: {error}"[:300])
                )
                continue
            if not isinstance(row, dict):
                problems.append(Problem(f"{path.name}:{number}", "corrupt_line", "not a JSON object"))
                continue
            rows.append(row)
    # Keep ts strings as strings: letting pandas infer would turn Slack ids into floats.
    return pd.DataFrame(rows, dtype=object) if rows else pd.DataFrame(columns=list(COLUMNS))


def _value(value: Any) -> Any:
    """A table cell as a plain Python value; NaN/None/NA are missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value
