"""The message table: a workspace's history as rows, the format import writes and training reads.

It extends the example data's five columns (`ts`, `thread_ts`, `channel`, `user`, `text`, times
as float seconds) with Slack's exact ts strings (identities), the subtype and reaction counts. A
table with only the five base columns is completed on read, so the example Parquet and an
imported export are read the same way.

pandas is imported lazily: services that never touch history tables do not need it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from beepgpt.contracts import SlackMessage

if TYPE_CHECKING:
    import pandas as pd

BASE_COLUMNS = ("ts", "thread_ts", "channel", "user", "text")
COLUMNS = (*BASE_COLUMNS, "slack_ts", "slack_thread_ts", "subtype", "reactions")


def slack_ts(seconds: float) -> str:
    """Slack's ts string for a float time: six decimals, as Slack writes it."""
    return f"{seconds:.6f}"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def complete(table: pd.DataFrame) -> pd.DataFrame:
    """Add the optional columns a five-column table lacks and sort rows by time.

    Raises ValueError naming the missing base columns, so a wrong file fails with a clear message.
    """
    missing = [c for c in BASE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"message table lacks columns {missing}; it needs {list(BASE_COLUMNS)}")
    out = table.copy()
    if "slack_ts" not in out.columns:
        out["slack_ts"] = [slack_ts(t) for t in out["ts"]]
    if "slack_thread_ts" not in out.columns:
        out["slack_thread_ts"] = [None if _is_missing(t) else slack_ts(t) for t in out["thread_ts"]]
    if "subtype" not in out.columns:
        out["subtype"] = None
    if "reactions" not in out.columns:
        out["reactions"] = 0
    out["text"] = out["text"].fillna("").astype(str)
    return out.sort_values("ts", kind="stable").reset_index(drop=True).loc[:, list(COLUMNS)]


def to_messages(table: pd.DataFrame, team: str | None = None) -> Iterator[SlackMessage]:
    """Each row as the `SlackMessage` ingest would have published for it, in time order."""
    for row in complete(table).itertuples(index=False):
        thread = None if _is_missing(row.slack_thread_ts) else str(row.slack_thread_ts)
        yield SlackMessage(
            team=team,
            channel=str(row.channel),
            ts=str(row.slack_ts),
            thread_ts=thread,
            user=None if _is_missing(row.user) else str(row.user),
            text=str(row.text),
            subtype=None if _is_missing(row.subtype) else str(row.subtype),
            event_time=float(row.ts),
        )


def from_messages(
    messages: list[SlackMessage], reactions: dict[tuple[str, str], int] | None = None
) -> pd.DataFrame:
    """The table of a list of (new) messages; `reactions` counts per (channel, ts)."""
    import pandas as pd

    counts = reactions or {}
    rows = [
        {
            "ts": float(m.ts),
            "thread_ts": float(m.thread_ts) if m.thread_ts else float("nan"),
            "channel": m.channel,
            "user": m.user,
            "text": m.text,
            "slack_ts": m.ts,
            "slack_thread_ts": m.thread_ts,
            "subtype": m.subtype,
            "reactions": counts.get((m.channel, m.ts), 0),
        }
        for m in messages
    ]
    return complete(pd.DataFrame(rows, columns=list(COLUMNS)))
