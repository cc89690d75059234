"""The scorer's decision, pure: a conversation, who may hear of it, and model outputs → candidates.

Everything with I/O or heavy compute (Kafka, the preferences table, embeddings, classifiers) sits
around this module; what is decided here — who is a candidate, for which reason, with which words —
is a plain function that tests call directly. A `Scorer` is anything that turns a batch of
conversations into candidates; the service only knows that protocol, so the Kafka side is tested
with a small deterministic scorer and runs the models in production.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from beepgpt.contracts import (
    Candidate,
    CandidateReason,
    ConversationEvent,
    ConversationMessage,
    Preferences,
    PreviewLine,
)


class Scorer(Protocol):
    """Turns conversations into candidates; one call covers a whole batch of conversations."""

    @property
    def model_version(self) -> str | None: ...

    async def score(
        self, conversations: Sequence[ConversationEvent], preferences: Mapping[str, Preferences]
    ) -> list[Candidate]:
        """Candidates for all `conversations`; raises when the batch could not be scored."""
        ...

    def forget(self, conversation_id: str) -> None:
        """The conversation closed: drop whatever is kept for it (cached embeddings)."""
        ...

    async def aclose(self) -> None:
        """Stop background work (model polling); called once when the service stops."""
        ...


@dataclass(frozen=True)
class TopicMatch:
    """How close a conversation came to a topic someone follows."""

    user: str
    topic_id: str
    topic_text: str
    score: float
    threshold: float
    best_message: ConversationMessage | None = None

    @property
    def matched(self) -> bool:
        return self.score >= self.threshold


@dataclass(frozen=True)
class InterestScore:
    """The interest model's probability that a person would engage, and why it thinks so."""

    user: str
    probability: float
    threshold: float
    signals: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        return self.probability >= self.threshold


@dataclass(frozen=True)
class ModelOutputs:
    """What the models said about one conversation, for the people eligible to hear of it."""

    interest: Sequence[InterestScore] = ()
    topics: Sequence[TopicMatch] = ()
    model_version: str | None = None
    topic_space: str | None = None
    """The embedding model the topic scores were measured in."""


MAX_INTEREST_CANDIDATES = 3
"""Interest candidates per conversation update, at most (`ScorerSettings.max_interest_candidates`;
`beepgpt eval alerts` replays with the same cap)."""


def decide(
    conversation: ConversationEvent,
    eligible: Collection[str],
    outputs: ModelOutputs,
    *,
    max_interest_candidates: int = MAX_INTEREST_CANDIDATES,
    preview_lines: int = 3,
) -> list[Candidate]:
    """At most one candidate per eligible person: a followed topic first, then the interest model.

    A topic match wins because the person asked for it in their own words; the interest model is
    a guess about them. Interest candidates are capped per conversation so that a model that is
    generous on one conversation cannot page the whole workspace.
    """
    preview = preview_of(conversation, preview_lines)
    decided: dict[str, Candidate] = {}
    for match in sorted(outputs.topics, key=lambda m: -m.score):
        if match.matched and match.user in eligible and match.user not in decided:
            decided[match.user] = _candidate(
                conversation,
                match.user,
                score=match.score,
                reason="topic",
                explanation=explain_topic(match),
                topic_id=match.topic_id,
                model_version=outputs.model_version,
                score_space=outputs.topic_space,
                preview=preview,
                threshold=match.threshold,
            )
    interested = [s for s in outputs.interest if s.matched and s.user in eligible and s.user not in decided]
    for interest in sorted(interested, key=lambda s: (-s.probability, s.user))[:max_interest_candidates]:
        decided[interest.user] = _candidate(
            conversation,
            interest.user,
            score=interest.probability,
            reason="interest",
            explanation=explain_interest(interest),
            topic_id=None,
            model_version=outputs.model_version,
            preview=preview,
            threshold=interest.threshold,
        )
    return sorted(decided.values(), key=lambda c: c.user)


def explain_topic(match: TopicMatch) -> str:
    """Why: the topic in the person's own words, how close it came, and the closest message."""
    text = (
        f'Matches a topic you follow: "{match.topic_text}" '
        f"(match score {match.score:.2f}, threshold {match.threshold:.2f})"
    )
    if match.best_message is not None:
        text += f'; closest message, by <@{match.best_message.user}>: "{_clip(match.best_message.text)}"'
    return text


def explain_interest(interest: InterestScore) -> str:
    """Why, strongest signal first, in words ("you answered Ana 14 times this month"), then the
    model's calibrated chance that the person joins, against the line it alerts from."""
    odds = f"{interest.probability:.0%} likely you join; alerts from {interest.threshold:.0%}"
    if interest.signals:
        return f"You may want to join: {'; '.join(interest.signals)} ({odds})"
    return f"You may want to join this conversation ({odds})"


def preview_of(conversation: ConversationEvent, lines: int) -> list[PreviewLine]:
    """The latest few messages, as the DM shows them."""
    if lines <= 0:
        return []
    return [
        PreviewLine(user=m.user, text=_clip(m.text, 300), ts=m.ts) for m in conversation.messages[-lines:]
    ]


def _candidate(
    conversation: ConversationEvent,
    user: str,
    *,
    score: float,
    reason: CandidateReason,
    explanation: str,
    topic_id: str | None,
    model_version: str | None,
    preview: list[PreviewLine],
    score_space: str | None = None,
    threshold: float | None = None,
) -> Candidate:
    """The candidate, carrying the bar its score cleared: the notifier raises it for a person
    who asked for fewer such alerts (`beepgpt.contracts.raised_bar`)."""
    return Candidate(
        user=user,
        conversation_id=conversation.conversation_id,
        version=conversation.version,
        channel=conversation.channel,
        thread_ts=conversation.thread_ts,
        latest_ts=conversation.last_ts,
        score=float(score),
        reason=reason,
        explanation=explanation,
        topic_id=topic_id,
        model_version=model_version,
        score_space=score_space,
        preview=preview,
        conversation_started_at=float(conversation.first_ts),
        threshold=None if threshold is None else max(-1.0, min(1.0, float(threshold))),
    )


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
