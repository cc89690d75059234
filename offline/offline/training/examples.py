"""Training examples for the interest model (docs/scoring.md), from the shared query's contexts.

For each message by user U, the up-to-5 earlier messages of its conversation written by others
are the prompt and U is the label. A prompt without substance (`interest.substance`) is labelled
"nobody": nothing in it predicts who engages. A message with no earlier message by someone else
(a conversation's opening, or a monologue) has no prompt at all and is not an example: there is
nothing to read, and live scoring never sees an empty conversation either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from offline.training.history import ConversationKey, MessageContext
from scorer.interest.model import NOBODY
from scorer.interest.prompt import Prompt, PromptMessage
from scorer.interest.substance import MIN_CONTENT_WORDS, has_substance

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Example:
    row: int
    ts: float
    channel: str
    conversation: ConversationKey
    author: str
    label: str
    """the author, or "nobody" when the prompt has no substance"""
    prompt: Prompt
    prompt_rows: tuple[int, ...]
    joining: bool
    """the author had not written in this conversation before (what live alerts are about)"""


def build_examples(
    table: pd.DataFrame, contexts: Sequence[MessageContext], *, min_substance: int = MIN_CONTENT_WORDS
) -> list[Example]:
    users = table["user"].astype(str).tolist()
    texts = table["text"].astype(str).tolist()
    times = table["ts"].astype(float).tolist()
    channels = table["channel"].astype(str).tolist()
    threads = table["slack_thread_ts"].tolist()
    slack_ts = table["slack_ts"].astype(str).tolist()
    seen: dict[ConversationKey, set[str]] = {}
    out = []
    for context in sorted(contexts, key=lambda c: (times[c.row], c.row)):
        row = context.row
        author = users[row]
        before = seen.setdefault(context.conversation, set())
        joining = author not in before
        before.add(author)
        if not context.prompt_rows:
            continue
        prompt = Prompt(
            channel=channels[row],
            in_thread=isinstance(threads[row], str) and threads[row] != slack_ts[row],
            messages=tuple(PromptMessage(users[r], texts[r]) for r in context.prompt_rows),
        )
        label = author if has_substance(prompt.texts, min_substance) else NOBODY
        out.append(
            Example(
                row=row,
                ts=times[row],
                channel=channels[row],
                conversation=context.conversation,
                author=author,
                label=label,
                prompt=prompt,
                prompt_rows=context.prompt_rows,
                joining=joining,
            )
        )
    return out
