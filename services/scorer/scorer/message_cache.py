"""Embeddings of the messages of open conversations, so each message is embedded once (docs/scoring.md).

Every `updated` event repeats up to MAX_MESSAGES messages of which usually only one is new; the
cache makes scoring cost one embedding per new message instead of twenty. Entries are grouped by
conversation because that is how they die: a `closed` event evicts its conversation at once, and
when the bound is reached the conversation touched least recently goes first (its messages would
only be needed again if it woke up). An edited message has a new text hash and is embedded again.

The cache is per instance: Kafka keys `conversations` by conversation id, so all updates of one
conversation reach the same instance and a local cache sees every reuse there is.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scorer.metrics import CACHE_EVICTIONS, CACHE_LOOKUPS, CACHE_MESSAGES

Vector = npt.NDArray[np.float32]


def text_key(text: str) -> str:
    """Identity of a message's content: an edit changes it, a repeat of the same event does not."""
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class MessageRef:
    """A message of a conversation, as the cache knows it."""

    conversation_id: str
    ts: str
    text: str


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class MessageCache:
    """A bounded map (conversation, message ts, text) → vector, evicted a conversation at a time."""

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self._conversations: OrderedDict[str, dict[str, tuple[str, Vector]]] = OrderedDict()
        self._size = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return self._size

    def embed(
        self, messages: Sequence[MessageRef], embed_texts: Callable[[list[str]], Sequence[Vector]]
    ) -> list[Vector]:
        """Vectors for `messages` in order; only those not cached go to `embed_texts`, in one call.

        Identical new texts inside one call are embedded once. Callers batch the messages of many
        conversations into one call, which is where batching pays.
        """
        found: list[Vector | None] = []
        todo: dict[str, list[int]] = {}
        for index, ref in enumerate(messages):
            vector = self._get(ref)
            found.append(vector)
            if vector is None:
                todo.setdefault(ref.text, []).append(index)
        # A miss is a text that goes to the model; its repeats in the same call are hits.
        misses = len(todo)
        self.stats.hits += len(messages) - misses
        self.stats.misses += misses
        CACHE_LOOKUPS.labels("hit").inc(len(messages) - misses)
        CACHE_LOOKUPS.labels("miss").inc(misses)
        if todo:
            texts = list(todo)
            vectors = embed_texts(texts)
            if len(vectors) != len(texts):
                raise ValueError(f"embedder returned {len(vectors)} vectors for {len(texts)} texts")
            for text, vector in zip(texts, vectors, strict=True):
                for index in todo[text]:
                    found[index] = vector
                    self._put(messages[index], vector)
            self._enforce_bound()
        return [vector for vector in found if vector is not None]

    def evict(self, conversation_id: str) -> None:
        """Forget a conversation (it closed): its messages will not be scored again."""
        entries = self._conversations.pop(conversation_id, None)
        if entries is not None:
            self._size -= len(entries)
            CACHE_EVICTIONS.labels("closed").inc()
            CACHE_MESSAGES.set(self._size)

    def clear(self) -> None:
        """Forget everything: vectors of another embedding model must never be mixed in."""
        self._conversations.clear()
        self._size = 0
        CACHE_MESSAGES.set(0)

    def _get(self, ref: MessageRef) -> Vector | None:
        entries = self._conversations.get(ref.conversation_id)
        if entries is None:
            return None
        self._conversations.move_to_end(ref.conversation_id)
        cached = entries.get(ref.ts)
        if cached is None or cached[0] != text_key(ref.text):
            return None
        return cached[1]

    def _put(self, ref: MessageRef, vector: Vector) -> None:
        entries = self._conversations.setdefault(ref.conversation_id, {})
        self._conversations.move_to_end(ref.conversation_id)
        if ref.ts not in entries:
            self._size += 1
        entries[ref.ts] = (text_key(ref.text), vector)

    def _enforce_bound(self) -> None:
        # Vectors already handed out stay valid; a lone conversation over the bound is kept whole
        # because it is the one being scored right now.
        while self._size > self.max_messages and len(self._conversations) > 1:
            _, entries = self._conversations.popitem(last=False)
            self._size -= len(entries)
            CACHE_EVICTIONS.labels("bound").inc()
        CACHE_MESSAGES.set(self._size)
