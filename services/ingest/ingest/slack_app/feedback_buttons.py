""" "Useful" / "Not useful" on a DM become `Feedback` events (what training learns from).

The notifier's DM buttons carry, as JSON in their `value`, a `FeedbackButton` (beepgpt.contracts:
the alert's `conversation_id`, `reason`, `topic_id`, and its `score` with the embedding model it
was measured in, which lets the scorer learn a topic's line from the click alone); the click adds
who and which button. The event is published before Slack gets its answer (bounded), then the
DM is updated lazily so the buttons turn into a "thanks" and the person sees their click counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject

from beepgpt.contracts import (
    FEEDBACK_ACTIONS,
    OPEN_ACTION,
    USEFUL_ACTION,
    Feedback,
    FeedbackButton,
    UnreadableButton,
)
from beepgpt.kafka import EventProducer
from beepgpt.topics import FEEDBACK

log = logging.getLogger(__name__)


def feedback_from(body: dict[str, Any], action: dict[str, Any]) -> Feedback | None:
    """The Feedback a click means, or None when the button value is not ours.

    The value comes back from Slack as the notifier wrote it, but anyone who can post to the
    app's endpoint can also send any value: nothing in it is trusted beyond the contract's shape.
    A score that cannot be right (not a finite number in [-1, 1]) is logged and dropped rather
    than allowed to move someone's topic line, and a space that is not a short string is dropped;
    the click still counts (the scorer then falls back to a score it remembers, if any)."""
    user = str((body.get("user") or {}).get("id", ""))
    try:
        button, dropped = FeedbackButton.decode(str(action.get("value", "")))
    except UnreadableButton:
        return None
    if "score" in dropped:
        log.warning(
            "feedback button score ignored: not a finite number in [-1, 1]",
            extra={"user": user, "value": str(action.get("value"))[:200]},
        )
    return button.feedback(user, str(action.get("action_id", "")))


def thanked(blocks: list[dict[str, Any]], block_id: str, useful: bool) -> list[dict[str, Any]]:
    """The DM's blocks with the clicked buttons replaced by a note (the link button stays)."""
    note = "👍 You found this useful — thanks!" if useful else "👎 Noted: not useful. I'll learn from it."
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("block_id") != block_id:
            out.append(block)
            continue
        links = [e for e in block.get("elements", []) if e.get("action_id") == OPEN_ACTION]
        if links:
            out.append({**block, "elements": links})
        out.append(ContextBlock(elements=[MarkdownTextObject(text=note)]).to_dict())
    return out



async def update_clicked_alert(
    body: dict[str, Any],
    client: Any,
    rewrite: Callable[[list[dict[str, Any]]], list[Any]],
    after: str,
) -> None:
    """Replace the blocks of the alert DM a button was clicked on with `rewrite(blocks)`.

    Both kinds of buttons under an alert (feedback, `feedback_buttons`; controls,
    `alert_controls`) turn their row into a note this way. Best effort: the click itself is
    already recorded, so a DM Slack will not update (deleted, too old) is logged, not retried."""
    message = body.get("message") or {}
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or message.get("ts")
    blocks = message.get("blocks")
    if not (channel and ts and isinstance(blocks, list)):
        return
    try:
        await client.chat_update(
            channel=channel, ts=ts, text=message.get("text") or "BeepGPT alert", blocks=rewrite(blocks)
        )
    except Exception as error:
        log.info(f"could not update the alert {after}", extra={"error": repr(error)})

def register(app: AsyncApp, producer: EventProducer, *, write_timeout_s: float = 2.0) -> None:
    async def record(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        feedback = feedback_from(body, action)
        if feedback is None:
            log.warning(
                "feedback button with an unreadable value", extra={"value": str(action.get("value"))[:200]}
            )
            await ack()
            return
        try:
            await asyncio.wait_for(
                producer.send(FEEDBACK, FEEDBACK.key_of(feedback), feedback), write_timeout_s
            )
        except Exception as error:
            log.warning("feedback not recorded", extra={"user": feedback.user, "error": repr(error)})
            await ack()
            await respond(
                text="Sorry, I couldn't record that just now — please click again in a moment.",
                response_type="ephemeral",
                replace_original=False,
            )
            return
        await ack()

    async def show_thanks(body: dict[str, Any], action: dict[str, Any], client: Any) -> None:
        useful = action.get("action_id") == USEFUL_ACTION
        block_id = str(action.get("block_id", ""))
        await update_clicked_alert(
            body, client, lambda blocks: thanked(blocks, block_id, useful), "after feedback"
        )

    async def ack_only(ack: Any) -> None:
        await ack()

    for action_id in FEEDBACK_ACTIONS:
        app.action(action_id)(ack=record, lazy=[show_thanks])
    # The link button opens the browser; Slack still sends the click, which must be acknowledged.
    app.action(OPEN_ACTION)(ack_only)
