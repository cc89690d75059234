"""Slack event → contract, or a reasoned refusal: the one definition live ingest and import share.

Pure: no I/O, no clock, no globals. Every input, however odd, ends in exactly one outcome:

- `Accepted` — a `SlackMessage` / `SlackReaction` to publish, with any repairs made on the way
  (text truncated to Slack's 40,000-character limit, lone surrogates replaced);
- `Dropped` — a well-formed event BeepGPT deliberately ignores (bot posts, joins, topic changes,
  edits that change no text, ...), with the reason it is counted under;
- `Rejected` — an event that cannot be understood (a required field missing or of the wrong type,
  an unknown subtype or event type); it goes to the dead-letter topic with the reason, so it
  can be replayed once the normalizer learns it.

Reasons are short, fixed strings (metric label values); the detail is for logs and DLQ headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from beepgpt.contracts import SlackMessage, SlackReaction
from beepgpt.person_messages import SubtypeKind, subtype_kind
from beepgpt.topics import SLACK_MESSAGES
from ingest.settings import SLACK_MAX_TEXT_CHARS

# Which subtypes are a person's, a bot's, Slack's housekeeping or a change: `beepgpt.person_messages`,
# the rule the sessionizer applies too.

# DMs with the bot are not workspace conversations (and are nobody else's business).
PRIVATE_CHANNEL_TYPES = frozenset({"im", "mpim", "app_home"})

_TS = re.compile(r"\d{1,12}(\.\d{1,9})?")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Envelope:
    """What Slack says about a delivery rather than about the event itself."""

    event_id: str | None = None
    team: str | None = None
    event_time: float | None = None


@dataclass(frozen=True)
class Accepted:
    event: SlackMessage | SlackReaction
    repairs: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The record key on `slack.messages`: the channel (docs/topics-and-contracts.md), one channel, one
        partition, in order (`beepgpt.topics.SLACK_MESSAGES.key`)."""
        return SLACK_MESSAGES.key_of(self.event)


@dataclass(frozen=True)
class Dropped:
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


Outcome = Accepted | Dropped | Rejected


@dataclass(frozen=True)
class Rules:
    """What the normalizer is told about the workspace: its own bot and other known bot users."""

    bot_users: frozenset[str] = field(default_factory=frozenset)
    max_text_chars: int = SLACK_MAX_TEXT_CHARS


DEFAULT_RULES = Rules()


class _Refusal(Exception):
    """Internal: carries a Rejected/Dropped outcome out of nested field checks."""

    def __init__(self, outcome: Rejected | Dropped) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def normalize_event(event: Any, envelope: Envelope = Envelope(), rules: Rules = DEFAULT_RULES) -> Outcome:
    """The contract for one Slack event (the `event` object of an `event_callback`, or an export line)."""
    try:
        if event is None:
            return Rejected("missing_field", "event is missing")
        if not isinstance(event, Mapping):
            return Rejected("invalid_event", f"event is {type(event).__name__}, not an object")
        kind = event.get("type")
        if kind == "message":
            return _message(event, envelope, rules)
        if kind in ("reaction_added", "reaction_removed"):
            return _reaction(event, envelope, rules)
        if kind is None:
            return Rejected("missing_field", "event has no type")
        return Rejected("unknown_event_type", f"event type {_show(kind)} is not handled")
    except _Refusal as refusal:
        return refusal.outcome


# --- messages -------------------------------------------------------------------------------------


def _message(event: Mapping[str, Any], envelope: Envelope, rules: Rules) -> Outcome:
    subtype = _optional_str(event, "subtype")
    if subtype == "message_changed":
        return _edited(event, envelope, rules)
    if subtype == "message_deleted":
        return _deleted(event, envelope, rules)
    if subtype == "tombstone":  # a thread parent deleted while its replies stay
        return _deletion(event, _ts(event, "ts"), {}, envelope, rules)
    channel = _id(event, "channel")
    _check_channel_type(event)
    _check_author(event, subtype, rules)
    kind = subtype_kind(subtype)
    if kind is SubtypeKind.HOUSEKEEPING:
        return Dropped(subtype or "", f"{subtype} in {channel}")
    if kind is not SubtypeKind.PERSON:
        return Rejected("unknown_subtype", f"message subtype {_show(subtype)} is not handled")
    ts = _ts(event, "ts")
    text, repairs = _text(event, rules)
    message = SlackMessage(
        action="new",
        team=_team(event, envelope),
        channel=channel,
        ts=ts,
        thread_ts=_optional_ts(event, "thread_ts"),
        user=_id(event, "user"),
        text=text,
        subtype=subtype,
        event_id=envelope.event_id,
        event_time=float(ts),
    )
    return Accepted(message, repairs)


def _edited(event: Mapping[str, Any], envelope: Envelope, rules: Rules) -> Outcome:
    """`message_changed`: the new version is in `message`, the old one in `previous_message`.

    Slack also sends message_changed when nothing a person wrote changed (a link unfurled, a
    reply added to a thread): those are dropped as `unchanged_edit`.
    """
    channel = _id(event, "channel")
    _check_channel_type(event)
    new = _object(event, "message")
    previous = event.get("previous_message")
    inner_subtype = _optional_str(new, "subtype")
    if inner_subtype == "tombstone":
        return _deletion(
            event, _ts(new, "ts"), {"thread_ts": new.get("thread_ts")}, envelope, rules, channel=channel
        )
    _check_author(new, inner_subtype, rules)
    inner_kind = subtype_kind(inner_subtype)
    if inner_kind is not SubtypeKind.PERSON:
        if inner_kind is SubtypeKind.HOUSEKEEPING:
            return Dropped(inner_subtype or "", f"edit of a {inner_subtype} message")
        return Rejected("unknown_subtype", f"edited message subtype {_show(inner_subtype)} is not handled")
    ts = _ts(new, "ts")
    text, repairs = _text(new, rules)
    if isinstance(previous, Mapping) and previous.get("text", "") == new.get("text", ""):
        return Dropped("unchanged_edit", f"message_changed of {channel}/{ts} kept its text")
    edited = new.get("edited")
    edited_ts = _optional_ts(edited, "ts") if isinstance(edited, Mapping) else None
    message = SlackMessage(
        action="edited",
        team=_team(event, envelope),
        channel=channel,
        ts=ts,
        thread_ts=_optional_ts(new, "thread_ts"),
        user=_id(new, "user"),
        text=text,
        subtype=inner_subtype,
        event_id=envelope.event_id,
        event_time=_when(edited_ts, event, envelope),
    )
    return Accepted(message, repairs)


def _deleted(event: Mapping[str, Any], envelope: Envelope, rules: Rules) -> Outcome:
    channel = _id(event, "channel")
    _check_channel_type(event)
    previous = event.get("previous_message")
    return _deletion(
        event,
        _ts(event, "deleted_ts"),
        previous if isinstance(previous, Mapping) else {},
        envelope,
        rules,
        channel=channel,
    )


def _deletion(
    event: Mapping[str, Any],
    ts: str,
    about: Mapping[str, Any],
    envelope: Envelope,
    rules: Rules,
    *,
    channel: str | None = None,
) -> Outcome:
    """A deletion names the message by (channel, ts); what it said is gone on purpose.

    `about` is what Slack still tells about the deleted message (author, thread); a deleted bot
    message is dropped like the bot message itself was.
    """
    channel = channel or _id(event, "channel")
    _check_author(about, _optional_str(about, "subtype"), rules)
    user = about.get("user")
    message = SlackMessage(
        action="deleted",
        team=_team(event, envelope),
        channel=channel,
        ts=ts,
        thread_ts=_optional_ts(about, "thread_ts"),
        user=user if isinstance(user, str) and _ID.fullmatch(user) and user != "USLACKBOT" else None,
        text="",
        event_id=envelope.event_id,
        event_time=_when(None, event, envelope),
    )
    return Accepted(message)


# --- reactions ------------------------------------------------------------------------------------


def _reaction(event: Mapping[str, Any], envelope: Envelope, rules: Rules) -> Outcome:
    item = _object(event, "item")
    item_type = _optional_str(item, "type")
    if item_type != "message":
        return Dropped("reaction_not_on_message", f"reaction on a {_show(item_type)}")
    user = _id(event, "user")
    if user in rules.bot_users:
        return Dropped("bot", f"reaction by bot user {user}")
    reaction = _required_str(event, "reaction")
    if not reaction or _SURROGATE.search(reaction) or len(reaction) > 100:
        return Rejected("invalid_field", "reaction name is empty, too long or not valid text")
    action = "added" if event["type"] == "reaction_added" else "removed"
    return Accepted(
        SlackReaction(
            action=action,
            team=_team(event, envelope),
            channel=_id(item, "channel"),
            item_ts=_ts(item, "ts"),
            user=user,
            reaction=reaction,
            event_id=envelope.event_id,
            event_time=_when(_optional_ts(event, "event_ts"), event, envelope),
        )
    )


# --- fields ---------------------------------------------------------------------------------------


def _check_channel_type(event: Mapping[str, Any]) -> None:
    channel_type = event.get("channel_type")
    if channel_type in PRIVATE_CHANNEL_TYPES:
        raise _Refusal(Dropped("direct_message", f"channel_type {channel_type}"))


def _check_author(message: Mapping[str, Any], subtype: str | None, rules: Rules) -> None:
    """Bots (bot_message, any bot_id, a known bot user, Slackbot) never take part in conversations."""
    user = message.get("user")
    if (
        subtype_kind(subtype) is SubtypeKind.BOT
        or message.get("bot_id")
        or message.get("bot_profile")
        or user == "USLACKBOT"
        or (isinstance(user, str) and user in rules.bot_users)
    ):
        raise _Refusal(Dropped("bot", f"{subtype or 'message'} by a bot"))


def _text(message: Mapping[str, Any], rules: Rules) -> tuple[str, tuple[str, ...]]:
    """The text, cut to Slack's limit and with lone surrogates (invalid UTF-16) replaced by U+FFFD."""
    text = message.get("text")
    if text is None:
        return "", ()
    if not isinstance(text, str):
        raise _Refusal(Rejected("invalid_field", f"text is {type(text).__name__}, not a string"))
    repairs: list[str] = []
    if len(text) > rules.max_text_chars:
        text = text[: rules.max_text_chars]
        repairs.append("truncated")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
        repairs.append("replaced_surrogates")
    if "\x00" in text:  # valid JSON, but NUL bytes break many consumers (and Postgres, and logs)
        text = text.replace("\x00", "")
        repairs.append("removed_nul")
    return text, tuple(repairs)


def _object(event: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = event.get(name)
    if value is None:
        raise _Refusal(Rejected("missing_field", f"{name} is missing"))
    if not isinstance(value, Mapping):
        raise _Refusal(Rejected("invalid_field", f"{name} is {type(value).__name__}, not an object"))
    return value


def _required_str(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name)
    if value is None:
        raise _Refusal(Rejected("missing_field", f"{name} is missing"))
    if not isinstance(value, str):
        raise _Refusal(Rejected("invalid_field", f"{name} is {type(value).__name__}, not a string"))
    return value


def _optional_str(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _Refusal(Rejected("invalid_field", f"{name} is {type(value).__name__}, not a string"))


def _id(event: Mapping[str, Any], name: str) -> str:
    """A Slack id (channel, user): short, ASCII, no surprises; anything else is rejected."""
    value = _required_str(event, name)
    if not _ID.fullmatch(value):
        raise _Refusal(Rejected("invalid_field", f"{name} {_show(value)} is not a Slack id"))
    return value


def _ts(event: Mapping[str, Any], name: str) -> str:
    value = _required_str(event, name)
    if not _TS.fullmatch(value):
        raise _Refusal(Rejected("invalid_field", f"{name} {_show(value)} is not a Slack timestamp"))
    return value


def _optional_ts(event: Mapping[str, Any], name: str) -> str | None:
    return None if event.get(name) is None else _ts(event, name)


def _team(event: Mapping[str, Any], envelope: Envelope) -> str | None:
    team = envelope.team or event.get("team")
    return team if isinstance(team, str) and _ID.fullmatch(team) else None


def _when(ts: str | None, event: Mapping[str, Any], envelope: Envelope) -> float:
    """When it happened: the given ts, else the event's own ts, else Slack's delivery time."""
    if ts is not None:
        return float(ts)
    for name in ("event_ts", "ts"):
        value = event.get(name)
        if isinstance(value, str) and _TS.fullmatch(value):
            return float(value)
    if envelope.event_time is not None:
        return envelope.event_time
    raise _Refusal(Rejected("missing_field", "event has no event_ts, ts or event_time"))


def _show(value: object) -> str:
    """A value for a log line or DLQ header: short, printable, never a lone surrogate."""
    text = repr(value)
    return _SURROGATE.sub("\ufffd", text[:80])


def envelope_of(body: Mapping[str, Any]) -> Envelope:
    """The delivery facts of an Events API / Socket Mode `event_callback` body."""
    event_id = body.get("event_id")
    team = body.get("team_id")
    event_time = body.get("event_time")
    return Envelope(
        event_id=event_id if isinstance(event_id, str) and _ID.fullmatch(event_id) else None,
        team=team if isinstance(team, str) and _ID.fullmatch(team) else None,
        event_time=float(event_time) if isinstance(event_time, int | float) else None,
    )


def action_label(event: SlackMessage | SlackReaction) -> str:
    """`message.new`, `reaction.added`, ...: a bounded label for what was accepted."""
    return f"{event.kind}.{event.action}"
