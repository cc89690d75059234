"""An alert's controls — *Mute this conversation*, *Fewer like this*, *Snooze* — become preferences.

The notifier writes them under each alert (beside Useful / Not useful), each button carrying the
alert's `FeedbackButton` value (beepgpt.contracts: which conversation, why, which topic). A click
changes the person's `Preferences` (the bounded updates are the contract's: `with_mute`,
`with_fewer`, `snooze_end`), saved to `user.preferences` before Slack gets its answer, so the
notifier's very next decision for the person applies it (and audits it: `muted`,
`down_weighted`, `snoozed`). Then the DM's controls turn into a line saying what changed and how
to undo it, and App Home is republished (it lists mutes and weights).

`change` is pure; `register` wires it to Bolt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError
from slack_bolt.async_app import AsyncApp
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject

from beepgpt.contracts import (
    CONTROL_ACTIONS,
    FEWER_ACTION,
    MUTE_ACTION,
    MUTE_CONVERSATION_S,
    SNOOZE_ACTIONS,
    FeedbackButton,
    Preferences,
    SnoozeChoice,
    TooManyMutes,
    UnreadableButton,
    snooze_end,
    split_conversation_id,
)
from ingest.slack_app.beep_command import OnChange, changed, slack_date, user_tz
from ingest.slack_app.feedback_buttons import update_clicked_alert
from ingest.slack_app.preferences_store import NotReady, PreferencesStore

log = logging.getLogger(__name__)

_SNOOZE_OF: dict[str, SnoozeChoice] = {action: choice for choice, action in SNOOZE_ACTIONS.items()}


@dataclass(frozen=True)
class Change:
    """The person's new preferences (None: nothing to save) and what to tell them."""

    prefs: Preferences | None
    note: str


def _plain(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def change(action_id: str, button: FeedbackButton, prefs: Preferences, now: float) -> Change:
    """What a click on control `action_id` of the alert `button` does to `prefs`."""
    channel, _, _ = split_conversation_id(button.conversation_id)
    if action_id == MUTE_ACTION:
        try:
            new = prefs.with_mute(channel, button.conversation_id, now)
        except TooManyMutes:  # only for channel mutes; a conversation mute pushes out the oldest
            return Change(None, "You have muted too many channels already.")
        days = MUTE_CONVERSATION_S // 86_400
        return Change(
            new,
            f"🔕 Muted this conversation in <#{channel}> for {days} days: no more alerts about it."
            f" Undo: `/beep unmute <#{channel}>` (App Home lists what is muted).",
        )
    if action_id == FEWER_ACTION:
        new, weight = prefs.with_fewer(button.reason, channel, button.topic_id, now)
        if weight.topic_id is not None:
            topic = next((t.text for t in prefs.topics if t.id == weight.topic_id), None)
            about = f"your topic “{_plain(topic)}”" if topic else "this topic"
            what = f"Alerts about {about} now need a closer match"
        else:
            what = f"Alerts from <#{channel}> now need a stronger sign that you'd join"
        return Change(
            new,
            f"🔉 Fewer like this: {what} (weight {weight.weight:g}). Undo in App Home (*Fewer like this* → Reset).",
        )
    choice = _SNOOZE_OF.get(action_id)
    if choice is None:
        raise ValueError(f"not a control: {action_id!r}")
    until = snooze_end(choice, now, prefs.zone_name)
    new = changed(prefs, snoozed_until=until)
    return Change(
        new,
        f"💤 Snoozed until {slack_date(until)}: alerts meanwhile wait for one digest. `/beep resume` ends it.",
    )


def noted(blocks: list[dict[str, Any]], block_id: str, note: str) -> list[dict[str, Any]]:
    """The DM's blocks with the clicked controls row replaced by `note`."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("block_id") == block_id:
            out.append(ContextBlock(elements=[MarkdownTextObject(text=note)]).to_dict())
        else:
            out.append(block)
    return out


def register(
    app: AsyncApp,
    store: PreferencesStore,
    *,
    clock: Callable[[], float],
    on_change: OnChange | None = None,
    write_timeout_s: float = 2.0,
) -> None:
    """The controls' Bolt listeners: the change is saved before the ack; the DM is updated and
    the person told ephemerally after it."""

    async def on_control(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any, respond: Any) -> None:
        user = str((body.get("user") or {}).get("id", ""))
        action_id = str(action.get("action_id", ""))
        try:
            button, _ = FeedbackButton.decode(str(action.get("value", "")))
        except UnreadableButton:
            log.warning("alert control with an unreadable value", extra={"value": str(action.get("value"))[:200]})
            await ack()
            return
        try:
            zone = await user_tz(client, user) if store.get(user).tz is None else None
            async with store.lock(user):
                prefs = store.get(user)
                if prefs.tz is None and zone is not None:
                    prefs = changed(prefs, tz=zone)  # "until tomorrow" is the person's tomorrow
                result = change(action_id, button, prefs, clock())
                if result.prefs is not None:
                    await store.save(result.prefs, timeout=write_timeout_s)
        except (NotReady, TimeoutError, KafkaError) as error:
            log.warning("alert control not saved", extra={"user": user, "error": repr(error)})
            await ack()
            await respond(
                text="Sorry, I couldn't save that just now — please click again in a moment.",
                response_type="ephemeral",
                replace_original=False,
            )
            return
        await ack()
        if result.prefs is not None and on_change is not None:
            on_change(user, client)
        await _show(body, action, client, respond, result.note)

    async def _show(body: dict[str, Any], action: dict[str, Any], client: Any, respond: Any, note: str) -> None:
        try:
            await respond(text=note, response_type="ephemeral", replace_original=False)
        except Exception as error:
            log.info("could not tell an alert control's effect", extra={"error": repr(error)})
        block_id = str(action.get("block_id", ""))
        await update_clicked_alert(
            body, client, lambda blocks: noted(blocks, block_id, note), "after a control's click"
        )

    for action_id in CONTROL_ACTIONS:
        app.action(action_id)(on_control)
