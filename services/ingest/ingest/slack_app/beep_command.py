"""`/beep`: what people type to tell BeepGPT what they care about and when not to disturb them.

    /beep follow <topic>        /beep unfollow <n|all>     /beep list
    /beep pause <duration>      /beep resume               /beep quiet <from>-<to> [tz] | off
    /beep budget [n|default]    /beep digest [3x|1x|HH:MM,... [tz]|default]
    /beep digest real time | three times a day | once a day
    /beep mute [#channel]       /beep unmute <#channel|all>
    /beep on | off              /beep suggest              /beep help

`parse` and `apply` are pure (text -> command -> new `Preferences` and a reply); `register` wires
them to Bolt. Every answer is an ephemeral reply that says what changed or, for bad input, what
would work — never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiokafka.errors import KafkaError
from slack_bolt.async_app import AsyncApp

from beepgpt.contracts import (
    MAX_DAILY_BUDGET,
    MAX_DIGEST_TIMES,
    MAX_MUTED_CHANNELS,
    MAX_PAUSE_S,
    SCHEDULE_TIMES,
    SCHEDULE_WORDS,
    DigestSchedule,
    FollowedTopic,
    Preferences,
    QuietHours,
    TooManyMutes,
)
from beepgpt.settings import AlertDefaults
from ingest.slack_app.preferences_store import NotReady, PreferencesStore

log = logging.getLogger(__name__)

COMMAND = "/beep"
MAX_TOPIC_CHARS = 200
MAX_TOPICS = 20


DIGEST_PRESETS: dict[str, tuple[str, ...]] = {
    "3x": SCHEDULE_TIMES["three_times_a_day"],
    "1x": SCHEDULE_TIMES["once_a_day"],
}
"""`/beep digest 3x` and `1x` (and App Home's buttons): digest times three times a day, or each
morning — the times only; `/beep digest three times a day` is the digest-only schedule."""

SCHEDULE_SPELLINGS: dict[str, DigestSchedule] = {
    "real time": "real_time",
    "realtime": "real_time",
    "real-time": "real_time",
    "three times a day": "three_times_a_day",
    "3 times a day": "three_times_a_day",
    "three times daily": "three_times_a_day",
    "once a day": "once_a_day",
    "1 time a day": "once_a_day",
    "once daily": "once_a_day",
    "daily": "once_a_day",
}
"""How people write a digest schedule in plain words (`/beep digest once a day`)."""

_CHANNEL = re.compile(r"^<#([^|>\s]{1,64})(?:\|[^>]*)?>$|^([CG][A-Z0-9]{8,})$")
"""A channel as Slack escapes it in a command's text (`<#C0123|infra>`), or a bare channel id."""

BUILT_IN_DEFAULTS = AlertDefaults.model_construct()
"""The contract's defaults, for callers that were not given the deployment's (`AlertDefaults()`)."""

HELP = (
    "*BeepGPT* DMs you when a conversation you would want to join happens without you.\n"
    "• `/beep follow <topic>` — e.g. `/beep follow streaming technology decisions`\n"
    "• `/beep unfollow <n|all>` — stop following topic number _n_ (see `/beep list`)\n"
    "• `/beep list` — your topics and settings\n"
    "• `/beep suggest` — topics drawn from the conversations you took part in, each with a Follow button\n"
    "• `/beep pause <duration>` — e.g. `30m`, `2h`, `1d`, `1h30m`; `/beep resume` to undo\n"
    "• `/beep quiet 22:00-07:00 [time zone]` — daily quiet hours (`/beep quiet off` to remove);"
    " alerts held meanwhile arrive as one digest\n"
    f"• `/beep budget <0-{MAX_DAILY_BUDGET}>` — real-time DMs a day (0: digests only);"
    " the rest wait for your digest; `/beep budget default` to reset\n"
    "• `/beep digest 3x` (09:00, 13:00, 17:00), `1x` (09:00) or `08:30,16:00 [time zone]` —"
    " when your digest arrives; `/beep digest default` to reset\n"
    "• `/beep digest real time` (the default), `three times a day` or `once a day` — DMs as they"
    " happen, or digests only (quiet-hours alerts join the next one too)\n"
    "• `/beep mute #channel` / `/beep unmute #channel|all` — no alerts from a channel; `/beep mute`"
    " lists what is muted\n"
    "• `/beep budget` / `/beep digest` — your budget and digest times now\n"
    "• `/beep on` / `/beep off` — turn alerts on or off"
)


# --- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Follow:
    topic: str


@dataclass(frozen=True)
class Unfollow:
    which: int | Literal["all"]


@dataclass(frozen=True)
class ListAll:
    pass


@dataclass(frozen=True)
class Pause:
    seconds: int


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Quiet:
    start: str | None  # None: remove quiet hours
    end: str | None
    tz: str | None  # None: the person's own time zone (from Slack)


@dataclass(frozen=True)
class Budget:
    daily: int | None  # None: back to the deployment's default


@dataclass(frozen=True)
class Digest:
    times: tuple[str, ...] | None  # None: back to the deployment's default
    tz: str | None = None  # None: the person's own time zone (from Slack)


@dataclass(frozen=True)
class ShowSchedule:
    pass


@dataclass(frozen=True)
class Schedule:
    name: DigestSchedule


@dataclass(frozen=True)
class MuteChannel:
    channel: str


@dataclass(frozen=True)
class UnmuteChannel:
    channel: str | None  # None: everything muted


@dataclass(frozen=True)
class ShowMutes:
    pass


@dataclass(frozen=True)
class Alerts:
    on: bool


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Suggest:
    pass


@dataclass(frozen=True)
class Invalid:
    reply: str


Command = (
    Follow
    | Unfollow
    | ListAll
    | Pause
    | Resume
    | Quiet
    | Budget
    | Digest
    | ShowSchedule
    | Schedule
    | MuteChannel
    | UnmuteChannel
    | ShowMutes
    | Alerts
    | Help
    | Suggest
)


_DURATION_PART = re.compile(r"(\d+)\s*(weeks?|wks?|w|days?|d|hours?|hrs?|h|minutes?|mins?|m)", re.IGNORECASE)
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}
_CLOCK = re.compile(r"^(\d{1,2})(?::?(\d{2}))?$")


def unescape(text: str) -> str:
    """Slack escapes `&`, `<` and `>` in slash command text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_duration(text: str) -> int | None:
    """ "2h", "30 min", "1h30m", "1 day" -> seconds; None when it is not a duration."""
    compact = text.strip()
    if not compact:
        return None
    total = 0
    at = 0
    for match in _DURATION_PART.finditer(compact):
        if compact[at : match.start()].strip():
            return None
        total += int(match.group(1)) * _UNITS[match.group(2)[0].lower()]
        at = match.end()
    if at == 0 or compact[at:].strip():
        return None
    return total


def parse_clock(text: str) -> str | None:
    """ "7", "07", "7:30", "0730", "22:00" -> "HH:MM"; None when it is not a time of day."""
    match = _CLOCK.match(text.strip())
    if not match:
        return None
    hours, minutes = int(match.group(1)), int(match.group(2) or 0)
    if hours > 23 or minutes > 59:
        return None
    return f"{hours:02d}:{minutes:02d}"


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def parse(text: str) -> Command | Invalid:
    """The command a person typed after `/beep`."""
    text = unescape(text or "").strip()
    verb, _, rest = text.partition(" ")
    verb = verb.lower()
    rest = rest.strip()
    if verb in ("", "help", "?"):
        return Help()
    if verb == "follow":
        return _follow(rest)
    if verb == "unfollow":
        return _unfollow(rest)
    if verb in ("list", "ls", "status"):
        return ListAll()
    if verb in ("suggest", "suggestions", "suggested"):
        return Suggest()
    if verb == "pause":
        return _pause(rest)
    if verb in ("resume", "unpause"):
        return Resume()
    if verb == "quiet":
        return _quiet(rest)
    if verb == "budget":
        return _budget(rest)
    if verb in ("digest", "digests"):
        return _digest(rest)
    if verb == "mute":
        return _mute(rest)
    if verb == "unmute":
        return _unmute(rest)
    if verb in ("on", "start", "optin", "opt-in"):
        return Alerts(True)
    if verb in ("off", "stop", "optout", "opt-out"):
        return Alerts(False)
    shown = verb if len(verb) <= 30 else verb[:30] + "…"
    return Invalid(f"I don't know `/beep {_code(shown)}`.\n\n{HELP}")


def _follow(topic: str) -> Command | Invalid:
    topic = " ".join(topic.split())
    if not topic:
        return Invalid(
            "What should I follow? Describe it in your own words, e.g. "
            "`/beep follow streaming technology decisions`."
        )
    if len(topic) > MAX_TOPIC_CHARS:
        return Invalid(
            f"That topic is {len(topic):,} characters long; please keep it under {MAX_TOPIC_CHARS} — "
            "a short phrase matches best, e.g. `/beep follow database migration plans`."
        )
    return Follow(topic)


def _unfollow(rest: str) -> Command | Invalid:
    if rest.lower() == "all":
        return Unfollow("all")
    if rest.isdigit() and int(rest) >= 1:
        return Unfollow(int(rest))
    return Invalid("Which topic? Use its number from `/beep list` (e.g. `/beep unfollow 2`) or `all`.")


def _pause(rest: str) -> Command | Invalid:
    seconds = parse_duration(rest)
    if seconds is None or seconds <= 0:
        return Invalid("For how long? e.g. `/beep pause 30m`, `/beep pause 2h` or `/beep pause 1d`.")
    if seconds > MAX_PAUSE_S:
        return Invalid("I can pause for at most 30 days; use `/beep off` to stop alerts altogether.")
    return Pause(seconds)


def _quiet(rest: str) -> Command | Invalid:
    if rest.lower() in ("off", "none", "clear", "remove"):
        return Quiet(None, None, None)
    window, _, zone = rest.partition(" ")
    start_text, sep, end_text = window.partition("-")
    start, end = parse_clock(start_text), parse_clock(end_text)
    if not sep or start is None or end is None:
        return Invalid(
            "Give quiet hours as `<from>-<to>` in 24-hour time, e.g. `/beep quiet 22:00-07:00`"
            " (optionally with a time zone: `/beep quiet 22:00-07:00 Europe/Paris`), or `/beep quiet off`."
        )
    if start == end:
        return Invalid("Quiet hours need different start and end times; `/beep pause` covers whole days.")
    zone = zone.strip()
    if zone and not valid_zone(zone):
        return _unknown_zone(zone)
    return Quiet(start, end, zone or None)


def _unknown_zone(zone: str) -> Invalid:
    return Invalid(
        f"I don't know the time zone `{_code(zone[:60])}`; use a name like `Europe/Paris` or `America/New_York`."
    )


_RESET = ("default", "reset")


def _budget(rest: str) -> Command | Invalid:
    if not rest:
        return ShowSchedule()
    if rest.lower() in _RESET:
        return Budget(None)
    if rest.isdigit() and int(rest) <= MAX_DAILY_BUDGET:
        return Budget(int(rest))
    return Invalid(
        f"Give how many real-time DMs you want a day, from 0 to {MAX_DAILY_BUDGET} (0: digests only),"
        " e.g. `/beep budget 5`, or `/beep budget default`. The rest wait for your digest."
    )


def _mute(rest: str) -> Command | Invalid:
    if not rest:
        return ShowMutes()
    channel = _channel_id(rest)
    if channel is None:
        return Invalid(_WHICH_CHANNEL.format(verb="mute"))
    return MuteChannel(channel)


def _unmute(rest: str) -> Command | Invalid:
    if rest.lower() == "all":
        return UnmuteChannel(None)
    channel = _channel_id(rest)
    if channel is None:
        return Invalid(_WHICH_CHANNEL.format(verb="unmute") + " Or `/beep unmute all`.")
    return UnmuteChannel(channel)


_WHICH_CHANNEL = (
    "Which channel? Type `/beep {verb} #` and pick the channel from Slack's list, e.g. `/beep {verb} #infra`."
)


def _channel_id(text: str) -> str | None:
    match = _CHANNEL.match(text.strip())
    return None if match is None else match.group(1) or match.group(2)


def _digest(rest: str) -> Command | Invalid:
    if not rest:
        return ShowSchedule()
    if rest.lower() in _RESET:
        return Digest(None)
    spelled = SCHEDULE_SPELLINGS.get(" ".join(rest.lower().split()))
    if spelled is not None:
        return Schedule(spelled)
    # Times separated by commas and/or spaces, then perhaps a time zone: the last word when it
    # is neither a time nor a preset.
    typed = [w for w in re.split(r"[,\s]+", rest) if w]
    words = [w.lower().replace("×", "x") for w in typed]
    zone: str | None = None
    if len(words) > 1 and parse_clock(words[-1]) is None and words[-1] not in DIGEST_PRESETS:
        zone = typed[-1]  # as typed: zone names are case-sensitive
        if not valid_zone(zone):
            return _unknown_zone(zone)
        words = words[:-1]
    if len(words) == 1 and words[0] in DIGEST_PRESETS:
        return Digest(DIGEST_PRESETS[words[0]], zone)
    times = [parse_clock(word) for word in words]
    if not times or any(t is None for t in times):
        return Invalid(
            "When should your digest arrive? `/beep digest 3x` (09:00, 13:00 and 17:00), `/beep digest 1x`"
            " (09:00), or times in 24-hour time, e.g. `/beep digest 08:30,16:00` (optionally with a time"
            " zone: `/beep digest 08:30,16:00 Europe/Paris`), or `/beep digest default`."
        )
    chosen = tuple(sorted({t for t in times if t is not None}))
    if len(chosen) > MAX_DIGEST_TIMES:
        return Invalid(f"At most {MAX_DIGEST_TIMES} digests a day, please: each one is an interruption too.")
    return Digest(chosen, zone)


# --- applying a command to someone's preferences -------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The new preferences to save (None: nothing changed) and what to tell the person."""

    prefs: Preferences | None
    reply: str


def apply(
    command: Command,
    prefs: Preferences,
    now: float,
    *,
    user_tz: str | None = None,
    defaults: AlertDefaults = BUILT_IN_DEFAULTS,
) -> Result:
    """What a command does to a person's preferences, and the reply that says so.

    `user_tz` is the person's time zone as Slack knows it (None: not looked up, or Slack did not
    say). A change records it when the person has none yet, so that their digest times and the
    budget's day are read in their zone from their first command on.
    """
    if prefs.tz is None and user_tz is not None:
        # Answered in the zone that will be recorded; saved only with a change.
        return _apply(command, changed(prefs, tz=user_tz), now, user_tz=user_tz, defaults=defaults)
    return _apply(command, prefs, now, user_tz=user_tz, defaults=defaults)


def changed(prefs: Preferences, **update: Any) -> Preferences:
    """A copy with `update` applied and validated (`model_copy` would not check the bounds a
    reader will: a record out of them would be refused by every service)."""
    return Preferences.model_validate({**prefs.model_dump(), **update})


def wants_slack_zone(command: Command, prefs: Preferences) -> bool:
    """Whether answering needs the person's time zone from Slack (one users.info call)."""
    if isinstance(command, Help | ListAll | ShowSchedule | Suggest | ShowMutes):
        return False
    if isinstance(command, Quiet) and command.start is not None and command.tz is None:
        return True
    return prefs.tz is None


def _apply(
    command: Command, prefs: Preferences, now: float, *, user_tz: str | None, defaults: AlertDefaults
) -> Result:
    if isinstance(command, Help):
        return Result(None, HELP)
    if isinstance(command, Suggest):  # answered from the suggestions ingest keeps (`suggested.reply`)
        return Result(None, "I have no suggestions for you yet.")
    if isinstance(command, ListAll):
        return Result(None, describe(prefs, now, defaults))
    if isinstance(command, ShowSchedule):
        return Result(None, describe_schedule(prefs, defaults))
    if isinstance(command, Budget):
        return _set_budget(command, prefs, defaults)
    if isinstance(command, Digest):
        return _set_digest(command, prefs, defaults)
    if isinstance(command, Schedule):
        return _set_schedule(command, prefs, defaults)
    if isinstance(command, ShowMutes):
        return Result(None, describe_mutes(prefs, now))
    if isinstance(command, MuteChannel):
        if command.channel in prefs.muted_channels(now):
            return Result(None, f"<#{command.channel}> is already muted.")
        try:
            new = prefs.with_mute(command.channel, None, now)
        except TooManyMutes:
            return Result(None, f"You have {MAX_MUTED_CHANNELS} muted channels; `/beep unmute` one first.")
        return Result(
            new,
            f"🔕 Muted <#{command.channel}>: no alerts about its conversations."
            f" `/beep unmute <#{command.channel}>` to undo.",
        )
    if isinstance(command, UnmuteChannel):
        if not [m for m in prefs.mutes if m.active(now) and command.channel in (None, m.channel)]:
            which = "Nothing is" if command.channel is None else f"<#{command.channel}> isn't"
            return Result(None, f"{which} muted.")
        new = prefs.without_mute(command.channel, now)
        if command.channel is None:
            return Result(new, "Unmuted everything.")
        return Result(new, f"Unmuted <#{command.channel}>: its conversations may alert you again.")
    if isinstance(command, Follow):
        if any(t.text.casefold() == command.topic.casefold() for t in prefs.topics):
            return Result(None, f"You already follow “{_plain(command.topic)}”.")
        if len(prefs.topics) >= MAX_TOPICS:
            return Result(None, f"You follow {MAX_TOPICS} topics already; `/beep unfollow <n>` one first.")
        topic = FollowedTopic(id=uuid.uuid4().hex[:12], text=command.topic, created_at=now)
        new = prefs.model_copy(update={"topics": [*prefs.topics, topic], "opted_in": True})
        note = "" if prefs.opted_in else " Alerts are now on."
        return Result(
            new,
            f"Following “{_plain(command.topic)}”. I'll DM you when a conversation matches.{note}"
            " (`/beep list` shows everything you follow.)",
        )
    if isinstance(command, Unfollow):
        if not prefs.topics:
            return Result(None, "You don't follow any topics. Add one with `/beep follow <topic>`.")
        if command.which == "all":
            return Result(
                prefs.model_copy(update={"topics": []}), f"Stopped following all {len(prefs.topics)} topics."
            )
        if command.which > len(prefs.topics):
            return Result(None, f"You follow {len(prefs.topics)} topic(s); pick a number from `/beep list`.")
        gone = prefs.topics[command.which - 1]
        kept = [t for t in prefs.topics if t.id != gone.id]
        return Result(prefs.model_copy(update={"topics": kept}), f"Stopped following “{_plain(gone.text)}”.")
    if isinstance(command, Pause):
        until = now + command.seconds
        new = prefs.model_copy(update={"paused_until": until})
        return Result(
            new,
            f"Paused until {slack_date(until)}. Alerts meanwhile wait for one digest; `/beep resume` to undo.",
        )
    if isinstance(command, Resume):
        held = [t for t in (prefs.paused_until, prefs.snoozed_until) if t is not None and t > now]
        if not held:
            return Result(None, "Alerts aren't paused or snoozed.")
        return Result(
            prefs.model_copy(update={"paused_until": None, "snoozed_until": None}),
            "Resumed. Anything held while you were paused or snoozed arrives as one digest.",
        )
    if isinstance(command, Quiet):
        if command.start is None or command.end is None:
            if prefs.quiet_hours is None:
                return Result(None, "You have no quiet hours.")
            return Result(prefs.model_copy(update={"quiet_hours": None}), "Quiet hours removed.")
        quiet = QuietHours(start=command.start, end=command.end, tz=command.tz or user_tz or "UTC")
        return Result(
            prefs.model_copy(update={"quiet_hours": quiet}),
            f"Quiet hours set: {quiet.start}–{quiet.end} ({quiet.tz}), every day. "
            "Alerts in that window wait for one digest when it ends.",
        )
    if isinstance(command, Alerts):
        if command.on == prefs.opted_in:
            return Result(None, f"Alerts are already {'on' if command.on else 'off'}.")
        if command.on:
            return Result(
                prefs.model_copy(update={"opted_in": True}),
                "Alerts are on. Follow topics with `/beep follow <topic>`; I also learn from what you join.",
            )
        return Result(
            prefs.model_copy(update={"opted_in": False}),
            "Alerts are off: I won't DM you. `/beep on` turns them back on; your topics are kept.",
        )
    raise AssertionError(f"unhandled command {command!r}")


def _set_budget(command: Budget, prefs: Preferences, defaults: AlertDefaults) -> Result:
    if command.daily == prefs.daily_budget:
        return Result(None, f"Your daily budget is already {budget_text(prefs, defaults)}.")
    new = changed(prefs, daily_budget=command.daily)
    digest = f"your digest at {schedule_text(new, defaults)}"
    if new.daily_budget == 0:
        return Result(new, f"Daily budget set to 0: no real-time DMs; every alert waits for {digest}.")
    return Result(
        new,
        f"Daily budget set: {budget_text(new, defaults)}. What is over it waits for {digest}"
        " (digests never count against the budget).",
    )


def _set_digest(command: Digest, prefs: Preferences, defaults: AlertDefaults) -> Result:
    times = None if command.times is None else list(command.times)
    tz = command.tz or prefs.tz
    if times == prefs.digest_times and tz == prefs.tz:
        return Result(None, f"Your digest already arrives at {schedule_text(prefs, defaults)}.")
    new = changed(prefs, digest_times=times, tz=tz)
    return Result(
        new,
        f"Digest times set: {schedule_text(new, defaults)}, every day. Alerts over your daily budget"
        f" ({budget_text(new, defaults)}) arrive together at the next one.",
    )


def _set_schedule(command: Schedule, prefs: Preferences, defaults: AlertDefaults) -> Result:
    words = SCHEDULE_WORDS[command.name]
    new = prefs.with_schedule(command.name)
    if new.daily_budget == prefs.daily_budget and new.digest_times == prefs.digest_times:
        return Result(None, f"You already get alerts {words}.")
    if command.name == "real_time":
        return Result(
            new,
            f"Alerts in real time: DMs as conversations happen, up to {budget_text(new, defaults)};"
            f" the rest in digests at {schedule_text(new, defaults)}.",
        )
    return Result(
        new,
        f"Digest {words}: at {schedule_text(new, defaults)}, and no real-time DMs. Every alert —"
        " also those held by quiet hours, a pause or a snooze — joins the next digest."
        " `/beep digest real time` to undo.",
    )


def schedule_words(prefs: Preferences) -> str:
    """ "real time", "three times a day", "once a day", or "digests only" (times of one's own)."""
    schedule = prefs.schedule
    return "digests only" if schedule is None else SCHEDULE_WORDS[schedule]


def describe_mutes(prefs: Preferences, now: float) -> str:
    """What is muted, for `/beep mute` and `/beep list`."""
    channels = prefs.muted_channels(now)
    conversations = [m for m in prefs.mutes if m.conversation_id is not None and m.active(now)]
    lines = [
        f"Muted channels: {', '.join(f'<#{c}>' for c in channels)} — `/beep unmute #channel`."
        if channels
        else "No muted channels: `/beep mute #channel`."
    ]
    if conversations:
        lines.append(
            f"{len(conversations)} muted conversation(s), from their DMs (each for 30 days): "
            + ", ".join(f"<#{m.channel}>" for m in conversations[-5:])
        )
    return "\n".join(lines)


def budget_text(prefs: Preferences, defaults: AlertDefaults) -> str:
    """ "5 real-time DMs a day", "3 real-time DMs a day, the default", "0 real-time DMs (digests only)"."""
    daily = defaults.daily_budget if prefs.daily_budget is None else prefs.daily_budget
    text = (
        "0 real-time DMs (digests only)"
        if daily == 0
        else f"{daily} real-time DM{'' if daily == 1 else 's'} a day"
    )
    return text + (", the default" if prefs.daily_budget is None else "")


def schedule_text(prefs: Preferences, defaults: AlertDefaults) -> str:
    """ "09:00, 13:00 and 17:00 (Europe/Paris)", marked when it is the default schedule."""
    times = defaults.digest_times if prefs.digest_times is None else prefs.digest_times
    text = f"{_and(list(times))} ({_plain(prefs.zone_name)})"
    return text + (", the default" if prefs.digest_times is None else "")


def describe_schedule(prefs: Preferences, defaults: AlertDefaults) -> str:
    """The budget and digest lines of `/beep list`, also the answer to `/beep budget`/`digest`."""
    return (
        f"Alerts: {schedule_words(prefs)} — `/beep digest real time|three times a day|once a day`.\n"
        f"Daily budget: {budget_text(prefs, defaults)} — change with `/beep budget <n>`.\n"
        f"Digest: {schedule_text(prefs, defaults)} — alerts over the budget arrive then;"
        " change with `/beep digest 3x|1x|HH:MM,...`."
    )


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def describe(prefs: Preferences, now: float, defaults: AlertDefaults = BUILT_IN_DEFAULTS) -> str:
    """Everything someone has set, for `/beep list` and App Home."""
    lines = [f"Alerts are *{'on' if prefs.opted_in else 'off'}*."]
    if prefs.paused_until is not None and prefs.paused_until > now:
        lines.append(f"Paused until {slack_date(prefs.paused_until)}.")
    if prefs.quiet_hours is not None:
        q = prefs.quiet_hours
        lines.append(f"Quiet hours: {q.start}–{q.end} ({q.tz}).")
    if prefs.snoozed_until is not None and prefs.snoozed_until > now:
        lines.append(f"Snoozed until {slack_date(prefs.snoozed_until)}.")
    lines.append(describe_schedule(prefs, defaults))
    lines.append(describe_mutes(prefs, now))
    if prefs.topics:
        lines.append("Topics you follow:")
        lines += [f"{i}. {_plain(t.text)}" for i, t in enumerate(prefs.topics, start=1)]
    else:
        lines.append("You follow no topics yet: `/beep follow <topic>`.")
    return "\n".join(lines)


def slack_date(ts: float) -> str:
    """A time Slack shows in each reader's own time zone (with a UTC fallback)."""
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
    return f"<!date^{int(ts)}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _plain(text: str) -> str:
    """User text echoed in a reply: escaped so it cannot mention anyone or break formatting."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    return _plain(text).replace("`", "'")


# --- Bolt ----------------------------------------------------------------------------------------

OnChange = Callable[[str, Any], None]
"""Told (user, Bolt client) after a change; must not block: the ack waits for the listener."""

SuggestReply = Callable[[Preferences], dict[str, Any]]
"""`/beep suggest`'s answer (text and blocks) for a person's preferences (`suggested.reply`)."""


def register(
    app: AsyncApp,
    store: PreferencesStore,
    *,
    clock: Callable[[], float] = time.time,
    on_change: OnChange | None = None,
    write_timeout_s: float = 2.0,
    defaults: AlertDefaults = BUILT_IN_DEFAULTS,
    suggest_reply: SuggestReply | None = None,
) -> None:
    """`/beep` as a Bolt command listener; the reply is the ack's ephemeral payload."""

    async def on_beep(ack: Any, command: dict[str, Any], client: Any) -> None:
        user = str(command.get("user_id", ""))
        parsed = parse(str(command.get("text", "")))
        if isinstance(parsed, Invalid):
            await ack(text=parsed.reply)
            return
        if isinstance(parsed, Suggest) and suggest_reply is not None:
            try:
                await ack(**suggest_reply(store.get(user)))
            except NotReady:
                await ack(text="I'm just starting up — please try again in a few seconds.")
            return
        try:
            tz = await user_tz(client, user) if wants_slack_zone(parsed, store.get(user)) else None
            async with store.lock(user):
                result = apply(parsed, store.get(user), clock(), user_tz=tz, defaults=defaults)
                if result.prefs is not None:
                    await store.save(result.prefs, timeout=write_timeout_s)
        except NotReady:
            await ack(text="I'm just starting up — please try again in a few seconds.")
            return
        except (TimeoutError, KafkaError) as error:
            log.warning("could not save preferences", extra={"user": user, "error": repr(error)})
            await ack(text="Sorry, I couldn't save that just now. Please try again in a moment.")
            return
        except Exception:
            log.exception("/beep failed", extra={"user": user})
            await ack(text="Sorry, something went wrong on my side. Please try again.")
            return
        await ack(text=result.reply)
        if result.prefs is not None and on_change is not None:
            on_change(user, client)

    app.command(COMMAND)(on_beep)


async def user_tz(client: Any, user: str) -> str | None:
    """The person's time zone from Slack's profile; None when Slack does not answer quickly
    (or names no zone we know): nothing is recorded then, and the next change asks again."""
    try:
        response = await asyncio.wait_for(client.users_info(user=user), timeout=0.8)
        tz = (response.get("user") or {}).get("tz")
    except Exception:
        return None
    return tz if isinstance(tz, str) and valid_zone(tz) else None
