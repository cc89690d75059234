"""The OpenAI fine-tuned interest model: same question, answered by a chat model's first token.

The fine-tuned model reads the rendered prompt and answers with one label: a number per user
("1", "2", …, in the label map's order) or "0" for nobody. Numbers up to 999 are single tokens
in OpenAI's tokenizers, so the first generated token *is* the answer, and its top
log-probabilities are a probability per label. Scoring asks for one token with
`logprobs=True, top_logprobs=20`, sums the probability of every top token that spells a label
(" 1" and "1" alike) and renormalises over the labels. Labels outside the top 20 get zero: with
more than 19 users the long tail is cut, which is also what the model would say.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from beepgpt.contracts import ConversationEvent
from scorer.artifact import ModelFormatError, read_json, write_json
from scorer.embeddings import Matrix
from scorer.interest.features import Vocabulary
from scorer.interest.model import NOBODY
from scorer.interest.prompt import Prompt, prompt_of, render

if TYPE_CHECKING:
    from openai import OpenAI

    from scorer.openai_api import Backoff

OPENAI_FILE = "openai.json"
NOBODY_CODE = "0"
TOP_LOGPROBS = 20

UNREADABLE_ANSWERS = Counter(
    "beepgpt_scorer_openai_unreadable_answers_total",
    "Fine-tuned model answers whose top tokens spelled no known label",
)


def label_codes(vocab: Vocabulary) -> dict[str, str]:
    """code → label: "0" is nobody, "1".."N" the users in label-map order."""
    codes = {NOBODY_CODE: NOBODY}
    codes.update({str(i + 1): user for i, user in enumerate(vocab.users)})
    return codes


def system_prompt(vocab: Vocabulary) -> str:
    roster = "; ".join(f"{i + 1} = {vocab.name(u)}" for i, u in enumerate(vocab.users))
    return (
        "You read the latest messages of a Slack conversation and predict which workspace member "
        "will engage with it next. Answer with that member's number only, or 0 if nobody would. "
        f"Members: {roster}."
    )


def chat_messages(prompt: Prompt, vocab: Vocabulary) -> list[dict[str, str]]:
    """The request's messages (the fine-tuning file adds the assistant's answer)."""
    return [
        {"role": "system", "content": system_prompt(vocab)},
        {"role": "user", "content": render(prompt, vocab.names)},
    ]


def probabilities_from_logprobs(
    top: Sequence[tuple[str, float]], codes: Mapping[str, str]
) -> dict[str, float] | None:
    """label → probability from (token, logprob) pairs; None when no token spells a label."""
    mass: dict[str, float] = {}
    for token, logprob in top:
        code = token.strip()
        if code in codes:
            mass[codes[code]] = mass.get(codes[code], 0.0) + math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {label: mass.get(label, 0.0) / total for label in codes.values()}


@dataclass
class OpenAIState:
    """What `openai.json` records: the fine-tuning's files and job, and the resulting model."""

    base_model: str
    data_sha256: str
    training_file_sha256: str = ""
    training_file: str | None = None
    validation_file: str | None = None
    job_id: str | None = None
    status: str | None = None
    fine_tuned_model: str | None = None
    last_event_id: str | None = None
    threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        write_json(directory / OPENAI_FILE, self.__dict__)

    @classmethod
    def load(cls, directory: Path) -> OpenAIState | None:
        path = directory / OPENAI_FILE
        if not path.exists():
            return None
        raw = read_json(path)
        return cls(**raw)


class OpenAIInterestModel:
    """Per-user probabilities from the fine-tuned model's log-probabilities, with backoff on 429."""

    def __init__(
        self,
        vocab: Vocabulary,
        model: str,
        *,
        threshold: float,
        client: OpenAI | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        from scorer.openai_api import Backoff, make_client

        self.vocab = vocab
        self.model = model
        self.threshold = threshold
        self.client = client or make_client()
        self.backoff = backoff or Backoff()
        self.codes = label_codes(vocab)
        self._last: dict[tuple[str, int], dict[str, float]] = {}

    @classmethod
    def load(cls, directory: Path, vocab: Vocabulary, *, client: OpenAI | None = None) -> OpenAIInterestModel:
        state = OpenAIState.load(directory)
        if state is None or not state.fine_tuned_model:
            raise ModelFormatError(f"{directory} records no fine-tuned model id in {OPENAI_FILE}")
        return cls(vocab, state.fine_tuned_model, threshold=state.threshold or 0.5, client=client)

    def score_prompt(self, prompt: Prompt) -> dict[str, float]:
        """label → probability (users and "nobody") for one prompt: one API call."""
        messages: Any = chat_messages(prompt, self.vocab)
        response = self.backoff.call(
            lambda: self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=1,
                temperature=0,
                logprobs=True,
                top_logprobs=TOP_LOGPROBS,
            ),
            what="chat.completions",
        )
        choice = response.choices[0]
        content = choice.logprobs.content if choice.logprobs is not None else None
        top = [(t.token, t.logprob) for t in content[0].top_logprobs] if content else []
        found = probabilities_from_logprobs(top, self.codes)
        if found is None:
            UNREADABLE_ANSWERS.inc()
            return {label: (1.0 if label == NOBODY else 0.0) for label in self.codes.values()}
        return found

    def forget(self, conversation_id: str) -> None:
        """Nothing is kept per conversation beyond the explanation cache."""

    def observe(self, conversation: ConversationEvent, vectors: Matrix | None = None) -> None:
        """Nothing to learn live: the fine-tuned model knows the people of its training."""

    def probabilities(
        self, conversation: ConversationEvent, vectors: Matrix, audience: Collection[str] | None = None
    ) -> dict[str, float]:
        """Per-user probabilities; `vectors` is unused (the fine-tuned model reads the text), and
        every known user is scored at once (one API call), whatever the audience."""
        scores = self.score_prompt(prompt_of(conversation))
        self._last = {(conversation.conversation_id, conversation.version): scores}
        return {label: p for label, p in scores.items() if label != NOBODY}

    def signals(self, conversation: ConversationEvent, user: str, probability: float) -> tuple[str, ...]:
        scores = self._last.get((conversation.conversation_id, conversation.version))
        if scores is None:
            return ()
        ranked = sorted((p, u) for u, p in scores.items() if u != NOBODY)
        place = 1 + sum(1 for p, _ in ranked if p > probability)
        return (f"the fine-tuned model ranks them {place} of {len(ranked)}", f"nobody: {scores[NOBODY]:.0%}")
