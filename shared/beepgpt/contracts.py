"""The events services exchange over Kafka: the one definition of every contract (docs/topics-and-contracts.md).

Every value on a topic is JSON made from one of these pydantic models. Each carries a
`schema_version` so a consumer can refuse (and dead-letter) a record written by a newer producer
instead of misreading it. Readers are tolerant of fields they do not know: a new optional field
needs no new version and rolls out in any order (a consumer still on older code reads the
record without it, rather than dead-lettering every record of the rollout); a change older code
would misread raises `SCHEMA_VERSION`, and a record of a newer version fails validation
everywhere it is decoded. Slack timestamps stay the strings Slack sends (`"1690797600.000100"`):
they are message identities, and a float would lose the microseconds that make them unique.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from datetime import time as clock
from typing import Annotated, Any, Final, Literal, TypeGuard, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SCHEMA_VERSION = 1


def now() -> float:
    """Wall-clock seconds; one name so tests and readers know which clock a field uses."""
    return time.time()


def ts_to_float(ts: str) -> float:
    """Slack ts → seconds since the epoch, for ordering and gaps (never for identity)."""
    return float(ts)


# --- field constraints every contract shares -------------------------------------------------------
# A record that breaks one of these is poison: the consumer's decode fails and the record goes to
# the dead-letter topic (the next one is processed). They say what every service computes with,
# once: nothing downstream has to re-check a timestamp, a time or a score.

MAX_SECONDS: Final = 2**32
"""Times and Slack timestamps stay below 2**32 s (the year 2106): the sessionizer's query holds
times as int64 nanoseconds, and no real event is that far out."""

MAX_TEXT_CHARS: Final = 40_000
"""Slack truncates a message's text at 40,000 characters; ingest cuts longer ones to this."""

MAX_PAUSE_S: Final = 30 * 24 * 3600
"""The longest `/beep pause`: 30 days."""

_TS = re.compile(r"[0-9]{1,10}(\.[0-9]{1,9})?", re.ASCII)


def _slack_ts(value: str) -> str:
    if not _TS.fullmatch(value) or int(value.partition(".")[0]) >= MAX_SECONDS:
        raise ValueError(f"{value[:40]!r} is not a Slack timestamp (seconds.micros, ASCII digits)")
    return value


SlackTs = Annotated[str, AfterValidator(_slack_ts)]
"""A Slack timestamp as Slack writes it (`"1690797600.000100"`): a message's identity in its
channel, kept as the string (a float would lose the microseconds)."""

Seconds = Annotated[float, Field(ge=0, lt=MAX_SECONDS, allow_inf_nan=False)]
"""Seconds since the epoch: finite, not negative, below MAX_SECONDS."""

Count = Annotated[int, Field(ge=0, lt=2**31)]

Version = Annotated[int, Field(ge=0, lt=2**63)]
"""A conversation's version: grows with every event (the sessionizer derives it from times, so
it is large), and fits a signed 64-bit integer wherever it is stored."""

Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]

def _score(value: float) -> float:
    # float32 cosines of identical vectors come out as 1.0000001: noise, not a wrong score
    if abs(value) > 1.0 + 1e-6:
        raise ValueError(f"a score is in [-1, 1], not {value!r}")
    return min(1.0, max(-1.0, value))


Score = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_score)]
"""A score a candidate or a click carries: finite and in [-1, 1] (topic scores are cosine
similarities, interest scores probabilities; float rounding within 1e-6 of a bound is clamped to
it), so that a tampered record cannot feed a learner or a DM an absurd number."""


def _pause_within_reach(value: float | None) -> float | None:
    # Relative to now, so a pause set long ago still reads back (it only gets further behind).
    if value is not None and value > now() + MAX_PAUSE_S + 86_400:
        raise ValueError(f"a pause ends at most {MAX_PAUSE_S // 86_400} days ahead")
    return value


PauseEnd = Annotated[Seconds | None, AfterValidator(_pause_within_reach)]


class Event(BaseModel):
    """Base of every contract: immutable, tolerant of unknown fields, versioned (see above)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)


# --- slack.messages -------------------------------------------------------------------------------

MessageAction = Literal["new", "edited", "deleted"]

ChannelKind = Literal["public", "private", "shared", "im", "mpim"]
"""Who may read a channel, as Slack describes it: `public` (any full member of the workspace),
`private` (its members: Slack's `channel_type: group`), `shared` (a Slack Connect channel, shared
with another organization: its members), `im` / `mpim` (a DM / group DM: its members). A private
channel that is also shared is `private`: privacy is the stricter fact."""


class SlackMessage(Event):
    """A message as BeepGPT understands it, whatever Slack event or export line it came from.

    `action` says what happened to the message identified by (channel, ts): an edit carries the
    new text, a deletion carries none. `event_id` is Slack's delivery id, used to drop Slack's
    retries; imports have none.

    `channel_kind` is who may read the channel (`ChannelKind`), so a reader that quotes the message
    to someone can check that they may see it. It is optional with the default None, meaning
    *unknown*, not *public*: records already on the topic were written before the field existed
    (when ingest still took private channels), and a message table carries no kind; a reader must
    treat None like a channel whose membership it has to check. Adding it as optional needs no new
    schema version (older readers skip it).
    """

    kind: Literal["message"] = "message"
    action: MessageAction = "new"
    team: str | None = None
    channel: str
    ts: SlackTs
    thread_ts: SlackTs | None = None
    user: str | None = None
    text: Text = ""
    subtype: str | None = None
    event_id: str | None = None
    event_time: Seconds = Field(default_factory=now, description="when it happened (edit time for edits)")
    channel_kind: ChannelKind | None = Field(
        default=None, description="who may read the channel; None: unknown (older records, tables)"
    )

    @property
    def in_thread(self) -> bool:
        """A reply belongs to its thread; a parent (thread_ts == ts) to the channel flow."""
        return self.thread_ts is not None and self.thread_ts != self.ts


ReactionAction = Literal["added", "removed"]


class SlackReaction(Event):
    """A reaction added to or removed from the message (channel, item_ts)."""

    kind: Literal["reaction"] = "reaction"
    action: ReactionAction = "added"
    team: str | None = None
    channel: str
    item_ts: SlackTs
    user: str
    reaction: str
    event_id: str | None = None
    event_time: Seconds = Field(default_factory=now)


SlackEvent = Annotated[SlackMessage | SlackReaction, Field(discriminator="kind")]
"""Value of `slack.messages`: either kind, told apart by `kind`."""

slack_event_adapter: TypeAdapter[SlackMessage | SlackReaction] = TypeAdapter(SlackEvent)


# --- conversations --------------------------------------------------------------------------------


class ConversationMessage(BaseModel):
    """One message as carried inside a conversation (already edited, never deleted)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ts: SlackTs
    user: str
    text: Text
    thread_ts: SlackTs | None = None
    reactions: Count = 0


def conversation_id(channel: str, first_ts: str, thread_ts: str | None = None) -> str:
    """`channel:first_ts` for a channel's flow (docs/conversations.md), `channel:thread_ts/thread` for a thread.

    Stable, readable and unique per workspace. A thread needs its own form: live, its parent
    arrives before anyone replies and may start a flow conversation, whose id is
    `channel:parent_ts` — with the same form, the thread would share that id, and the scorer's
    cache and the conversations' versions would mix two conversations. (The notifier does treat
    the two as one on purpose: one DM per opening message, `notifier.dedup.alert_subject`.)
    """
    if thread_ts is None:
        return f"{channel}:{first_ts}"
    return f"{channel}:{thread_ts}{THREAD_SUFFIX}"


THREAD_SUFFIX = "/thread"


def split_conversation_id(conversation_id: str) -> tuple[str, str, bool]:
    """(channel, ts of the first message, whether it is a thread) of a `conversation_id`."""
    body = conversation_id.removesuffix(THREAD_SUFFIX)
    channel, _, first_ts = body.partition(":")
    return channel, first_ts, len(body) < len(conversation_id)


def alert_subject(conversation_id: str) -> str:
    """What one DM covers: the conversation's channel and opening message, thread or not.

    A thread and the channel conversation its parent opened are one subject: live, the parent
    arrives before anyone replies, so it opens a channel conversation and then also starts its
    thread. The notifier's dedup key and a "Mute this conversation" both cover a subject."""
    channel, first_ts, _ = split_conversation_id(conversation_id)
    return f"{channel}:{first_ts}"


class ConversationEvent(Event):
    """The state of a conversation after a change (`updated`) or once it went quiet (`closed`).

    `messages` holds the latest MAX_MESSAGES messages; `message_count` counts all of them.
    `version` grows with every event of the same conversation, and keeps growing when a closed
    thread wakes up, so consumers can keep the newest and ignore stale redeliveries.
    """

    kind: Literal["updated", "closed"]
    conversation_id: str
    channel: str
    thread_ts: SlackTs | None = None
    first_ts: SlackTs
    last_ts: SlackTs
    version: Version
    messages: list[ConversationMessage]
    participants: list[str]
    message_count: Count
    reaction_count: Count = 0
    emitted_at: Seconds = Field(default_factory=now)


# --- notifications.candidates ---------------------------------------------------------------------

CandidateReason = Literal["interest", "topic"]


class PreviewLine(BaseModel):
    """A line of the DM's preview: who said what, raw Slack markup included."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    user: str
    text: Text
    ts: SlackTs


class Candidate(Event):
    """Someone who may want to hear about a conversation, and why (docs/scoring.md)."""

    user: str
    conversation_id: str
    version: Version
    channel: str
    thread_ts: SlackTs | None = None
    latest_ts: SlackTs
    score: Score
    reason: CandidateReason
    explanation: str
    topic_id: str | None = None
    model_version: str | None = None
    score_space: str | None = Field(
        default=None,
        max_length=200,
        description="for a topic alert, the embedding model its score was measured in",
    )
    preview: list[PreviewLine] = Field(default_factory=list)
    conversation_started_at: Seconds | None = None
    threshold: Score | None = Field(
        default=None,
        description=(
            "the bar `score` cleared in the scorer (a topic's line, the interest model's threshold): "
            "the notifier raises it for a person who asked for fewer such alerts (`raised_bar`)"
        ),
    )
    created_at: Seconds = Field(default_factory=now)


# --- notifications.sent ---------------------------------------------------------------------------

NotificationOutcome = Literal[
    "sent",
    "deduplicated",
    "rate_limited",
    "over_budget",
    "held",
    "digest",
    "not_opted_in",
    "failed",
    "not_permitted",
    "muted",
    "snoozed",
    "down_weighted",
]
"""`over_budget`: the person had their real-time DMs for the day; the alert waits for their next
digest time. `not_permitted`: the person may not read the conversation's channel (a guest, a
deactivated account or a bot, or not a member of a private or shared channel): nothing is sent or
held. The person's own controls (docs/notifications.md, *Controls*): `muted` — they muted the
conversation or its channel, nothing is sent or held; `snoozed` — they snoozed alerts from a DM,
the alert waits for a digest when the snooze ends; `down_weighted` — they asked for "fewer like
this" about the alert's topic or channel and its score no longer clears the bar raised for them.
(All added after the first seven: a reader older than them skips such records as invalid, which
the notifier's readers — App Home's recent alerts, the demo — can afford.)"""

NOTIFICATION_OUTCOMES: Final[tuple[NotificationOutcome, ...]] = get_args(NotificationOutcome)
"""Every outcome, in the order above: metric labels, dashboards and checks read this list."""


def is_notification_outcome(value: object) -> TypeGuard[NotificationOutcome]:
    """Whether `value` (read back from Redis, a log, a label) is one of the outcomes."""
    return value in NOTIFICATION_OUTCOMES


class Notification(Event):
    """The audit of one decision about a candidate: what was sent, or why not."""

    user: str
    conversation_id: str
    outcome: NotificationOutcome
    detail: str = ""
    reason: CandidateReason | None = None
    dm_channel: str | None = None
    dm_ts: SlackTs | None = None
    candidate_created_at: Seconds | None = None
    latest_ts: SlackTs | None = Field(default=None, description="the newest message the alert covered")
    decided_at: Seconds = Field(default_factory=now)


# --- user.preferences -----------------------------------------------------------------------------


class FollowedTopic(BaseModel):
    """A topic in the user's own words ("streaming technology decisions")."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    text: str
    created_at: Seconds = Field(default_factory=now)


CLOCK_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$"

ClockTime = Annotated[str, Field(pattern=CLOCK_PATTERN)]
"""A time of day, "HH:MM" on a 24-hour clock, read in the person's time zone."""


class QuietHours(BaseModel):
    """Daily window, in the user's time zone, when alerts wait for a digest."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    start: ClockTime
    end: ClockTime
    tz: str = "UTC"


MAX_DAILY_BUDGET = 50
"""Highest daily budget a person may choose: beyond it a budget no longer protects focus."""

MAX_DIGEST_TIMES = 6
"""Most digest times a day: more would be a stream of interruptions, which the budget prevents."""

DEFAULT_DAILY_BUDGET = 3
DEFAULT_DIGEST_TIMES: tuple[str, ...] = ("09:00", "13:00", "17:00")
"""What someone who never chose gets (`BEEPGPT_NOTIFIER_DAILY_BUDGET` / `_DIGEST_TIMES` override)."""


def _in_order(times: list[str]) -> list[str]:
    """One schedule has one spelling: times sorted, each once ("17:00,09:00,09:00" = "09:00,17:00")."""
    return sorted(set(times))


DigestTimes = Annotated[
    list[ClockTime], Field(min_length=1, max_length=MAX_DIGEST_TIMES), AfterValidator(_in_order)
]
"""When held alerts arrive as one digest DM, each day; never empty (held alerts must go out)."""


# --- a person's controls: mutes, "fewer like this", snoozes, a digest schedule -------------------
# Set from an alert's buttons, `/beep mute` and App Home (ingest); applied by the notifier, which
# audits each as its own outcome (docs/notifications.md, *Controls*). Every list is bounded: a
# conversation mute expires, channel mutes and weights are capped.

MAX_MUTED_CHANNELS: Final = 50
MAX_MUTED_CONVERSATIONS: Final = 50
"""At most this many muted conversations are kept; a new one pushes out the oldest."""
MUTE_CONVERSATION_S: Final = 30 * 24 * 3600
"""A muted conversation stays muted 30 days: as long as the notifier remembers having announced
it (its dedup key), after which a conversation that wakes up is news again."""

MAX_WEIGHTS: Final = 50
"""At most this many "fewer like this" weights are kept; a new one pushes out the oldest."""
FEWER_STEP: Final = 0.5
"""Each "fewer like this" halves the weight of the alert's topic (or, for an interest alert, its
channel): the bar an alert must clear moves half-way to certainty (`raised_bar`)."""
MIN_WEIGHT: Final = 0.125
"""Three clicks' worth: fewer, not none (that is what a mute is for)."""

SnoozeChoice = Literal["1h", "tomorrow"]
SNOOZE_MORNING: Final = "09:00"
""""Until tomorrow" ends at this time of the person's next day."""


class Mute(BaseModel):
    """A channel, or one conversation of it, the person does not want alerts about."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    channel: str = Field(min_length=1, max_length=64)
    conversation_id: str | None = Field(
        default=None, max_length=200, description="None: the whole channel"
    )
    until: Seconds | None = Field(default=None, description="None: until unmuted")
    created_at: Seconds = Field(default_factory=now)

    def active(self, at: float) -> bool:
        return self.until is None or self.until > at

    def covers(self, channel: str, conversation_id: str, at: float) -> bool:
        """Whether an alert about `conversation_id` of `channel` is muted by this, at `at`: a
        channel mute covers all its conversations, a conversation mute its subject (the flow
        and the thread its opening message started, `alert_subject`)."""
        if not self.active(at) or self.channel != channel:
            return False
        return self.conversation_id is None or alert_subject(self.conversation_id) == alert_subject(
            conversation_id
        )


class Weight(BaseModel):
    """How much of a topic (topic alerts) or a channel (interest alerts) the person wants."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic_id: str | None = Field(default=None, max_length=200)
    channel: str | None = Field(default=None, max_length=64)
    weight: float = Field(ge=MIN_WEIGHT, le=1.0, allow_inf_nan=False)
    updated_at: Seconds = Field(default_factory=now)

    def applies(self, reason: CandidateReason | None, channel: str, topic_id: str | None) -> bool:
        if reason == "topic" and topic_id is not None:
            return self.topic_id == topic_id
        return self.topic_id is None and self.channel == channel


def raised_bar(threshold: float, weight: float) -> float:
    """The score an alert must reach for a person whose weight on its topic or channel is
    `weight`: the scorer's bar moved `1 - weight` of the way to certainty (weight 1: unchanged;
    0.5: half-way). Raising the bar rather than lowering the score keeps the score the scorer
    learns from (a click's `FeedbackButton`) the scorer's own."""
    return threshold + (1.0 - threshold) * (1.0 - weight)


def snooze_end(choice: SnoozeChoice, at: float, zone_name: str) -> float:
    """When a snooze chosen at `at` ends: an hour later, or `SNOOZE_MORNING` of the person's
    next day (in their zone; an unknown zone is UTC)."""
    if choice == "1h":
        return at + 3600
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    tomorrow = datetime.fromtimestamp(at, zone).date() + timedelta(days=1)
    hours, minutes = (int(part) for part in SNOOZE_MORNING.split(":"))
    return datetime.combine(tomorrow, clock(hours, minutes), tzinfo=zone).timestamp()


DigestSchedule = Literal["real_time", "three_times_a_day", "once_a_day"]
"""How a person gets alerts, in plain words: `real_time` (the default: DMs as they happen,
within the daily budget, the rest in digests), or digests only, three times a day or once."""

SCHEDULE_TIMES: Final[dict[DigestSchedule, tuple[str, ...]]] = {
    "three_times_a_day": ("09:00", "13:00", "17:00"),
    "once_a_day": ("09:00",),
}
"""The digest times of the digest-only schedules. A schedule is the budget and digest times the
notifier already applies (daily budget 0: no real-time DM, every alert waits for a digest time)."""

SCHEDULE_WORDS: Final[dict[DigestSchedule, str]] = {
    "real_time": "real time",
    "three_times_a_day": "three times a day",
    "once_a_day": "once a day",
}


class Preferences(Event):
    """The whole preference record of a user; the compacted topic keeps the latest per user."""

    user: str
    opted_in: bool = False
    topics: list[FollowedTopic] = Field(default_factory=list)
    paused_until: PauseEnd = None
    quiet_hours: QuietHours | None = None
    daily_budget: int | None = Field(
        default=None,
        ge=0,
        le=MAX_DAILY_BUDGET,
        description="real-time DMs a day (0: digests only); None: the deployment's default",
    )
    digest_times: DigestTimes | None = Field(
        default=None, description="when held alerts arrive, each day; None: the deployment's default"
    )
    tz: str | None = Field(
        default=None,
        max_length=64,
        description="the person's time zone (IANA name, from Slack), for digest times and the budget's day",
    )
    snoozed_until: PauseEnd = Field(default=None, description="a DM's Snooze: alerts wait until then")
    mutes: list[Mute] = Field(
        default_factory=list, max_length=MAX_MUTED_CHANNELS + MAX_MUTED_CONVERSATIONS
    )
    weights: list[Weight] = Field(default_factory=list, max_length=MAX_WEIGHTS)
    updated_at: Seconds = Field(default_factory=now)

    # --- controls: what the notifier reads, and the bounded updates ingest writes ---------------

    def muted_by(self, channel: str, conversation_id: str, at: float) -> Mute | None:
        """The mute that covers an alert about `conversation_id` at `at`, if any."""
        return next((m for m in self.mutes if m.covers(channel, conversation_id, at)), None)

    def muted_channels(self, at: float) -> list[str]:
        return [m.channel for m in self.mutes if m.conversation_id is None and m.active(at)]

    def weight_of(self, reason: CandidateReason | None, channel: str, topic_id: str | None) -> Weight | None:
        """The weight on a topic alert's topic, or an interest alert's channel, if the person set one."""
        return next((w for w in self.weights if w.applies(reason, channel, topic_id)), None)

    def with_mute(self, channel: str, conversation_id: str | None, at: float) -> Preferences:
        """Muted as well: a channel (raises `TooManyMutes` past `MAX_MUTED_CHANNELS`) or one of
        its conversations for `MUTE_CONVERSATION_S` (the oldest pushed out past
        `MAX_MUTED_CONVERSATIONS`); expired mutes are dropped on the way."""
        kept = [m for m in self.mutes if m.active(at)]
        if conversation_id is None:
            if channel in [m.channel for m in kept if m.conversation_id is None]:
                return self._with(mutes=kept)
            if sum(m.conversation_id is None for m in kept) >= MAX_MUTED_CHANNELS:
                raise TooManyMutes(f"at most {MAX_MUTED_CHANNELS} muted channels")
            kept = [m for m in kept if m.channel != channel]  # the channel mute covers them
            return self._with(mutes=[*kept, Mute(channel=channel, created_at=at)])
        subject = alert_subject(conversation_id)
        others = [m for m in kept if m.conversation_id is None or alert_subject(m.conversation_id) != subject]
        conversations = [m for m in others if m.conversation_id is not None][-(MAX_MUTED_CONVERSATIONS - 1) :]
        channels = [m for m in others if m.conversation_id is None]
        mute = Mute(
            channel=channel, conversation_id=conversation_id, until=at + MUTE_CONVERSATION_S, created_at=at
        )
        return self._with(mutes=[*channels, *conversations, mute])

    def without_mute(self, channel: str | None, at: float) -> Preferences:
        """Unmuted: one channel (and its conversations), or everything (`channel` None)."""
        kept = [m for m in self.mutes if m.active(at) and channel is not None and m.channel != channel]
        return self._with(mutes=kept)

    def with_fewer(
        self, reason: CandidateReason | None, channel: str, topic_id: str | None, at: float
    ) -> tuple[Preferences, Weight]:
        """One "fewer like this": the weight on the alert's topic (a topic alert) or its channel
        (an interest alert) times `FEWER_STEP`, floored at `MIN_WEIGHT`; the oldest weight is
        pushed out past `MAX_WEIGHTS`."""
        current = self.weight_of(reason, channel, topic_id)
        weight = Weight(
            topic_id=topic_id if reason == "topic" and topic_id is not None else None,
            channel=None if reason == "topic" and topic_id is not None else channel,
            weight=max(MIN_WEIGHT, (current.weight if current else 1.0) * FEWER_STEP),
            updated_at=at,
        )
        others = [w for w in self.weights if w is not current][-(MAX_WEIGHTS - 1) :]
        return self._with(weights=[*others, weight]), weight

    def without_weights(self) -> Preferences:
        return self._with(weights=[])

    @property
    def schedule(self) -> DigestSchedule | None:
        """The person's schedule in plain words; None when it is one of their own (a budget of 0
        with digest times of their choosing)."""
        if self.daily_budget != 0:
            return "real_time"
        times = tuple(self.digest_times or ())
        return next((name for name, preset in SCHEDULE_TIMES.items() if preset == times), None)

    def with_schedule(self, schedule: DigestSchedule) -> Preferences:
        """Real time (the deployment's budget and digest times), or digests only at the
        schedule's times."""
        if schedule == "real_time":
            return self._with(daily_budget=None, digest_times=None)
        return self._with(daily_budget=0, digest_times=list(SCHEDULE_TIMES[schedule]))

    def _with(self, **update: Any) -> Preferences:
        """A copy with `update` applied and validated (bounds included)."""
        return Preferences.model_validate({**self.model_dump(), **update})

    @property
    def zone_name(self) -> str:
        """The zone this person's days and digest times are read in: their own, else that of
        their quiet hours (the zone they gave last), else UTC. Unknown names fall back to UTC
        where they are used (`notifier.quiet_hours.zone`)."""
        if self.tz:
            return self.tz
        return self.quiet_hours.tz if self.quiet_hours is not None else "UTC"


class TooManyMutes(ValueError):
    """A person has `MAX_MUTED_CHANNELS` muted channels already."""


# --- user.suggestions -----------------------------------------------------------------------------

MAX_SUGGESTED_TOPICS = 10
SUGGEST_ACTION: Final = "beepgpt_suggest_follow"
"""The action id of a suggestion's Follow button (in `/beep suggest`'s reply and in App Home);
its value is the suggestion's name, followed as a topic sentence."""


class SuggestionExample(BaseModel):
    """A conversation behind a suggested topic, as people recognise it: where, when, how it began."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    conversation_id: str
    channel: str
    first_ts: SlackTs
    first_line: str = Field(default="", max_length=400)


class SuggestedTopic(BaseModel):
    """A topic drawn from a person's own public conversations: a few plain words to follow."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    conversations: Count
    """how many of the person's conversations it groups"""
    examples: list[SuggestionExample] = Field(default_factory=list, max_length=5)


class Suggestions(Event):
    """A person's suggested topics, best first; the compacted topic keeps the latest per user.

    Computed from the public conversations the person wrote in (`scorer.suggestions`), by
    `beepgpt suggest --publish`; read by ingest's Slack app (`/beep suggest`, App Home)."""

    user: str
    topics: list[SuggestedTopic] = Field(default_factory=list, max_length=MAX_SUGGESTED_TOPICS)
    conversations: Count = 0
    """how many conversations of the person they were drawn from"""
    computed_at: Seconds = Field(default_factory=now)


# --- feedback -------------------------------------------------------------------------------------


class Feedback(Event):
    """A "useful" / "not useful" click on a DM; training and topic calibration learn from it."""

    user: str
    conversation_id: str
    useful: bool
    reason: CandidateReason | None = None
    topic_id: str | None = None
    score: Score | None = Field(
        default=None,
        description=(
            "the alerted candidate's score (for a topic alert, its topic score), carried by the "
            "DM's button so that a click teaches without the scorer having to remember the score"
        ),
    )
    score_space: str | None = Field(
        default=None,
        max_length=200,
        description=(
            "the embedding model `score` was measured in: after a model change, scores of the "
            "old one do not compare with new ones, and the scorer leaves them out"
        ),
    )
    at: Seconds = Field(default_factory=now)


# --- DM buttons (notifier → Slack → ingest) -------------------------------------------------------

USEFUL_ACTION: Final = "beepgpt_feedback_useful"
NOT_USEFUL_ACTION: Final = "beepgpt_feedback_not_useful"
FEEDBACK_ACTIONS: Final[tuple[str, str]] = (USEFUL_ACTION, NOT_USEFUL_ACTION)
"""The `action_id`s of an alert's "Useful" / "Not useful" buttons; both carry a `FeedbackButton`."""
OPEN_ACTION: Final = "beepgpt_open_conversation"
"""The `action_id` of the link button: Slack opens the URL and still reports the click."""

MUTE_ACTION: Final = "beepgpt_mute_conversation"
FEWER_ACTION: Final = "beepgpt_fewer_like_this"
SNOOZE_ACTIONS: Final[dict[SnoozeChoice, str]] = {"1h": "beepgpt_snooze_1h", "tomorrow": "beepgpt_snooze_tomorrow"}
CONTROL_ACTIONS: Final[tuple[str, ...]] = (MUTE_ACTION, FEWER_ACTION, *SNOOZE_ACTIONS.values())
"""The `action_id`s of an alert's controls (*Mute this conversation*, *Fewer like this*,
*Snooze 1 hour* / *until tomorrow*); each carries the alert's `FeedbackButton` as its value, so
ingest knows which conversation, channel and topic the click is about."""

CARRIED_FIELDS: Final[frozenset[str]] = frozenset({"score", "space"})
"""Fields of a button value a click can do without: when one cannot be right, it is dropped and the
click still counts (the others are what the click is about; without them it means nothing)."""


class UnreadableButton(ValueError):
    """A button value that is not one the notifier wrote (nor could have)."""


class FeedbackButton(BaseModel):
    """The JSON `value` of an alert's feedback buttons: the `Feedback` fields the DM knows.

    The notifier writes it into the DM (`from_candidate`, then `encode`); Slack hands it back
    unchanged on a click, and ingest reads it (`decode`) into a `Feedback` (`feedback`). It lives
    in people's DMs for as long as they keep them, so the wire form never changes meaning: the
    keys are `Feedback`'s own names except `space` (for `score_space`, short because a value
    holds at most 2,000 characters), new keys are optional, and no `schema_version` is written
    (the DMs sent so far have none). Anyone who can reach the app's endpoint can send any value,
    so nothing in it is trusted beyond this shape: the score must be a real number (not a bool,
    not a string) that is finite and in [-1, 1] (`Score`).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    conversation_id: str
    reason: CandidateReason | None = None
    topic_id: str | None = None
    score: Annotated[Score, Field(strict=True)] | None = Field(
        default=None, description="the alerted candidate's score (a topic alert's: its topic score)"
    )
    score_space: str | None = Field(
        default=None,
        alias="space",
        min_length=1,
        max_length=200,
        description="the embedding model `score` was measured in",
    )

    @classmethod
    def from_candidate(cls, candidate: Candidate) -> FeedbackButton:
        """What an alert's buttons carry for `candidate`.

        The score travels so that a click teaches the scorer's topic line even when no scorer
        instance still remembers it (scored before a restart, or elsewhere), rounded to 6
        decimals (far finer than a line is learnt at) to stay short (the contract keeps a
        candidate's score finite and in [-1, 1], so it always fits the button's).
        """
        return cls(
            conversation_id=candidate.conversation_id,
            reason=candidate.reason,
            topic_id=candidate.topic_id,
            score=round(candidate.score, 6),
            score_space=candidate.score_space or None,
        )

    def encode(self) -> str:
        """The compact JSON for the button's `value`, absent fields left out.

        ASCII-only (`json.dumps`' escapes), as the DMs sent so far were written: any text, lone
        surrogates included, encodes, and the length Slack counts is the length of this string."""
        fields = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str) -> tuple[FeedbackButton, frozenset[str]]:
        """The value a click sent back, and which `CARRIED_FIELDS` were dropped as impossible.

        Raises `UnreadableButton` when it is not a value of ours: not a JSON object, no
        `conversation_id`, a field of the wrong type (other than the carried ones)."""
        try:
            value: Any = json.loads(raw)
        except (ValueError, RecursionError) as error:  # RecursionError: "[[[[…" nested too deep
            raise UnreadableButton(f"not JSON: {type(error).__name__}") from error
        if not isinstance(value, dict):
            raise UnreadableButton(f"a JSON {type(value).__name__}, not an object")
        try:
            return cls.model_validate(value), frozenset()
        except ValidationError as error:
            wrong = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
            if not wrong or not wrong <= CARRIED_FIELDS:
                raise UnreadableButton(str(error)) from error
        kept = {k: v for k, v in value.items() if k not in wrong}
        try:
            return cls.model_validate(kept), frozenset(wrong)
        except ValidationError as error:
            raise UnreadableButton(str(error)) from error

    def feedback(self, user: str, action_id: str) -> Feedback:
        """The `Feedback` a click on the button `action_id` by `user` means."""
        return Feedback(
            user=user,
            conversation_id=self.conversation_id,
            useful=action_id == USEFUL_ACTION,
            reason=self.reason,
            topic_id=self.topic_id,
            score=self.score,
            score_space=self.score_space,
        )
