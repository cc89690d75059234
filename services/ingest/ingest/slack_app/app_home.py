"""The App Home tab: alerts on/off, pause and snooze, quiet hours, how alerts arrive (real time,
three times a day, once a day), daily budget and digest times, what is muted and what the person
asked fewer of (with Unmute / Reset buttons), followed topics, suggested topics (with Follow
buttons, `suggested.py`) and recent alerts.

Published with views.publish when the person opens the tab and after every change they make
there (buttons) or with `/beep`. `home_view` is pure; `register` wires the event and buttons.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from beepgpt.contracts import (
    SCHEDULE_WORDS,
    Notification,
    Preferences,
    Suggestions,
    split_conversation_id,
)
from beepgpt.settings import AlertDefaults
from ingest.slack_app.beep_command import (
    BUILT_IN_DEFAULTS,
    DIGEST_PRESETS,
    MAX_TOPICS,
    budget_text,
    changed,
    describe_mutes,
    schedule_text,
    schedule_words,
    slack_date,
    user_tz,
)
from ingest.slack_app.preferences_store import NotReady, PreferencesStore
from ingest.slack_app.recent_alerts import RecentAlerts
from ingest.slack_app.suggested import NONE_YET, SuggestionsStore, suggestion_blocks, visible

log = logging.getLogger(__name__)

TOGGLE_ACTION = "beepgpt_home_toggle"
RESUME_ACTION = "beepgpt_home_resume"
UNFOLLOW_ACTION = "beepgpt_home_unfollow"
BUDGET_ACTION = "beepgpt_home_budget"
DIGEST_ACTION = "beepgpt_home_digest"
SCHEDULE_ACTION = "beepgpt_home_schedule"
UNMUTE_ACTION = "beepgpt_home_unmute"
RESET_WEIGHTS_ACTION = "beepgpt_home_reset_fewer"
MAX_VIEW_BLOCKS = 100

BUDGET_CHOICES = (0, 1, 3, 5, 10)
"""App Home's budget buttons (any other value: `/beep budget <n>`)."""
DIGEST_CHOICES = (("3x", "3× a day"), ("1x", "Once a day"))
DEFAULT = "default"

MAX_SECTION = 3_000
MAX_BUTTON_VALUE = 2_000


def _section(text: str, accessory: ButtonElement | None = None) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text[:MAX_SECTION]), accessory=accessory)


def _button(text: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(text=text, action_id=action_id, value=value[:MAX_BUTTON_VALUE], style=style)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _choices(action_id: str, options: Sequence[tuple[str, str]], current: str) -> Block:
    """A row of buttons, the person's current choice marked."""
    return ActionsBlock(
        block_id=action_id,
        elements=[
            _button(text, f"{action_id}:{value}", value, "primary" if value == current else None)
            for value, text in options
        ],
    )


def schedule_blocks(prefs: Preferences, defaults: AlertDefaults) -> list[Block]:
    """How alerts arrive, in plain words, with a button for each schedule."""
    current = prefs.schedule or ""
    return [
        _section(
            f"*Alerts arrive*: {schedule_words(prefs)}. Digests only means no real-time DMs: every"
            " alert, quiet-hours ones too, joins the next digest."
        ),
        _choices(SCHEDULE_ACTION, [(name, words.capitalize()) for name, words in SCHEDULE_WORDS.items()], current),
    ]


ALL = "all"
CONVERSATIONS = "conversations"
"""App Home's Unmute value for every conversation muted from a DM (the channels stay muted)."""


def _weighed(prefs: Preferences) -> list[str]:
    topics = {t.id: t.text for t in prefs.topics}
    lines = []
    for w in prefs.weights[-10:]:
        if w.topic_id is not None:
            what = f"“{_escape(topics.get(w.topic_id, 'a topic you no longer follow'))}”"
        else:
            what = f"<#{w.channel}>"
        lines.append(f"• {what} — weight {w.weight:g}")
    return lines


def control_blocks(prefs: Preferences, now: float) -> list[Block]:
    """What the person muted (Unmute buttons) and asked fewer of (a Reset button)."""
    blocks: list[Block] = [_section(f"*Muted* — {describe_mutes(prefs, now)}")]
    for channel in prefs.muted_channels(now)[:20]:
        blocks.append(_section(f"<#{channel}>", _button("Unmute", UNMUTE_ACTION, channel)))
    if any(m.conversation_id is not None and m.active(now) for m in prefs.mutes):
        blocks.append(
            _section("Conversations muted from their DMs", _button("Unmute them", UNMUTE_ACTION, CONVERSATIONS))
        )
    if prefs.weights:
        blocks.append(
            _section(
                "*Fewer like this* — these need a closer match or a stronger signal:\n"
                + "\n".join(_weighed(prefs)),
                _button("Reset", RESET_WEIGHTS_ACTION, ALL),
            )
        )
    return blocks


def budget_blocks(prefs: Preferences, defaults: AlertDefaults) -> list[Block]:
    """The daily budget and the digest schedule, each with its buttons."""
    budgets = [(str(n), "0 (digests only)" if n == 0 else str(n)) for n in BUDGET_CHOICES]
    budget_now = DEFAULT if prefs.daily_budget is None else str(prefs.daily_budget)
    presets = {times: name for name, times in DIGEST_PRESETS.items()}
    digest_now = DEFAULT if prefs.digest_times is None else presets.get(tuple(prefs.digest_times), "")
    return [
        _section(
            f"*Daily budget*: {budget_text(prefs, defaults)}. Alerts over it wait for your digest;"
            " digests never count. Other values: `/beep budget <n>`."
        ),
        _choices(BUDGET_ACTION, [*budgets, (DEFAULT, f"Default ({defaults.daily_budget})")], budget_now),
        _section(f"*Digest*: {schedule_text(prefs, defaults)}. Other times: `/beep digest 08:30,16:00`."),
        _choices(DIGEST_ACTION, [*DIGEST_CHOICES, (DEFAULT, "Default")], digest_now),
    ]


def home_view(
    prefs: Preferences,
    alerts: Sequence[Notification],
    now: float,
    defaults: AlertDefaults = BUILT_IN_DEFAULTS,
    suggestions: Suggestions | None = None,
) -> dict[str, Any]:
    """The Home tab for one person (pure: preferences, their recent alerts, their suggested
    topics, the time), as the JSON views.publish takes; built from slack_sdk's Block Kit models,
    which check each block."""
    blocks: list[Block] = [HeaderBlock(text="BeepGPT")]
    if prefs.opted_in:
        blocks.append(
            _section(
                "Alerts are *on*: I DM you when a conversation you'd want to join happens without you.",
                _button("Turn off", TOGGLE_ACTION, "off", "danger"),
            )
        )
    else:
        blocks.append(
            _section(
                "Alerts are *off*: I won't DM you.", _button("Turn on alerts", TOGGLE_ACTION, "on", "primary")
            )
        )
    if prefs.paused_until is not None and prefs.paused_until > now:
        blocks.append(
            _section(
                f"Paused until {slack_date(prefs.paused_until)}.", _button("Resume", RESUME_ACTION, "resume")
            )
        )
    if prefs.snoozed_until is not None and prefs.snoozed_until > now:
        blocks.append(
            _section(
                f"Snoozed until {slack_date(prefs.snoozed_until)}.", _button("Resume", RESUME_ACTION, "resume")
            )
        )
    if prefs.quiet_hours is not None:
        q = prefs.quiet_hours
        blocks.append(
            _section(f"Quiet hours: {q.start}–{q.end} ({_escape(q.tz)}) — change with `/beep quiet`.")
        )
    else:
        blocks.append(_section("No quiet hours. Set some with `/beep quiet 22:00-07:00`."))
    blocks.append(DividerBlock())
    blocks += schedule_blocks(prefs, defaults)
    blocks += budget_blocks(prefs, defaults)
    blocks.append(DividerBlock())
    blocks += control_blocks(prefs, now)
    blocks.append(DividerBlock())
    blocks.append(_section(f"*Topics you follow* ({len(prefs.topics)}/{MAX_TOPICS})"))
    if prefs.topics:
        for topic in prefs.topics[:MAX_TOPICS]:
            blocks.append(_section(_escape(topic.text), _button("Unfollow", UNFOLLOW_ACTION, topic.id)))
    else:
        blocks.append(_section("None yet. Try `/beep follow streaming technology decisions`."))
    blocks.append(DividerBlock())
    blocks.append(_section("*Suggested topics* — from the public conversations you took part in"))
    shown = visible(prefs, suggestions)
    if shown and len(prefs.topics) < MAX_TOPICS:
        blocks += suggestion_blocks(shown)
    elif shown:
        blocks.append(_section(f"You follow {MAX_TOPICS} topics already; unfollow one to follow a suggestion."))
    else:
        blocks.append(_section(NONE_YET if suggestions is None or not suggestions.topics else "Nothing new to suggest."))
    blocks.append(DividerBlock())
    blocks.append(_section("*Recent alerts*"))
    if alerts:
        lines = []
        for alert in alerts:
            channel, first_ts, thread = split_conversation_id(alert.conversation_id)
            started = f" started {slack_date(float(first_ts))}" if _is_ts(first_ts) else ""
            how = "in a digest" if alert.outcome == "digest" else "as a DM"
            what = " (a thread)" if thread else ""
            lines.append(f"• <#{channel}>{what}{started} — sent {how} {slack_date(alert.decided_at)}")
        blocks.append(_section("\n".join(lines)))
    else:
        blocks.append(_section("No alerts in the last week."))
    blocks.append(
        ContextBlock(elements=[MarkdownTextObject(text="Type `/beep help` anywhere for every command.")])
    )
    view: dict[str, Any] = View(type="home", blocks=blocks[:MAX_VIEW_BLOCKS]).to_dict()
    return view


def _is_ts(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class AppHome:
    """Publishes the Home tab; `refresh` is fire-and-forget (listeners must ack fast)."""

    def __init__(
        self,
        store: PreferencesStore,
        alerts: RecentAlerts,
        *,
        clock: Callable[[], float] = time.time,
        defaults: AlertDefaults = BUILT_IN_DEFAULTS,
        suggestions: SuggestionsStore | None = None,
    ) -> None:
        self._store = store
        self._suggestions = suggestions
        self._alerts = alerts
        self._clock = clock
        self._defaults = defaults
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, client: Any, user: str) -> None:
        try:
            prefs = self._store.get(user)
        except NotReady:
            return
        suggested = self._suggestions.of(user) if self._suggestions is not None else None
        view = home_view(prefs, self._alerts.of(user), self._clock(), self._defaults, suggested)
        try:
            await client.views_publish(user_id=user, view=view)
        except Exception as error:
            log.warning("views.publish failed", extra={"user": user, "error": repr(error)})

    def refresh(self, user: str, client: Any) -> None:
        task = asyncio.create_task(self.publish(client, user))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def register(self, app: AsyncApp, *, write_timeout_s: float = 2.0) -> None:
        store = self._store

        async def on_home_opened(event: dict[str, Any], client: Any) -> None:
            if event.get("tab", "home") == "home":
                self.refresh(str(event.get("user", "")), client)

        async def on_home_button(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any) -> None:
            await ack()
            user = str((body.get("user") or {}).get("id", ""))
            action_id = str(action.get("action_id", ""))
            value = str(action.get("value", ""))
            try:
                zone = await user_tz(client, user) if store.get(user).tz is None else None
                async with store.lock(user):
                    prefs = store.get(user)
                    if action_id == TOGGLE_ACTION:
                        new = prefs.model_copy(update={"opted_in": value == "on"})
                    elif action_id == RESUME_ACTION:
                        new = prefs.model_copy(update={"paused_until": None, "snoozed_until": None})
                    elif action_id.startswith(SCHEDULE_ACTION):
                        chosen = next((name for name in SCHEDULE_WORDS if name == value), None)
                        new = prefs if chosen is None else prefs.with_schedule(chosen)
                    elif action_id == UNMUTE_ACTION:
                        now = self._clock()
                        if value == CONVERSATIONS:  # the channels stay muted
                            kept = [m for m in prefs.mutes if m.conversation_id is None and m.active(now)]
                            new = changed(prefs, mutes=[m.model_dump() for m in kept])
                        else:
                            new = prefs.without_mute(value, now)
                    elif action_id == RESET_WEIGHTS_ACTION:
                        new = prefs.without_weights()
                    elif action_id.startswith(BUDGET_ACTION):
                        new = changed(prefs, daily_budget=None if value == DEFAULT else int(value))
                    elif action_id.startswith(DIGEST_ACTION):
                        times = DIGEST_PRESETS.get(value)
                        new = changed(prefs, digest_times=None if times is None else list(times))
                    else:
                        new = prefs.model_copy(update={"topics": [t for t in prefs.topics if t.id != value]})
                    if new != prefs and new.tz is None and zone is not None:
                        new = changed(new, tz=zone)  # digest times are read in the person's zone
                    if new != prefs:
                        await store.save(new, timeout=write_timeout_s)
            except Exception as error:
                log.warning("home button failed", extra={"user": user, "error": repr(error)})
            self.refresh(user, client)

        app.event("app_home_opened")(on_home_opened)
        for action_id in (TOGGLE_ACTION, RESUME_ACTION, UNFOLLOW_ACTION, UNMUTE_ACTION, RESET_WEIGHTS_ACTION):
            app.action(action_id)(on_home_button)
        # One action id per choice (Slack wants them unique within a block): match the family.
        for family in (BUDGET_ACTION, DIGEST_ACTION, SCHEDULE_ACTION):
            app.action(re.compile(rf"^{family}:"))(on_home_button)
