"""Record headers every record carries: where it came from and which trace it belongs to."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

Headers = list[tuple[str, bytes]]

SOURCE = "beepgpt.source"
TRACE_ID = "beepgpt.trace_id"


def new_trace_id() -> str:
    """A trace id for a chain of records that starts here (a Slack event, an import row)."""
    return uuid.uuid4().hex


def make_headers(source: str, trace_id: str | None = None, **extra: str) -> Headers:
    """Headers for a new record; pass the incoming record's trace id to keep the chain."""
    headers: Headers = [(SOURCE, source.encode()), (TRACE_ID, (trace_id or new_trace_id()).encode())]
    headers.extend((f"beepgpt.{name}", value.encode()) for name, value in extra.items())
    return headers


def header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    """The value of a header, decoded, or None when the record does not carry it."""
    for key, value in headers or ():
        if key == name:
            return value.decode(errors="replace")
    return None
