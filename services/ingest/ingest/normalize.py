"""Slack event → contract, or a reasoned refusal: the one definition live ingest and import share.

Pure: no I/O, no clock, no globals. Every input, however odd, ends in exactly one outcome:

- `Accepted` — a `SlackMessage` / `SlackReaction` to publish, with any repairs made on the way
  (text truncated to Slack's 40,000-character limit, lone surrogates replaced);
- `Dropped` — a well-formed event BeepGPT deliberately ignores (bot posts, joins, topic changes,
  edits that change no text, messages of channels it does not read, ...), with the reason it is
  counted under;
- `Rejected` — an event that cannot be understood (a required field missing or of the wrong type,
  an unknown subtype or event type); it goes to the dead-letter topic with the reason, so it
  can be replayed once the normalizer learns it.

Reasons are short, fixed strings (metric label values); the detail is for logs and DLQ headers.

Which channels are read (`channel_policy`): public and shared ones; private channels only when
the rules allow them (`BEEPGPT_INGEST_PRIVATE_CHANNELS`); DMs and group DMs never. Every accepted
message carries its channel's kind (`SlackMessage.channel_kind`) so whoever quotes it later can
check who may read it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from beepgpt.contracts import MAX_SECONDS, ChannelKind, SlackMessage, SlackReaction
from beepgpt.person_messages import SubtypeKind, subtype_kind
from beepgpt.topics import SLACK_MESSAGES
from ingest.settings import SLACK_MAX_TEXT_CHARS, IngestSettings

# Which subtypes are a person's, a bot's, Slack's housekeeping or a change: `beepgpt.person_messages`,
# the rule the sessionizer applies too.

# Slack's `channel_type` of message events → who may read the channel. `app_home` is the bot's own
# DM with a person (the App Home messages tab).
CHANNEL_KINDS: Mapping[str, ChannelKind] = {
    "channel": "public",
    "group": "private",
    "im": "im",
    "app_home": "im",
    "mpim": "mpim",
}
# The reasons a message is not read because of its channel (`beepgpt_ingest_channel_skips_total`,
# the import's summary). DMs are nobody else's business, whatever the settings.
SKIP_PRIVATE_CHANNEL = "private_channel"
SKIP_DIRECT_MESSAGE = "direct_message"
SKIP_GROUP_DM = "group_dm"
CHANNEL_SKIP_REASONS = frozenset({SKIP_PRIVATE_CHANNEL, SKIP_DIRECT_MESSAGE, SKIP_GROUP_DM})

_TS = re.compile(r"\d{1,12}(\.\d{1,9})?")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Envelope:
    """What Slack says about a delivery rather than about the event itself.

    `ext_shared` is the envelope's `is_ext_shared_channel`: Slack says whether the channel is shared
    with another organization there, not in the event.
    """

    event_id: str | None = None
    team: str | None = None
    event_time: float | None = None
    ext_shared: bool = False


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
    """What the normalizer is told about the workspace: its own bot and other known bot users, and
    whether private channels are read (off unless a deployment says so: see `channel_policy`)."""

    bot_users: frozenset[str] = field(default_factory=frozenset)
    max_text_chars: int = SLACK_MAX_TEXT_CHARS
    private_channels: bool = False

    @classmethod
    def from_settings(cls, settings: IngestSettings, bot_users: frozenset[str] = frozenset()) -> Rules:
        """The rules a deployment's settings give: one place, so a new rule needs no caller changed."""
        return cls(
            bot_users=bot_users,
            max_text_chars=settings.max_text_chars,
            private_channels=settings.private_channels,
        )


DEFAULT_RULES = Rules()


def channel_policy(
    channel_type: str | None, *, ext_shared: bool, rules: Rules, channel: str = ""
) -> tuple[ChannelKind | None, str | None]:
    """(the channel's kind, the reason it is not read — None when it is read), from what Slack says.

    Private channels are skipped unless the rules allow them: a DM quoting one could reach someone
    who is not a member. DMs and group DMs are always skipped. A missing `channel_type` (export lines
    whose folder has no listing, older tables) gives an unknown kind, read: a reader of the record
    must treat None as unchecked. Only a `D` channel id is a DM whatever is said, as Slack ids go.
    """
    if channel_type is None:
        kind: ChannelKind | None = "im" if channel.startswith("D") else None
    else:
        kind = CHANNEL_KINDS[channel_type]
    if kind == "im":
        return kind, SKIP_DIRECT_MESSAGE
    if kind == "mpim":
        return kind, SKIP_GROUP_DM
    if kind == "private":  # shared or not, privacy is the stricter fact
        return kind, None if rules.private_channels else SKIP_PRIVATE_CHANNEL
    return ("shared" if ext_shared else kind), None


def channel_type_of(conversation: Mapping[str, Any]) -> str:
    """Slack's `channel_type` for a conversation object of the Web API (`conversations.list`,
    `.info`, `.join`), so that what `beepgpt import --from-slack` reads is decided by
    `channel_policy` like an event or an export folder: `im`, `mpim`, `group` (private) or
    `channel`. Anything that says it is private is private, whatever else it says."""
    if conversation.get("is_im"):
        return "im"
    if conversation.get("is_mpim"):
        return "mpim"
    if conversation.get("is_private") or conversation.get("is_group"):
        return "group"
    return "channel"


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
        channel = _id(event, "channel")
        channel_kind = _channel_kind(event, channel, envelope, rules)
        return _deletion(event, _ts(event, "ts"), {}, envelope, rules, channel=channel, kind=channel_kind)
    channel = _id(event, "channel")
    channel_kind = _channel_kind(event, channel, envelope, rules)
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
        channel_kind=channel_kind,
    )
    return Accepted(message, repairs)


def _edited(event: Mapping[str, Any], envelope: Envelope, rules: Rules) -> Outcome:
    """`message_changed`: the new version is in `message`, the old one in `previous_message`.

    Slack also sends message_changed when nothing a person wrote changed (a link unfurled, a
    reply added to a thread): those are dropped as `unchanged_edit`.
    """
    channel = _id(event, "channel")
    channel_kind = _channel_kind(event, channel, envelope, rules)
    new = _object(event, "message")
    previous = event.get("previous_message")
    inner_subtype = _optional_str(new, "subtype")
    if inner_subtype == "tombstone":
        about = {"thread_ts": new.get("thread_ts")}
        return _deletion(event, _ts(new, "ts"), about, envelope, rules, channel=channel, kind=channel_kind)
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
        channel_kind=channel_kind,
    )
    return Accepted(message, repairs)


def _deleted(event: Mapping[str, Any], envelope: Envelope, rules: Rules) -> Outcome:
    channel = _id(event, "channel")
    channel_kind = _channel_kind(event, channel, envelope, rules)
    previous = event.get("previous_message")
    return _deletion(
        event,
        _ts(event, "deleted_ts"),
        previous if isinstance(previous, Mapping) else {},
        envelope,
        rules,
        channel=channel,
        kind=channel_kind,
    )


def _deletion(
    event: Mapping[str, Any],
    ts: str,
    about: Mapping[str, Any],
    envelope: Envelope,
    rules: Rules,
    *,
    channel: str,
    kind: ChannelKind | None,
) -> Outcome:
    """A deletion names the message by (channel, ts); what it said is gone on purpose.

    `about` is what Slack still tells about the deleted message (author, thread); a deleted bot
    message is dropped like the bot message itself was.
    """
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
        channel_kind=kind,
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


def _channel_kind(
    event: Mapping[str, Any], channel: str, envelope: Envelope, rules: Rules
) -> ChannelKind | None:
    """The channel's kind, or the refusal of a channel that is not read (`channel_policy`).

    A `channel_type` Slack has not documented is rejected rather than guessed: read as public it
    could leak, dropped it would be lost; dead-lettered, it can be replayed once it is known. The
    detail names the channel and its type, never the text.
    """
    channel_type = _optional_str(event, "channel_type")
    if channel_type is not None and channel_type not in CHANNEL_KINDS:
        raise _Refusal(Rejected("invalid_field", f"channel_type {_show(channel_type)} is not known"))
    kind, skip = channel_policy(channel_type, ext_shared=envelope.ext_shared, rules=rules, channel=channel)
    if skip is not None:
        raise _Refusal(Dropped(skip, f"{channel} is {kind}"))
    return kind


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
    return Envelope(
        event_id=event_id if isinstance(event_id, str) and _ID.fullmatch(event_id) else None,
        team=team if isinstance(team, str) and _ID.fullmatch(team) else None,
        event_time=delivery_time(body.get("event_time")),
        ext_shared=body.get("is_ext_shared_channel") is True,
    )


# Slack's `event_time` is whole epoch seconds; one outside the contract's range (`Seconds`: below
# 2**32 s, in 2106, well inside what every reader can turn into int64 nanoseconds) or not a
# finite number is not a time Slack could have sent.
MAX_EVENT_TIME_S = float(MAX_SECONDS)


def delivery_time(value: object) -> float | None:
    """The envelope's `event_time` as seconds, or None when it is not a plausible epoch time: not a
    number, a bool, NaN or infinite, negative, or beyond `MAX_EVENT_TIME_S` (a 400-digit integer
    does not even convert to a float). It is only the fallback for an event without a ts of its
    own, so ignoring a bad one loses nothing: the event keeps its own ts, and an event with none
    is rejected (`missing_field`) to the dead-letter topic."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not 0 <= value < MAX_EVENT_TIME_S:
        return None  # before float(): a huge int raises OverflowError
    seconds = float(value)
    return seconds if math.isfinite(seconds) and 0 <= seconds < MAX_EVENT_TIME_S else None


def action_label(event: SlackMessage | SlackReaction) -> str:
    """`message.new`, `reaction.added`, ...: a bounded label for what was accepted."""
    return f"{event.kind}.{event.action}"
