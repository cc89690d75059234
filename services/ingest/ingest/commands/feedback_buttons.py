""" "Useful" / "Not useful" on a DM become `Feedback` events (what training learns from).

The notifier's DM buttons carry, as JSON in their `value`, the `Feedback` fields of the alert
(`conversation_id`, `reason`, `topic_id`, and the alert's `score` with the embedding model it was
measured in, which lets the scorer learn a topic's line from the click alone); the click adds
who and which button. The event is published before Slack gets its answer (bounded), then the
DM is updated lazily so the buttons turn into a "thanks" and the person sees their click counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp

from beepgpt.contracts import Feedback
from beepgpt.kafka import EventProducer
from beepgpt.topics import FEEDBACK

log = logging.getLogger(__name__)

# The notifier's button ids (notifier/dm.py); tests click the notifier's own DM to keep them in step.
USEFUL_ACTION = "beepgpt_feedback_useful"
NOT_USEFUL_ACTION = "beepgpt_feedback_not_useful"
OPEN_ACTION = "beepgpt_open_conversation"


def feedback_from(body: dict[str, Any], action: dict[str, Any]) -> Feedback | None:
    """The Feedback a click means, or None when the button value is not ours.

    The value comes back from Slack as the notifier wrote it, but anyone who can post to the
    app's endpoint can also send any value: nothing in it is trusted beyond its shape, and a
    score that is not a finite number in [-1, 1] is dropped (the click still counts)."""
    user = str((body.get("user") or {}).get("id", ""))
    try:
        value = json.loads(str(action.get("value", "")))
        if not isinstance(value, dict):
            return None
        return Feedback(
            user=user,
            conversation_id=str(value["conversation_id"]),
            useful=action.get("action_id") == USEFUL_ACTION,
            reason=value.get("reason"),
            topic_id=value.get("topic_id"),
            score=carried_score(value, user),
            score_space=carried_space(value),
        )
    except (ValueError, KeyError, RecursionError, ValidationError):
        # RecursionError: json.loads on a deeply nested value ("[[[[…").
        return None


def carried_score(value: dict[str, Any], user: str) -> float | None:
    """The alert's score from a button value, or None when there is none or it cannot be right.

    Older DMs carry no score (None, silently); anything else that is not a finite number in
    [-1, 1] — a string, a bool, NaN, 1e400 — is logged and ignored rather than allowed to move
    someone's topic line (the scorer then falls back to a score it remembers, if any)."""
    if "score" not in value:
        return None
    raw = value["score"]
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        score = float(raw)
        if math.isfinite(score) and -1.0 <= score <= 1.0:
            return score
    log.warning(
        "feedback button score ignored: not a finite number in [-1, 1]",
        extra={"user": user, "score": repr(raw)[:100]},
    )
    return None


def carried_space(value: dict[str, Any]) -> str | None:
    """The embedding model the carried score was measured in; None unless a short string."""
    space = value.get("space")
    return space if isinstance(space, str) and 0 < len(space) <= 200 else None


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
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    return out


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
            await asyncio.wait_for(producer.send(FEEDBACK, feedback.user, feedback), write_timeout_s)
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
        message = body.get("message") or {}
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        ts = container.get("message_ts") or message.get("ts")
        blocks = message.get("blocks")
        if not (channel and ts and isinstance(blocks, list)):
            return
        useful = action.get("action_id") == USEFUL_ACTION
        try:
            await client.chat_update(
                channel=channel,
                ts=ts,
                text=message.get("text") or "BeepGPT alert",
                blocks=thanked(blocks, str(action.get("block_id", "")), useful),
            )
        except Exception as error:
            log.info("could not update the alert after feedback", extra={"error": repr(error)})

    async def ack_only(ack: Any) -> None:
        await ack()

    for action_id in (USEFUL_ACTION, NOT_USEFUL_ACTION):
        app.action(action_id)(ack=record, lazy=[show_thanks])
    # The link button opens the browser; Slack still sends the click, which must be acknowledged.
    app.action(OPEN_ACTION)(ack_only)
