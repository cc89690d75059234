"""What Bolt can take: the shape checks both transports (HTTP and Socket Mode) run on a parsed
body before Bolt sees it.

Bolt reads routing ids from fixed places of a body and fails with a TypeError (a 500 over HTTP,
an envelope never acked over Socket Mode, so Slack redelivers it for ever) when one has the wrong
type; a deeply nested body is an attack on the parsers and encoders after us. A body with such a
problem is dead-lettered with the reason (`Intake.park`) and answered so Slack stops resending.
"""

from __future__ import annotations

from typing import Any

from ingest.normalize import Rejected

# How deep a body may nest. Slack's deepest payloads (rich-text blocks inside an edited message's
# attachments) stay under 20 levels; a deeper one is an attack on the parsers and encoders after us.
MAX_DEPTH = 64
# Fields where Bolt looks for the routing ids of a request (slack_bolt.request.internals): each
# must be a string (or absent / null), or Bolt fails with a TypeError before any listener runs.
_ID_FIELDS = (
    "type",
    "team_id",
    "enterprise_id",
    "user_id",
    "channel_id",
    "thread_ts",
    "user_team",
    "context_team_id",
    "context_enterprise_id",
    "function_execution_id",
    "bot_access_token",
    "app_installed_team_id",
    "response_url",
    "event_id",
)
# Fields Bolt reads as either an id (string) or an object with an `id`.
_REFERENCE_FIELDS = ("team", "enterprise", "user", "channel")
# Objects Bolt looks into for the same fields.
_NESTED_FIELDS = ("event", "message", "previous_message", "item", "assistant_thread", "view", "function_data")


def body_problem(body: object) -> Rejected | None:
    """Why a parsed body would break Bolt (not an object, too deep, a routing field of the wrong
    type), or None. The detail names the field and its type, never a value."""
    if not isinstance(body, dict):
        return Rejected("invalid_body", f"body is a JSON {type(body).__name__}, not an object")
    if _too_deep(body, MAX_DEPTH):
        return Rejected("too_deep", f"body nests deeper than {MAX_DEPTH} levels")
    problem = _routing_problem(body, "")
    shared_event = body.get("is_ext_shared_channel") is True and body.get("type") == "event_callback"
    # Bolt's actor-id extraction reads `event` of a shared channel's event without checking it.
    if problem is None and shared_event and not isinstance(body.get("event", {}), dict):
        problem = "event is not an object in a shared channel's event"
    return None if problem is None else Rejected("invalid_field", problem)


def _too_deep(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, dict | list))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return False


def _routing_problem(payload: dict[str, Any], where: str) -> str | None:
    for name in _ID_FIELDS:
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            return f"{where}{name} is {_kind(value)}, not a string"
    for name in _REFERENCE_FIELDS:
        value = payload.get(name)
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, dict):
            return f"{where}{name} is {_kind(value)}, not a string or an object"
        for inner in ("id", "team_id", "enterprise_id"):
            if value.get(inner) is not None and not isinstance(value.get(inner), str):
                return f"{where}{name}.{inner} is {_kind(value.get(inner))}, not a string"
    for name in ("authorizations", "response_urls"):
        value = payload.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return f"{where}{name} is not a list of objects"
        for index, item in enumerate(value[:1]):  # Bolt reads the first one only
            problem = _routing_problem(item, f"{where}{name}[{index}].")
            if problem is not None:
                return problem
    for name in _NESTED_FIELDS:
        value = payload.get(name)
        if isinstance(value, dict):
            problem = _routing_problem(value, f"{where}{name}.")
            if problem is not None:
                return problem
    return None


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def event_id_of(body: object) -> str | None:
    """The body's `event_id` when it is one Slack could have sent (ASCII, short), else None."""
    event_id = body.get("event_id") if isinstance(body, dict) else None
    return event_id if isinstance(event_id, str) and event_id.isascii() and len(event_id) <= 64 else None
