"""The local interest model: a multinomial logistic regression over users plus "nobody".

Inference is a matrix product and a softmax in numpy; the weights are plain arrays in the model
directory (`interest.npz`), so the scorer needs neither scikit-learn nor pickle to load them, and
a model file can never execute code. Training (`offline.training.local`) fits them.

The service hands over a conversation and the vectors of its messages (one row per message, as
its cache produced them); the model reads the latest five (`prompt.prompt_of`) and answers with
a probability per known user. "nobody" takes the probability mass of conversations nobody would
engage with, so a content-free exchange yields low probabilities for everyone.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from beepgpt.contracts import ConversationEvent
from scorer.artifact import ModelFormatError
from scorer.interest.features import Featurizer, Vocabulary
from scorer.interest.prompt import Prompt, latest, prompt_of

Matrix = npt.NDArray[np.float32]

NOBODY = "nobody"
WEIGHTS_FILE = "interest.npz"

_SIGNAL_CACHE = 2048


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: npt.NDArray[np.float32] = (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


@dataclass
class InterestModel:
    """Per-user engagement probabilities from a prompt's message vectors."""

    vocab: Vocabulary
    dimension: int
    weights: Matrix
    bias: npt.NDArray[np.float32]
    threshold: float
    _featurizer: Featurizer = field(init=False, repr=False)
    _recent: LRUCache[tuple[str, int], npt.NDArray[np.float32]] = field(
        init=False, repr=False, default_factory=lambda: LRUCache(_SIGNAL_CACHE)
    )

    def __post_init__(self) -> None:
        self._featurizer = Featurizer(self.vocab, self.dimension)
        expected = (len(self.classes), self._featurizer.width)
        if self.weights.shape != expected or self.bias.shape != (expected[0],):
            raise ModelFormatError(
                f"interest weights have shape {self.weights.shape}/{self.bias.shape}, expected {expected}"
            )

    @property
    def classes(self) -> tuple[str, ...]:
        return (*self.vocab.users, NOBODY)

    @property
    def featurizer(self) -> Featurizer:
        return self._featurizer

    # --- scoring ----------------------------------------------------------------------------------

    def predict(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Class probabilities (rows sum to one), columns in `classes` order."""
        return softmax(features @ self.weights.T + self.bias)

    def score_prompt(self, prompt: Prompt, vectors: Matrix) -> dict[str, float]:
        """Probability per class (users and "nobody") for one prompt."""
        row = self._featurizer.row(prompt, vectors)
        probs = self.predict(row[None, :])[0]
        return {c: float(p) for c, p in zip(self.classes, probs, strict=True)}

    def forget(self, conversation_id: str) -> None:
        """Nothing is kept per conversation beyond the explanation cache."""

    def observe(self, conversation: ConversationEvent, vectors: Matrix | None = None) -> None:
        """Nothing to learn live: the classes are the people of its training."""

    def probabilities(
        self, conversation: ConversationEvent, vectors: Matrix, audience: Collection[str] | None = None
    ) -> dict[str, float]:
        """Probability that each known user engages next; `vectors` has one row per message of
        `conversation.messages`. "nobody" is left out (see `nobody`); all known users are scored
        in one product, whatever the audience."""
        scores = self._score_conversation(conversation, vectors)
        return {u: p for u, p in scores.items() if u != NOBODY}

    def nobody(self, conversation: ConversationEvent, vectors: Matrix) -> float:
        return self._score_conversation(conversation, vectors)[NOBODY]

    def signals(self, conversation: ConversationEvent, user: str, probability: float) -> tuple[str, ...]:
        """What pushed this user's probability up, in words, strongest first (at most two).

        Reads the features of the last `probabilities` call for this conversation version."""
        row = self._recent.get((conversation.conversation_id, conversation.version))
        if row is None or user not in self.vocab.users:
            return ()
        index = self.vocab.users.index(user)
        relative = self.weights[index] - self.weights.mean(axis=0)
        contributions = {
            group: float(row[span] @ relative[span]) for group, span in self._featurizer.groups.items()
        }
        prompt = prompt_of(conversation)
        words: list[str] = []
        for group, value in sorted(contributions.items(), key=lambda item: -item[1]):
            if value <= 0.05 or len(words) == 2:
                break
            words.append(self._describe(group, prompt, user))
        return tuple(w for w in words if w)

    def _score_conversation(self, conversation: ConversationEvent, vectors: Matrix) -> dict[str, float]:
        if len(vectors) != len(conversation.messages):
            raise ValueError(f"{len(conversation.messages)} messages but {len(vectors)} vectors")
        prompt = prompt_of(conversation)
        rows = vectors[latest(len(conversation.messages))]
        row = self._featurizer.row(prompt, rows)
        key = (conversation.conversation_id, conversation.version)
        self._recent[key] = row  # full: the least recently used goes
        probs = self.predict(row[None, :])[0]
        return {c: float(p) for c, p in zip(self.classes, probs, strict=True)}

    def _describe(self, group: str, prompt: Prompt, user: str) -> str:
        name = self.vocab.name
        if group == "content":
            return "the subject is close to what they usually join"
        if group == "last_author" and prompt.messages:
            return f"they often answer {name(prompt.messages[-1].user)}"
        if group == "mentions":
            mentioned = self._featurizer.mentioned(prompt)
            return "they were mentioned" if user in mentioned else "who was mentioned"
        if group == "channel":
            return f"they are active in #{prompt.channel}" + (" threads" if prompt.in_thread else "")
        if group == "shape":
            return "the conversation has substance"
        return ""

    # --- files ------------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        np.savez(
            directory / WEIGHTS_FILE,
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
            threshold=np.float32(self.threshold),
            dimension=np.int64(self.dimension),
        )

    @classmethod
    def load(cls, directory: Path, vocab: Vocabulary) -> InterestModel:
        path = directory / WEIGHTS_FILE
        if not path.exists():
            raise ModelFormatError(f"{directory} lacks {WEIGHTS_FILE}")
        with np.load(path, allow_pickle=False) as arrays:
            return cls(
                vocab=vocab,
                dimension=int(arrays["dimension"]),
                weights=arrays["weights"].astype(np.float32),
                bias=arrays["bias"].astype(np.float32),
                threshold=float(arrays["threshold"]),
            )


def top_users(probabilities: Mapping[str, float], count: int = 3) -> list[tuple[str, float]]:
    return sorted(probabilities.items(), key=lambda item: (-item[1], item[0]))[:count]
