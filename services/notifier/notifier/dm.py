"""The DMs people receive, as Block Kit: an alert for one conversation, or a digest of several.

Pure functions of the candidate and the names already looked up (see `directory`). An alert
shows the channel and authors, a short preview, why it was sent, a link to the conversation
and Useful / Not useful buttons, then the person's controls (Mute this conversation, Fewer like
this, Snooze 1 hour / until tomorrow); every text is escaped and cut to Slack's limits (section text
3,000, button value 2,000, header 150, 50 blocks). The buttons' `action_id`s and JSON `value`
are the `FeedbackButton` contract (beepgpt.contracts), which ingest's button listeners read.

Each alert's actions block has the id `beepgpt:<marker>` (and a digest's context block
`beepgpt:digest:<id>`), so that the notifier can recognise its own message when it reads the
DM's history to find out whether an interrupted send went through.

The blocks are built as slack_sdk's Block Kit models and turned into JSON (`to_dict`) once, in
`Message`: what chat.postMessage receives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.blocks import Block as BlockModel

from beepgpt.contracts import (
    FEWER_ACTION,
    MUTE_ACTION,
    NOT_USEFUL_ACTION,
    OPEN_ACTION,
    SNOOZE_ACTIONS,
    USEFUL_ACTION,
    Candidate,
    FeedbackButton,
)
from notifier import mrkdwn

BLOCK_PREFIX = "beepgpt:"

MAX_SECTION = 3_000
MAX_HEADER = 150
MAX_BUTTON_VALUE = 2_000
MAX_URL = 3_000
MAX_BLOCKS = 50
LINE_LIMIT = 400
EXPLANATION_LIMIT = 600
FALLBACK_LIMIT = 300

Block = dict[str, Any]
"""A block as Slack's JSON (what `to_dict` makes of a Block Kit model)."""


@dataclass(frozen=True)
class Names:
    """Display names looked up before rendering (user id -> name, channel id -> name)."""

    users: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """What chat.postMessage takes: fallback text (notifications, screen readers) and blocks."""

    text: str
    blocks: list[Block]

    @classmethod
    def of(cls, text: str, blocks: Sequence[BlockModel]) -> Message:
        """The message of Block Kit models, as the JSON Slack takes (validated by slack_sdk)."""
        return cls(text, [block.to_dict() for block in blocks])


@dataclass(frozen=True)
class DigestEntry:
    """One held alert inside a digest."""

    candidate: Candidate
    permalink: str | None
    marker: str


def marker_block_id(marker: str) -> str:
    return f"{BLOCK_PREFIX}{marker}"


CONTROLS_SUFFIX = ":controls"


def controls_block_id(marker: str) -> str:
    """The alert's controls row (mute, fewer, snooze), beside its feedback row."""
    return f"{BLOCK_PREFIX}{marker}{CONTROLS_SUFFIX}"


def digest_block_id(digest_id: str) -> str:
    return f"{BLOCK_PREFIX}digest:{digest_id}"


def mentioned(candidates: Sequence[Candidate]) -> tuple[set[str], set[str]]:
    """Every user and channel id the DM will name: authors, mentions, the channels themselves."""
    users: set[str] = set()
    channels: set[str] = set()
    for candidate in candidates:
        channels.add(candidate.channel)
        for line in candidate.preview:
            users.add(line.user)
            more_users, more_channels = mrkdwn.references(line.text)
            users |= more_users
            channels |= more_channels
    return users, channels


def feedback_value(candidate: Candidate) -> str:
    """The button value: the candidate's `FeedbackButton`, fitted into Slack's 2,000 characters.

    What it carries (the score, with the embedding model it was measured in, and when it is
    left out) is the contract's rule. If the whole does not fit, the topic id goes first (the
    click still counts for training), then the conversation id is cut.
    """
    button = FeedbackButton.from_candidate(candidate)
    encoded = button.encode()
    if len(encoded) > MAX_BUTTON_VALUE:
        encoded = button.model_copy(update={"topic_id": None}).encode()
    keep = 1_900
    while len(encoded) > MAX_BUTTON_VALUE:  # only with absurd ids (JSON escapes can grow them ×6)
        encoded = FeedbackButton(conversation_id=candidate.conversation_id[:keep]).encode()
        keep //= 2
    return encoded


def _channel(candidate: Candidate, names: Names) -> str:
    name = names.channels.get(candidate.channel)
    # `<#C123>` is what Slack itself renders as a channel link when the name is unknown.
    return f"#{mrkdwn.escape(name)}" if name else f"<#{candidate.channel}>"


def _channel_plain(candidate: Candidate, names: Names) -> str:
    name = names.channels.get(candidate.channel)
    return f"#{name}" if name else "a channel"


def _authors(candidate: Candidate, names: Names, limit: int = 3) -> list[str]:
    seen: list[str] = []
    for line in reversed(candidate.preview):
        name = names.users.get(line.user) or "someone"
        if name not in seen:
            seen.append(name)
    shown = [f"@{n}" for n in seen[:limit]]
    if len(seen) > limit:
        shown.append(f"{len(seen) - limit} more")
    return shown


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _preview(candidate: Candidate, names: Names, lines: int, limit: int = MAX_SECTION) -> str:
    rendered: list[str] = []
    used = 0
    for line in candidate.preview[-lines:]:
        author = mrkdwn.escape(names.users.get(line.user) or "someone")
        text = mrkdwn.readable(line.text, names.users, names.channels, LINE_LIMIT) or "_(no text)_"
        entry = f"> *@{author}*: {text}"
        size = mrkdwn.utf16_len(entry) + 1
        if used + size > limit:
            break
        rendered.append(entry)
        used += size
    return "\n".join(rendered)


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _buttons(candidate: Candidate, permalink: str | None, marker: str) -> ActionsBlock:
    value = feedback_value(candidate)
    elements: list[ButtonElement] = []
    if permalink and len(permalink) <= MAX_URL:
        elements.append(
            ButtonElement(
                action_id=OPEN_ACTION, text=PlainTextObject(text="Open conversation"), url=permalink
            )
        )
    elements += [
        ButtonElement(
            action_id=USEFUL_ACTION, text=PlainTextObject(text="Useful"), style="primary", value=value
        ),
        ButtonElement(action_id=NOT_USEFUL_ACTION, text=PlainTextObject(text="Not useful"), value=value),
    ]
    return ActionsBlock(block_id=marker_block_id(marker), elements=elements)


CONTROL_LABELS: dict[str, str] = {
    MUTE_ACTION: "Mute this conversation",
    FEWER_ACTION: "Fewer like this",
    SNOOZE_ACTIONS["1h"]: "Snooze 1 hour",
    SNOOZE_ACTIONS["tomorrow"]: "Snooze until tomorrow",
}


def _controls(candidate: Candidate, marker: str) -> ActionsBlock:
    """"Less of this": mute the conversation, fewer like it, snooze; each carries the alert's
    `FeedbackButton` value (ingest reads which conversation, channel and topic it is about)."""
    value = feedback_value(candidate)
    return ActionsBlock(
        block_id=controls_block_id(marker),
        elements=[
            ButtonElement(action_id=action_id, text=PlainTextObject(text=label), value=value)
            for action_id, label in CONTROL_LABELS.items()
        ],
    )


def _why(candidate: Candidate) -> str:
    explanation = mrkdwn.clean(candidate.explanation).strip()
    if not explanation:
        return "*Why:* it looks relevant to you"
    return "*Why:* " + mrkdwn.to_mrkdwn([mrkdwn.Span(explanation)], EXPLANATION_LIMIT)


def alert(
    candidate: Candidate,
    names: Names,
    permalink: str | None,
    marker: str,
    *,
    preview_lines: int = 4,
    note: str | None = None,
    context_block_id: str | None = None,
) -> Message:
    """The DM for one conversation (a digest of one is this too, with a note and its own id)."""
    authors = _authors(candidate, names)
    where = _channel(candidate, names)
    headline = (
        f"*{mrkdwn.escape(_join(authors))}* {'is' if len(authors) == 1 else 'are'} talking in *{where}*"
        if authors
        else f"A conversation in *{where}* may interest you"
    )
    blocks: list[BlockModel] = [_section(headline)]
    preview = _preview(candidate, names, preview_lines)
    if preview:
        blocks.append(_section(preview))
    context = [_why(candidate)]
    if note:
        context.append(mrkdwn.to_mrkdwn([mrkdwn.Span(note)], 300))
    blocks.append(
        ContextBlock(
            elements=[MarkdownTextObject(text=t) for t in context], block_id=context_block_id or None
        )
    )
    blocks.append(_buttons(candidate, permalink, marker))
    blocks.append(_controls(candidate, marker))
    return Message.of(_fallback(candidate, names), blocks)


def _fallback(candidate: Candidate, names: Names) -> str:
    where = _channel_plain(candidate, names)
    if candidate.preview:
        last = candidate.preview[-1]
        who = names.users.get(last.user) or "someone"
        said = mrkdwn.plain(last.text, names.users, names.channels, FALLBACK_LIMIT)
        text = f"@{who} in {where}: {said}"
    else:
        text = f"A conversation in {where} may interest you"
    return mrkdwn.to_mrkdwn([mrkdwn.Span(text)], FALLBACK_LIMIT)


AWAY_TITLE = "While you were away"


def digest(
    entries: Sequence[DigestEntry],
    digest_id: str,
    names: Names,
    why: str,
    *,
    max_items: int = 10,
    title: str = AWAY_TITLE,
) -> Message:
    """One DM for the alerts held back (quiet hours, pause, limits, the daily budget).

    `title` heads it ("While you were away", or "Your digest" at a scheduled digest time)."""
    count = len(entries)
    noun = "conversation" if count == 1 else "conversations"
    headline = f"{title}: {count} {noun}"
    blocks: list[BlockModel] = [
        HeaderBlock(text=PlainTextObject(text=mrkdwn.truncate(headline, MAX_HEADER))),
        ContextBlock(
            block_id=digest_block_id(digest_id),
            elements=[MarkdownTextObject(text=mrkdwn.to_mrkdwn([mrkdwn.Span(why)], 300))],
        ),
    ]
    shown = entries[:max_items]
    for entry in shown:
        candidate = entry.candidate
        parts = [f"*{_channel(candidate, names)}*"]
        authors = _authors(candidate, names)
        if authors:
            parts[0] += " · " + mrkdwn.escape(_join(authors))
        preview = _preview(candidate, names, 1, limit=1_200)
        if preview:
            parts.append(preview)
        parts.append(_why(candidate))
        text = "\n".join(parts)
        if mrkdwn.utf16_len(text) > MAX_SECTION:  # only with absurd names; keep the essentials
            text = "\n".join(parts[-1:])
        blocks.append(_section(text))
        blocks.append(_buttons(candidate, entry.permalink, entry.marker))
        blocks.append(_controls(candidate, entry.marker))
    rest = entries[max_items:]
    if rest:
        links: list[str] = []
        for entry in rest:
            where = _channel(entry.candidate, names)
            link = f"<{entry.permalink}|{where}>" if entry.permalink and len(entry.permalink) < 500 else where
            links.append(link)
        text = f"And {len(rest)} more: " + ", ".join(links)
        if mrkdwn.utf16_len(text) > MAX_SECTION:
            text = f"And {len(rest)} more conversations."
        blocks.append(_section(text))
    return Message.of(mrkdwn.truncate(headline, FALLBACK_LIMIT), blocks[:MAX_BLOCKS])


def find_block(messages: Sequence[Mapping[str, Any]], block_id: str) -> Mapping[str, Any] | None:
    """The message among `messages` (e.g. conversations.history) that carries `block_id`."""
    for message in messages:
        for block in message.get("blocks") or ():
            if isinstance(block, Mapping) and block.get("block_id") == block_id:
                return message
    return None
