"""Loading a model directory into the objects the scorer calls (the scorer's one entry point).

    models = load_models(Path("models/demo"))
    models.version                       # "demo@20240101T000000Z-1a2b3c4d"
    vectors = models.embedder.embed([m.text for m in event.messages])   # once per message
    models.interest.probabilities(event, vectors)   # {"U123": 0.41, ...}
    models.topics.match(vectors, prefs.topics, [m.text for m in event.messages])
                                         # [TopicScore(topic, score, threshold, best_message)]

The embedder is chosen by the name the model was trained with (vectors of another model would
be meaningless to its weights). Loading the local embedding model takes a few seconds, so one
instance is shared by every model directory loaded in the process: swapping a model version
does not reload it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scorer.artifact import LABELS, SETTINGS, Manifest, ModelFormatError, read_json, read_manifest
from scorer.embeddings import LOCAL_MODEL, Embedder, LocalEmbedder, OpenAIEmbedder
from scorer.interest.features import Vocabulary
from scorer.interest.model import InterestModel
from scorer.interest.openai_model import OpenAIInterestModel
from scorer.interest.pairs import PairModel
from scorer.topics.lexical import Lexicon
from scorer.topics.matcher import EmbeddingSpace, TopicMatcher

if TYPE_CHECKING:
    from openai import OpenAI


@dataclass
class LoadedModels:
    path: Path
    manifest: Manifest
    embedder: Embedder
    interest: PairModel | InterestModel | OpenAIInterestModel | None
    topics: TopicMatcher

    @property
    def version(self) -> str:
        return self.manifest.version


@functools.cache
def shared_local_embedder() -> LocalEmbedder:
    """The process's one local embedding model."""
    return LocalEmbedder()


def embedder_named(name: str, client: OpenAI | None = None) -> Embedder:
    if name == f"local:{LOCAL_MODEL}":
        return shared_local_embedder()
    if name.startswith("openai:"):
        from scorer.openai_api import make_client

        return OpenAIEmbedder(client or make_client(), model=name.removeprefix("openai:"))
    raise ModelFormatError(f"unknown embedding model {name!r}")


def load_models(
    path: Path,
    *,
    embedder: Embedder | None = None,
    openai_client: OpenAI | None = None,
    topic_threshold: float | None = None,
) -> LoadedModels:
    """Everything a model directory provides, checked (format version first) before use.

    The topic threshold is the one recorded in the directory's settings (the measured default
    for its embedding model, or the one given to `beepgpt train`) unless one is passed. A passed
    or given threshold is every topic's line; the measured default is only the fallback of the
    per-topic lines set from the workspace's recent conversations (format 2 directories)."""
    manifest = read_manifest(path)
    used = embedder or embedder_named(manifest.embedder, openai_client)
    if used.name != manifest.embedder:
        raise ModelFormatError(f"{path} was trained with {manifest.embedder}, not {used.name}")
    vocab = Vocabulary.from_json(read_json(path / LABELS))
    interest: PairModel | InterestModel | OpenAIInterestModel
    if manifest.kind == "pairs":
        interest = PairModel.load(path, vocab.names)
    elif manifest.kind == "local":
        interest = InterestModel.load(path, vocab)
    elif manifest.kind == "openai":
        interest = OpenAIInterestModel.load(path, vocab, client=openai_client)
    else:
        raise ModelFormatError(f"{path}: unknown model kind {manifest.kind!r}")
    space = EmbeddingSpace.load(path)
    # format 1 has no word statistics: its topics are scored by embeddings alone, as measured then
    lexicon = Lexicon.load(path) if manifest.format_version >= 2 else None
    recorded = read_json(path / SETTINGS).get("topics", {}) if (path / SETTINGS).exists() else {}
    threshold = topic_threshold if topic_threshold is not None else recorded.get("threshold")
    # a threshold someone chose (here or at training) holds for every topic; the measured default
    # is only the fallback of the label-free per-topic lines (`scorer.topics.lines`)
    chosen = topic_threshold is not None or recorded.get("threshold_source") == "given"
    topics = TopicMatcher(
        used, space, lexicon=lexicon, threshold=threshold, per_topic_lines=lexicon is not None and not chosen
    )
    return LoadedModels(path=path, manifest=manifest, embedder=used, interest=interest, topics=topics)
