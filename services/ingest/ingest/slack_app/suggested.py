"""Suggested topics in the Slack app: `/beep suggest`'s reply, App Home's section, the Follow button.

Ingest does not compute suggestions (that needs the scorer's embeddings, and no service imports
another): it keeps the compacted `user.suggestions` topic whole, as it keeps `user.preferences`,
and shows each person their latest record (`beepgpt suggest --publish` writes them;
docs/suggestions.md). A Follow click follows the suggestion's name as a topic sentence through
`/beep follow`'s own path (`beep_command.apply`), so the same checks, limits and replies apply.

`visible`, `suggestion_blocks` and `reply` are pure; `register` wires the button.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from beepgpt.contracts import SUGGEST_ACTION, Preferences, SuggestedTopic, Suggestions
from beepgpt.kafka.compacted import CompactedTable
from beepgpt.settings import KafkaSettings
from beepgpt.topics import SUGGESTIONS
from ingest.slack_app import beep_command
from ingest.slack_app.beep_command import Follow, Invalid, OnChange, parse, user_tz
from ingest.slack_app.preferences_store import NotReady, PreferencesStore

log = logging.getLogger(__name__)

MAX_SHOWN = 5
NONE_YET = (
    "No suggestions yet: they are drawn from the public conversations you took part in, once"
    " your workspace's history has been read (`beepgpt suggest --publish`)."
)


def _newer(current: Suggestions, candidate: Suggestions) -> bool:
    return candidate.computed_at >= current.computed_at


class SuggestionsStore:
    """user id -> their latest `Suggestions`, read whole from `user.suggestions` and followed."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._table = CompactedTable[Suggestions](kafka, SUGGESTIONS, newer=_newer)

    @property
    def loaded(self) -> bool:
        return self._table.loaded

    def of(self, user: str) -> Suggestions | None:
        return self._table.get(user) if self.loaded else None

    async def wait_for(self, user: str, timeout: float = 10.0) -> Suggestions:
        """The person's record once this instance has read it (for tests and start-up)."""
        return await self._table.wait_for(user, lambda _: True, timeout)

    async def start(self, timeout: float = 60.0) -> None:
        await self._table.start(timeout)

    async def stop(self) -> None:
        await self._table.stop()


def visible(prefs: Preferences, record: Suggestions | None) -> list[SuggestedTopic]:
    """The suggestions to show: the record's, less those the person follows already (by text:
    a followed suggestion is followed under its own name)."""
    if record is None:
        return []
    followed = {t.text.casefold() for t in prefs.topics}
    return [t for t in record.topics if t.name.casefold() not in followed][:MAX_SHOWN]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def example_line(topic: SuggestedTopic) -> str:
    """The two example conversations: channel, day, first line."""
    lines = []
    for example in topic.examples:
        day = datetime.fromtimestamp(float(example.first_ts), UTC).strftime("%b %d")
        line = _escape(example.first_line.replace("\n", " "))
        lines.append(f"> <#{example.channel}> {day}: {line}")
    return "\n".join(lines)


def suggestion_blocks(topics: list[SuggestedTopic]) -> list[Block]:
    """One section per suggestion: its name, how many conversations, two examples, a Follow button."""
    blocks: list[Block] = []
    for i, topic in enumerate(topics):
        text = f"*{_escape(topic.name)}* — {topic.conversations} of your conversations"
        examples = example_line(topic)
        blocks.append(
            SectionBlock(
                block_id=f"suggested:{i}",
                text=MarkdownTextObject(text=(f"{text}\n{examples}" if examples else text)[:3_000]),
                accessory=ButtonElement(
                    text="Follow", action_id=SUGGEST_ACTION, value=topic.name[:2_000], style="primary"
                ),
            )
        )
    return blocks


def reply(prefs: Preferences, record: Suggestions | None) -> dict[str, Any]:
    """`/beep suggest`'s ephemeral answer: text (for notifications and old clients) and blocks."""
    topics = visible(prefs, record)
    if not topics:
        text = (
            NONE_YET if record is None or not record.topics else "You already follow every topic I'd suggest."
        )
        return {"text": text}
    head = (
        f"Topics from the {record.conversations if record else 0} public conversations you took part in."
        " *Follow* one and I'll DM you when a conversation about it happens without you."
    )
    text = "Suggested topics: " + "; ".join(t.name for t in topics)
    blocks = [SectionBlock(text=MarkdownTextObject(text=head)), *suggestion_blocks(topics)]
    blocks.append(
        ContextBlock(elements=[MarkdownTextObject(text="Or say it your way: `/beep follow <topic>`.")])
    )
    return {"text": text, "blocks": [b.to_dict() for b in blocks]}


def register(
    app: AsyncApp,
    store: PreferencesStore,
    *,
    clock: Callable[[], float] = time.time,
    on_change: OnChange | None = None,
    write_timeout_s: float = 2.0,
) -> None:
    """The Follow button (in `/beep suggest`'s reply and in App Home): `/beep follow <name>`."""

    async def on_follow(
        ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any, respond: Any
    ) -> None:
        await ack()
        user = str((body.get("user") or {}).get("id", ""))
        in_home = (body.get("container") or {}).get("type") == "view"
        command = parse(f"follow {action.get('value', '')}")
        if not isinstance(command, Follow):
            answer = command.reply if isinstance(command, Invalid) else "I couldn't read that suggestion."
        else:
            try:
                zone = await user_tz(client, user) if store.get(user).tz is None else None
                async with store.lock(user):
                    result = beep_command.apply(command, store.get(user), clock(), user_tz=zone)
                    if result.prefs is not None:
                        await store.save(result.prefs, timeout=write_timeout_s)
                answer = result.reply
            except NotReady:
                answer = "I'm just starting up — please try again in a few seconds."
            except Exception as error:
                log.warning("follow from a suggestion failed", extra={"user": user, "error": repr(error)})
                answer = "Sorry, I couldn't save that just now. Please try again in a moment."
        if on_change is not None:
            on_change(user, client)
        if not in_home:
            try:
                await respond(text=answer, response_type="ephemeral", replace_original=False)
            except Exception as error:
                log.info("could not answer a suggestion's Follow", extra={"user": user, "error": repr(error)})

    app.action(SUGGEST_ACTION)(on_follow)
